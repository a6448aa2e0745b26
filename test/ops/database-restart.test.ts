import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/baton.ts';
import { startServer, stopServer } from '../support/server-process.ts';

/**
 * What an operator sees when PostgreSQL drops every connection (a restart, a failover): the server
 * process stays up and everything resumes on new connections, the audit sealer's thread
 * included. Only PostgreSQL has connections to lose. Unpatched postgres.js ended the process here
 * (patches/postgres+3.4.9.patch): on a statement sent on a dead connection, and on a connection
 * killed during its startup query for array types.
 */
describe.skipIf(!process.env.DATABASE_URL)('a server whose database connections are all terminated (PostgreSQL)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'baton-db-restart-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('stays up through connections killed at rest and mid-startup, then serves and seals again', async () => {
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

      // Between bursts of creates: every connection, then those reconnecting (the background jobs
      // poll every 100 ms), killed mid-startup. Requests in flight are test/fhir/database-unavailable.test.ts's.
      const statuses: number[] = [];
      for (let round = 0; round < 3; round++) {
        await Promise.all(Array.from({ length: 20 }, (_, i) => create(100 * round + i + 10).then((r) => statuses.push(r.status))));
        const [{ n }] = await terminateAll();
        expect(n).toBeGreaterThan(0);
        for (let again = 0; again < 5; again++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          await terminateAll();
        }
      }
      expect(statuses.filter((s) => s !== 201 && s !== 503)).toEqual([]);
      expect(server.child.exitCode).toBeNull();

      // Everything resumes: creates (once a request sent before the last close was noticed has had
      // its 503, as a client honouring Retry-After would see), searches, readiness, and the sealer
      // chains the new events.
      let first = await create(999);
      for (let tries = 0; first.status === 503 && tries < 20; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        first = await create(999);
      }
      expect(first.status).toBe(201);
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
