import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/baton.ts';
import { startServer, stopServer } from '../support/server-process.ts';

/**
 * What an operator sees when PostgreSQL drops every connection (a restart, a failover): the server
 * process stays up, requests caught on a lost connection answer 503 and none 500, and everything
 * resumes on new connections, the audit sealer's thread included. Only PostgreSQL has connections
 * to lose.
 */
describe.skipIf(!process.env.DATABASE_URL)('a server whose database connections are all terminated (PostgreSQL)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'baton-db-restart-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('stays up, answers 503 or its usual status meanwhile, then serves and seals again', async () => {
    const { databaseUrl, drop } = await freshDatabase();
    const adminToken = 'db-restart-admin-token';
    const server = await startServer({ BATON_DATA_DIR: dataDir, BATON_SEED: 'none', BATON_ADMIN_TOKEN: adminToken, BATON_ADMIN_SCOPE: 'system/*.cruds', DATABASE_URL: databaseUrl as string });
    const admin = postgres(databaseUrl as string, { max: 1, onnotice: () => undefined });
    const base = `http://127.0.0.1:${server.port}`;
    const headers = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/fhir+json' };
    const create = (i: number) => fetch(`${base}/fhir/Patient`, { method: 'POST', headers, body: JSON.stringify({ resourceType: 'Patient', gender: 'unknown', identifier: [{ system: 'urn:test', value: `r${i}` }] }) });
    const checkedEvents = async () => {
      const parameters = (await (await fetch(`${base}/fhir/AuditEvent/$verify`, { headers })).json()).parameter as { name: string; valueBoolean?: boolean; valueInteger?: number }[];
      return { verified: parameters.find((p) => p.name === 'verified')?.valueBoolean, checked: parameters.find((p) => p.name === 'checkedEvents')?.valueInteger ?? 0 };
    };
    const terminateAll = () => admin`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`;
    try {
      for (let i = 0; i < 5; i++) expect((await create(i)).status).toBe(201);

      const statuses: number[] = [];
      for (let round = 0; round < 3; round++) {
        const inFlight = Array.from({ length: 20 }, (_, i) => create(100 * round + i + 10).then((r) => statuses.push(r.status)));
        await new Promise((resolve) => setTimeout(resolve, 5));
        const [{ n }] = await terminateAll();
        expect(n).toBeGreaterThan(0);
        await Promise.all(inFlight);
      }
      expect(statuses.filter((s) => s !== 201 && s !== 503)).toEqual([]);
      expect(server.child.exitCode).toBeNull();

      // Everything resumes: creates, searches, readiness, and the sealer chains the new events.
      for (let i = 0; i < 5; i++) expect((await create(1000 + i)).status).toBe(201);
      const found = await (await fetch(`${base}/fhir/Patient?identifier=urn:test|r1000`, { headers })).json();
      expect(found.entry).toHaveLength(1);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const events = async () => (await admin`SELECT count(*)::int AS n FROM audit_events`)[0].n as number;
      let sealed = await checkedEvents();
      for (let tries = 0; tries < 100 && sealed.checked < (await events()) - 1; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        sealed = await checkedEvents();
      }
      expect(sealed.verified).toBe(true);
      expect(sealed.checked).toBeGreaterThanOrEqual(30);
      expect(server.child.exitCode).toBeNull();
    } finally {
      await admin.end();
      await stopServer(server.child);
      await drop();
    }
    expect(server.logs()).not.toContain('unhandled error');
  }, 240_000);
});
