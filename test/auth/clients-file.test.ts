import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { auditClientsFileChange } from '../../src/audit/registration-events.ts';
import { ClientsFileError, loadClientsFile, parseClientsFile } from '../../src/auth/clients-file.ts';
import { createClient, listClients } from '../../src/auth/clients.ts';
import { type AuthBaton, type ClientKeys, ORGANIZATION, assertionFields, clientKeys, signAssertion, startAuthBaton, tokenRequest } from './harness.ts';

let auth: AuthBaton;
const keys: ClientKeys = await clientKeys('ES384');
const dir = mkdtempSync(join(tmpdir(), 'baton-clients-file-'));

beforeAll(async () => {
  auth = await startAuthBaton();
});
afterAll(async () => {
  await auth.close();
  rmSync(dir, { recursive: true, force: true });
});

function entry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'Claims Loader', kind: 'internal', organization: ORGANIZATION, jwks: { keys: [keys.publicJwk] }, scope: 'system/*.cruds', ...overrides };
}

function writeClientsFile(name: string, entries: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof entries === 'string' ? entries : JSON.stringify(entries));
  return path;
}

describe('parseClientsFile', () => {
  it('reads admin-API bodies with an optional client_id', () => {
    const entries = parseClientsFile(JSON.stringify([entry({ client_id: 'claims-loader' }), entry({ name: 'Enrollment' })]));
    expect(entries.map((e) => [e.clientId, e.registration.name])).toEqual([
      ['claims-loader', 'Claims Loader'],
      [undefined, 'Enrollment'],
    ]);
  });

  it.each([
    ['not JSON', '[{', /^not JSON/],
    ['not an array', '{}', /^must be a JSON array of client registrations$/],
    ['an entry with a bad scope', [entry(), entry({ name: 'Partner B', scope: 'user/*.*' })], /^entry \[1\] "Partner B": unrecognized scopes: user\/\*\.\*$/],
    ['an entry without a name', [entry({ name: undefined })], /^entry \[0\]: name must be a non-empty string$/],
    ['a plain http jwks_uri', [entry({ jwks: undefined, jwks_uri: 'http://partner.example/jwks.json' })], /^entry \[0\] "Claims Loader": jwks_uri must be an https URL/],
    ['a bad client_id', [entry({ client_id: 'has spaces' })], /^entry \[0\] "Claims Loader": client_id must be/],
    ['a repeated client_id', [entry({ client_id: 'a' }), entry({ client_id: 'a', name: 'Other' })], /^entry \[1\] "Other": another entry has the same client_id a$/],
    ['a repeated name and kind without client_id', [entry(), entry()], /^entry \[1\] "Claims Loader": another entry has the same name "Claims Loader" and kind internal/],
  ])('rejects %s, naming the entry', (_, content, message) => {
    expect(() => parseClientsFile(typeof content === 'string' ? content : JSON.stringify(content))).toThrow(message);
  });
});

describe('loadClientsFile', () => {
  it('registers the clients once: loading the same file again changes nothing', async () => {
    const path = writeClientsFile('clients.json', [
      entry({ client_id: 'claims-loader' }),
      entry({ name: 'Acme Health', kind: 'partner', scope: 'system/*.rs', jwks: undefined, jwks_uri: 'https://acme.example/jwks.json' }),
    ]);
    expect(await loadClientsFile(auth.baton.db, path)).toEqual({ created: 2, updated: 0, unchanged: 0 });
    const before = await listClients(auth.baton.db);
    expect(await loadClientsFile(auth.baton.db, path)).toEqual({ created: 0, updated: 0, unchanged: 2 });
    expect(await listClients(auth.baton.db)).toEqual(before);
    expect(before.find((c) => c.client_id === 'claims-loader')).toMatchObject({ name: 'Claims Loader', kind: 'internal', scope: 'system/*.cruds' });
    expect(before.find((c) => c.name === 'Acme Health')).toMatchObject({ kind: 'partner', jwks_uri: 'https://acme.example/jwks.json' });
  });

  it('updates a changed entry in place, by client_id or by name and kind', async () => {
    const path = writeClientsFile('changed.json', [
      entry({ client_id: 'claims-loader', scope: 'system/Claim.cruds' }),
      entry({ name: 'Acme Health', kind: 'partner', scope: 'system/Coverage.rs', jwks: undefined, jwks_uri: 'https://acme.example/jwks.json' }),
    ]);
    const ids = (await listClients(auth.baton.db)).map((c) => c.client_id);
    expect(await loadClientsFile(auth.baton.db, path)).toEqual({ created: 0, updated: 2, unchanged: 0 });
    const after = await listClients(auth.baton.db);
    expect(after.map((c) => c.client_id)).toEqual(ids);
    expect(Object.fromEntries(after.map((c) => [c.name, c.scope]))).toEqual({ 'Claims Loader': 'system/Claim.cruds', 'Acme Health': 'system/Coverage.rs' });
  });

  it('audits each registration it makes or changes, in its transaction, and none when nothing changed', async () => {
    const events = async () => (await auth.baton.db.execute<{ content: string }>(sql`SELECT content FROM audit_events`)).map((r) => JSON.parse(r.content) as AuditEvent);
    const before = (await events()).length;
    const path = writeClientsFile('audited.json', [entry({ client_id: 'audited-loader', name: 'Audited Loader' })]);
    await loadClientsFile(auth.baton.db, path, auditClientsFileChange('http://baton.test/fhir'));
    await loadClientsFile(auth.baton.db, path, auditClientsFileChange('http://baton.test/fhir'));
    const recorded = (await events()).slice(before);
    expect(recorded).toHaveLength(1);
    expect(recorded[0].action).toBe('C');
    expect(recorded[0].subtype?.map((s) => s.code)).toContain('urn:baton:clients-file');
  });

  it('registers a client that can get a token under its stable client_id', async () => {
    const path = writeClientsFile('token.json', [entry({ client_id: 'enrollment-feed', name: 'Enrollment Feed', scope: 'system/Coverage.rs' })]);
    await loadClientsFile(auth.baton.db, path);
    const response = await tokenRequest(auth, assertionFields(await signAssertion({ clientId: 'enrollment-feed', keys }), 'system/Coverage.rs'));
    expect(response.status).toBe(200);
  });

  it('registers nothing from a file with a bad entry, and names the file and the entry', async () => {
    const path = writeClientsFile('bad.json', [entry({ client_id: 'would-be-new' }), entry({ name: 'Broken', organization: { identifier: [] } })]);
    const failure = loadClientsFile(auth.baton.db, path);
    await expect(failure).rejects.toBeInstanceOf(ClientsFileError);
    await expect(failure).rejects.toThrow(`BATON_CLIENTS_FILE ${path}: entry [1] "Broken": organization.identifier must be a non-empty array`);
    expect((await listClients(auth.baton.db)).map((c) => c.client_id)).not.toContain('would-be-new');
  });

  it('rejects a file it cannot read', async () => {
    const path = join(dir, 'missing.json');
    await expect(loadClientsFile(auth.baton.db, path)).rejects.toThrow(`BATON_CLIENTS_FILE ${path} cannot be read (ENOENT)`);
  });

  it('refuses to guess between two clients of the same name and kind, and rolls back the whole file', async () => {
    const registration = { name: 'Twin', kind: 'partner' as const, organizationIdentifiers: ORGANIZATION.identifier, jwks: { keys: [keys.publicJwk] }, jwksUri: undefined, scopes: ['system/*.rs'] };
    await createClient(auth.baton.db, registration);
    await createClient(auth.baton.db, registration);
    const path = writeClientsFile('twins.json', [entry({ client_id: 'before-twin' }), entry({ name: 'Twin', kind: 'partner', scope: 'system/*.rs' })]);
    await expect(loadClientsFile(auth.baton.db, path)).rejects.toThrow(/entry \[1\] "Twin": 2 partner clients are registered under this name; give the entry the client_id/);
    expect((await listClients(auth.baton.db)).map((c) => c.client_id)).not.toContain('before-twin');
  });
});
