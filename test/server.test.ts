import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { demoMembers } from '../src/seed/demo.ts';
import { freshDatabase } from './support/baton.ts';
import { startServer, stopServer as stop } from './support/server-process.ts';

const [member1, member2] = demoMembers();
const DEMO_PHI = [member1.names[0].family, member2.names[0].family, member1.names[0].given[0], member1.birthDate, member2.birthDate, member1.memberId, member1.addresses[0].line[0]];

describe('server start', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'baton-start-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('serves the demo population and its own payer Organization, and logs no PHI', async () => {
    const { databaseUrl, drop } = await freshDatabase();
    const adminToken = 'start-test-admin-token';
    const asOperator = { headers: { authorization: `Bearer ${adminToken}` } };
    const clientsFile = join(dataDir, 'clients.json');
    writeFileSync(clientsFile, JSON.stringify([{ client_id: 'start-test-loader', name: 'Loader', kind: 'internal', organization: { identifier: [{ system: 'urn:ietf:rfc:3986', value: 'urn:uuid:4b9e0f0c-8a57-4c43-9d4b-2f3c1b1f5e11' }] }, jwks: { keys: [{ kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'k1' }] }, scope: 'system/*.rs' }]));
    const env = { BATON_DATA_DIR: dataDir, BATON_ADMIN_TOKEN: adminToken, BATON_CLIENTS_FILE: clientsFile, BATON_PAYER_NAME: 'Start Test Plan', BATON_PAYER_IDENTIFIER: 'http://hl7.org/fhir/sid/us-npi|1111111111', ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}) };
    const first = await startServer(env);
    try {
      const base = `http://127.0.0.1:${first.port}`;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/fhir/Patient/demo-patient-1`)).status).toBe(401);
      const patient = await (await fetch(`${base}/fhir/Patient/demo-patient-1`, asOperator)).json();
      expect(patient.name[0].family).toBe(member1.names[0].family);
      const org = await (await fetch(`${base}/fhir/Organization/baton-payer`, asOperator)).json();
      expect(org).toMatchObject({ name: 'Start Test Plan', identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1111111111' }] });
      expect((await fetch(`${base}/fhir/ExplanationOfBenefit/demo-eob-3-1`, asOperator)).status).toBe(200);
      const family = await (await fetch(`${base}/fhir/Coverage?subscriber=Patient/demo-patient-1&_summary=count`, asOperator)).json();
      expect(family.total).toBe(demoMembers().filter((m) => m.householdIndex === 0).length);
      await fetch(`${base}/fhir/Patient/demo-patient-2?_pretty=true`, asOperator);
    } finally {
      await stop(first.child);
    }
    for (const phi of DEMO_PHI) expect(first.logs()).not.toContain(phi);
    expect(first.logs()).toMatch(/"created":1,"updated":0,"unchanged":0,"msg":"clients file applied"/);
    expect(first.logs()).toContain('register a client: npm run client:new -- --name <partner>');
    expect(first.logs()).not.toContain(adminToken);

    // A second start keeps the data and does not seed again.
    const second = await startServer(env);
    try {
      const history = await (await fetch(`http://127.0.0.1:${second.port}/fhir/Patient/demo-patient-1/_history`, asOperator)).json();
      expect(history.entry).toHaveLength(1);
      expect(second.logs()).not.toContain('demo data loaded');
      expect(second.logs()).toMatch(/"created":0,"updated":0,"unchanged":1,"msg":"clients file applied"/);
    } finally {
      await stop(second.child);
      await drop();
    }
  }, 240_000);

  it('builds (npm run build) into JavaScript that starts as `npm run start:built` does, serves the API and seals its audit', async () => {
    const built = spawnSync('npm', ['run', '--silent', 'build'], { encoding: 'utf8' });
    expect(built.status, `${built.stdout}${built.stderr}`).toBe(0);
    const { databaseUrl, drop } = await freshDatabase();
    const adminToken = 'built-test-admin-token';
    const server = await startServer({ BATON_DATA_DIR: mkdtempSync(join(dataDir, 'built-')), BATON_SEED: 'none', BATON_ADMIN_TOKEN: adminToken, ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}) }, ['dist/server.js']);
    try {
      const base = `http://127.0.0.1:${server.port}`;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const metadata = await fetch(`${base}/fhir/metadata`);
      expect(metadata.status).toBe(200);
      expect((await metadata.json()).resourceType).toBe('CapabilityStatement');
      // The built sealer (on PostgreSQL its thread, from dist/ too) seals the audit of these requests.
      const asOperator = { headers: { authorization: `Bearer ${adminToken}` } };
      for (const id of ['a', 'b', 'c']) expect((await fetch(`${base}/fhir/Patient/${id}`, asOperator)).status).toBe(404);
      let verification: { name: string; valueBoolean?: boolean; valueInteger?: number }[] = [];
      for (let tries = 0; tries < 100 && !((verification.find((p) => p.name === 'checkedEvents')?.valueInteger ?? 0) >= 3); tries++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        verification = (await (await fetch(`${base}/fhir/AuditEvent/$verify`, asOperator)).json()).parameter;
      }
      expect(verification).toEqual(expect.arrayContaining([{ name: 'verified', valueBoolean: true }, expect.objectContaining({ name: 'checkedEvents' })]));
      expect(verification.find((p) => p.name === 'checkedEvents')?.valueInteger).toBeGreaterThanOrEqual(3);
    } finally {
      await stop(server.child);
      await drop();
    }
  }, 240_000);

  it('refuses to start on invalid configuration with a clear message and exit code 2', async () => {
    await expect(startServer({ BATON_SEED: 'everything', BATON_DATA_DIR: dataDir })).rejects.toThrow(/exited with 2: Configuration error: BATON_SEED/);
  });

  it('refuses to start on a bad BATON_CLIENTS_FILE entry, naming it, with exit code 2', async () => {
    const clientsFile = join(dataDir, 'bad-clients.json');
    writeFileSync(clientsFile, JSON.stringify([{ name: 'Broken Payer', kind: 'partner', scope: 'system/*.rs' }]));
    await expect(startServer({ BATON_CLIENTS_FILE: clientsFile, BATON_DATA_DIR: join(dataDir, 'bad-clients'), DATABASE_URL: '', BATON_SEED: 'none' })).rejects.toThrow(
      /exited with 2: Configuration error: BATON_CLIENTS_FILE \S+bad-clients\.json: entry \[0\] "Broken Payer": organization\.identifier must be/,
    );
  }, 120_000);
});
