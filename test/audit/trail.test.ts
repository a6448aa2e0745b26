import type { AuditEvent } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/**
 * Issue 4, "AuditEvent for every interaction", through the HTTP API: what lands in audit_events
 * (the write-ahead trail the sealer chains and publishes) for each kind of request.
 */

let baton: TestBaton;
let seen = 0;

/** The events recorded since the last call. */
async function newEvents(): Promise<AuditEvent[]> {
  const rows = await baton.db.execute<{ seq: number; content: string }>(sql`SELECT seq::float8 AS seq, content FROM audit_events WHERE seq > ${seen} ORDER BY seq`);
  if (rows.length > 0) seen = rows[rows.length - 1].seq;
  return rows.map((r) => JSON.parse(r.content) as AuditEvent);
}

const subtypes = (e: AuditEvent) => (e.subtype ?? []).map((s) => s.code);
const entityRefs = (e: AuditEvent) => (e.entity ?? []).map((x) => x.what?.reference).filter(Boolean);
const patientOf = (e: AuditEvent) => (e.entity ?? []).find((x) => x.role?.code === '1')?.what?.reference;
const policies = (e: AuditEvent) => (e.agent ?? []).flatMap((a) => a.policy ?? []);
const clientIds = (e: AuditEvent) => (e.agent ?? []).map((a) => a.who?.identifier?.value).filter(Boolean);

beforeAll(async () => {
  baton = await startBaton();
  const put = (resource: Record<string, unknown>) => baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
  for (const id of ['a1', 'a2', 'a3']) {
    await put({ resourceType: 'Patient', id, name: [{ family: `Secretname${id}` }], birthDate: '1961-02-03', gender: 'female' });
    await put({ resourceType: 'Observation', id: `o-${id}`, status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${id}` } });
  }
  await put({ resourceType: 'Organization', id: 'org', name: 'Org' });
});
beforeEach(async () => {
  await newEvents();
});
afterAll(async () => {
  await baton?.close();
});

describe('writes', () => {
  it('records a create with the client, the token, the resource and the member, in the write’s transaction', async () => {
    const token = await baton.token({ clientId: 'writer-1' });
    const created = await body(await baton.request('/fhir/Observation', { method: 'POST', json: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/a1' } }, token }));
    const [event, ...rest] = await newEvents();
    expect(rest).toEqual([]);
    expect(event.action).toBe('C');
    expect(event.outcome).toBe('0');
    expect(subtypes(event)).toContain('create');
    expect(entityRefs(event)).toContain(`Observation/${created.id}/_history/1`);
    expect(patientOf(event)).toBe('Patient/a1');
    expect(clientIds(event)).toContain('writer-1');
    const jti = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).jti;
    expect(policies(event)).toContain(`urn:ietf:params:oauth:jti:${jti}`);
  });

  it('records update, patch and delete as U, U and D', async () => {
    await baton.request('/fhir/Organization/org', { method: 'PUT', json: { resourceType: 'Organization', id: 'org', name: 'Renamed' } });
    await baton.request('/fhir/Organization/org', { method: 'PATCH', headers: { 'content-type': 'application/json-patch+json' }, body: JSON.stringify([{ op: 'replace', path: '/name', value: 'Again' }]) });
    await baton.request('/fhir/Organization/org', { method: 'DELETE' });
    const events = await newEvents();
    expect(events.map((e) => [e.action, subtypes(e)[0]])).toEqual([
      ['U', 'update'],
      ['U', 'patch'],
      ['D', 'delete'],
    ]);
  });

  it('records every write of a transaction, and none of a transaction that rolled back (only its failure)', async () => {
    const entry = (family: string) => ({ resource: { resourceType: 'Patient', name: [{ family }] }, request: { method: 'POST', url: 'Patient' } });
    const ok = await baton.request('/fhir', { method: 'POST', json: { resourceType: 'Bundle', type: 'transaction', entry: [entry('One'), entry('Two')] } });
    expect(ok.status).toBe(200);
    const committed = await newEvents();
    expect(committed.filter((e) => e.action === 'C')).toHaveLength(2);
    expect(committed.some((e) => subtypes(e).includes('transaction'))).toBe(true);

    const bad = await baton.request('/fhir', {
      method: 'POST',
      json: { resourceType: 'Bundle', type: 'transaction', entry: [entry('Three'), { resource: { resourceType: 'Patient', active: 'yes' }, request: { method: 'POST', url: 'Patient' } }] },
    });
    expect(bad.status).toBeGreaterThanOrEqual(400);
    const rolledBack = await newEvents();
    expect(rolledBack.filter((e) => e.action === 'C')).toEqual([]);
    expect(rolledBack).toHaveLength(1);
    expect(rolledBack[0].outcome).toBe('4');
  });

  it('refuses to create, change or delete AuditEvents, through REST and Bundles, with 405', async () => {
    const audit = { resourceType: 'AuditEvent', type: { code: 'rest' }, recorded: '2024-01-01T00:00:00Z', agent: [{ requestor: true }], source: { observer: { display: 'x' } } };
    for (const [path, init] of [
      ['/fhir/AuditEvent', { method: 'POST', json: audit }],
      ['/fhir/AuditEvent/x', { method: 'PUT', json: { ...audit, id: 'x' } }],
      ['/fhir/AuditEvent/x', { method: 'PATCH', headers: { 'content-type': 'application/json-patch+json' }, body: '[]' }],
      ['/fhir/AuditEvent/x', { method: 'DELETE' }],
      ['/fhir/AuditEvent?outcome=0', { method: 'DELETE' }],
    ] as const) {
      const response = await baton.request(path, init as RequestInit & { json?: unknown });
      expect(response.status, `${init.method} ${path}`).toBe(405);
      expect((await body(response)).resourceType).toBe('OperationOutcome');
    }
    const bundle = await baton.request('/fhir', { method: 'POST', json: { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: 'AuditEvent/x' } }] } });
    expect(bundle.status).toBe(405);
  });
});

describe('reads and searches', () => {
  it('records a read, patient-specific, once its event is stored (before the response)', async () => {
    expect((await baton.request('/fhir/Observation/o-a2')).status).toBe(200);
    const [event, ...rest] = await newEvents();
    expect(rest).toEqual([]);
    expect(event.action).toBe('R');
    expect(subtypes(event)).toContain('read');
    expect(patientOf(event)).toBe('Patient/a2');
  });

  it('records a search with one event per member it returned, each carrying the query base64-encoded', async () => {
    expect((await baton.request('/fhir/Observation?status=final&_count=50')).status).toBe(200);
    const events = await newEvents();
    expect(events.map(patientOf).sort()).toEqual(['Patient/a1', 'Patient/a2', 'Patient/a3']);
    for (const event of events) {
      expect(event.action).toBe('E');
      const query = event.entity?.find((x) => x.role?.code === '24')?.query;
      expect(Buffer.from(query as string, 'base64').toString()).toContain('/Observation?status=final');
    }
  });

  it('records a search that touched no member as one query event', async () => {
    await baton.request('/fhir/Organization?name=none');
    const events = await newEvents();
    expect(events).toHaveLength(1);
    expect(patientOf(events[0])).toBeUndefined();
  });

  it('records history reads', async () => {
    await baton.request('/fhir/Patient/a3/_history');
    expect((await newEvents()).map(patientOf)).toEqual(['Patient/a3']);
  });
});

describe('failures', () => {
  const failures: [string, string, RequestInit & { json?: unknown; token?: string | null }, number][] = [
    ['no token', '/fhir/Patient/a1', { token: null }, 401],
    ['a bad token', '/fhir/Patient/a1', { token: 'not.a.token' }, 401],
    ['an unknown id', '/fhir/Patient/nope', {}, 404],
    ['an invalid resource', '/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient', active: 'yes' } }, 400],
  ];

  it.each(failures)('records %s as a failure with the reason', async (_what, path, init, status) => {
    expect((await baton.request(path, init)).status).toBe(status);
    const [event, ...rest] = await newEvents();
    expect(rest).toEqual([]);
    expect(event.outcome).toBe('4');
    expect(event.outcomeDesc).toBeTruthy();
  });

  it('records a forbidden request with the caller', async () => {
    const token = await baton.token({ clientId: 'reader-only', scopes: ['system/Organization.rs'] });
    expect((await baton.request('/fhir/Patient/a1', { token })).status).toBe(403);
    const [event] = await newEvents();
    expect(event.outcome).toBe('4');
    expect(clientIds(event)).toContain('reader-only');
  });
});

describe('minimal PHI', () => {
  it('never puts names or birth dates into AuditEvents', async () => {
    await baton.request('/fhir/Patient?family=Secretnamea1');
    await baton.request('/fhir/Patient/a1');
    const rows = await baton.db.execute<{ content: string }>(sql`SELECT content FROM audit_events`);
    const all = rows.map((r) => r.content).join('\n');
    expect(all).not.toContain('Secretname');
    expect(all).not.toContain('1961-02-03');
  });
});

describe('who may read the trail', () => {
  it('keeps AuditEvent away from system/* scopes; an auditor scope reaches it', async () => {
    expect((await baton.request('/fhir/AuditEvent', { token: await baton.token({ scopes: ['system/*.rs'] }) })).status).toBe(403);
    expect((await baton.request('/fhir/AuditEvent', { token: await baton.token({ scopes: ['system/AuditEvent.rs'] }) })).status).toBe(200);
    const history = await body(await baton.request('/fhir/_history?_count=1000', { token: await baton.token({ scopes: ['system/*.rs'] }) }));
    expect(history.entry.every((e: { fullUrl: string }) => !e.fullUrl.includes('/AuditEvent/'))).toBe(true);
  });
});

describe('token requests and client registration', () => {
  it('records token requests, successful (with the issued jti) or not, and registrations through the admin API', async () => {
    const { startAuthBaton, clientKeys, registerClient, signAssertion, tokenRequest, assertionFields } = await import('../auth/harness.ts');
    const auth = await startAuthBaton();
    try {
      const read = async () => (await auth.baton.db.execute<{ content: string }>(sql`SELECT content FROM audit_events ORDER BY seq`)).map((r) => JSON.parse(r.content) as AuditEvent);
      const keys = await clientKeys();
      const clientId = await registerClient(auth, keys, 'system/Patient.rs');
      const registered = (await read()).at(-1) as AuditEvent;
      expect(registered.action).toBe('C');
      expect(registered.outcome).toBe('0');
      expect(registered.subtype?.map((s) => s.code)).toContain('urn:baton:admin:clients');

      const ok = await body(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys }), 'system/Patient.rs')));
      const issued = (await read()).at(-1) as AuditEvent;
      expect(issued.outcome).toBe('0');
      const jti = JSON.parse(Buffer.from(ok.access_token.split('.')[1], 'base64url').toString()).jti;
      expect(policies(issued)).toContain(`urn:ietf:params:oauth:jti:${jti}`);
      expect(clientIds(issued)).toContain(clientId);

      await tokenRequest(auth, assertionFields('not-a-jwt'));
      const refused = (await read()).at(-1) as AuditEvent;
      expect(refused.outcome).toBe('4');
      expect(refused.outcomeDesc).toContain('invalid_client');
      expect(clientIds(refused)).not.toContain(clientId);
    } finally {
      await auth.close();
    }
  });
});
