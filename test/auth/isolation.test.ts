import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, deleteClient } from '../../src/auth/clients.ts';
import { createGrant } from '../../src/auth/grants.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/**
 * Issue 3, per-partner isolation: a partner sees a member's data only while it holds a grant for
 * that member (until $member-match creates them, grants are created directly here); everything
 * else answers as if it did not exist (404, empty searches), on every read path.
 */

let baton: TestBaton;
let partnerA: string;
let partnerB: string;
const ORG = { identifier: [{ system: 'http://www.naic.org', value: '99999' }] };
const PAST = '2020-01-01T00:00:00Z';
const FUTURE = '2999-01-01T00:00:00Z';

const ids = (bundle: Record<string, any>): string[] => (bundle.entry ?? []).map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`);

beforeAll(async () => {
  baton = await startBaton();
  const put = async (resource: Record<string, unknown>) => {
    const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
    expect(response.status).toBe(201);
  };
  await put({ resourceType: 'Organization', id: 'clinic', name: 'Clinic' });
  for (const p of ['pA', 'pB', 'pX', 'pExpired', 'pFuture']) {
    await put({ resourceType: 'Patient', id: p, gender: 'unknown' });
    await put({ resourceType: 'Observation', id: `obs-${p}`, status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${p}` }, performer: [{ reference: 'Organization/clinic' }] });
  }
  // A family coverage: in pA's compartment (beneficiary) and pB's (subscriber).
  await put({ resourceType: 'Coverage', id: 'family', status: 'active', beneficiary: { reference: 'Patient/pA' }, subscriber: { reference: 'Patient/pB' }, payor: [{ reference: 'Organization/clinic' }] });
  await put({ resourceType: 'Group', id: 'only-a', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/pA' } }] });
  await put({ resourceType: 'Group', id: 'a-and-b', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/pA' } }, { entity: { reference: 'Patient/pB' } }] });
  await put({ resourceType: 'Encounter', id: 'enc-pB', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/pB' } });

  const jwks = { keys: [{ kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'k' }] };
  const register = async (name: string) =>
    (await createClient(baton.db, { name, kind: 'partner', organizationIdentifiers: ORG.identifier, jwks, jwksUri: undefined, scopes: ['system/*.cruds'] })).client_id;
  partnerA = await register('Partner A');
  partnerB = await register('Partner B');
  await createGrant(baton.db, { clientId: partnerA, patientId: 'pA', consent: 'Consent/c1' });
  await createGrant(baton.db, { clientId: partnerB, patientId: 'pB' });
  await createGrant(baton.db, { clientId: partnerA, patientId: 'pExpired', validFrom: PAST, validUntil: '2021-01-01T00:00:00Z' });
  await createGrant(baton.db, { clientId: partnerA, patientId: 'pFuture', validFrom: FUTURE });
});
afterAll(async () => {
  await baton?.close();
});

const tokenOf = (clientId: string, scopes = ['system/*.rs']) => baton.token({ clientId, kind: 'partner', scopes });
const asA = async (path: string, init: RequestInit & { json?: unknown } = {}) => baton.request(path, { ...init, token: await tokenOf(partnerA) });
const search = async (path: string) => body(await asA(path));

describe('reads', () => {
  it('serves a granted member and hides the others exactly like unknown ids', async () => {
    expect((await asA('/fhir/Patient/pA')).status).toBe(200);
    const hidden = await asA('/fhir/Patient/pB');
    const unknown = await asA('/fhir/Patient/no-such-member');
    expect(hidden.status).toBe(404);
    expect(unknown.status).toBe(404);
    const [h, u] = [await body(hidden), await body(unknown)];
    expect(h.issue[0].code).toBe(u.issue[0].code);
    expect(h.issue[0].diagnostics.replace('pB', '?')).toBe(u.issue[0].diagnostics.replace('no-such-member', '?'));
  });

  it("hides another member's data by read, vread and instance history", async () => {
    expect((await asA('/fhir/Observation/obs-pA')).status).toBe(200);
    for (const path of ['/fhir/Observation/obs-pB', '/fhir/Observation/obs-pB/_history/1', '/fhir/Observation/obs-pB/_history', '/fhir/Patient/pX/_history', '/fhir/Encounter/enc-pB']) {
      expect((await asA(path)).status, path).toBe(404);
    }
  });

  it('honours the grant period: an expired or not yet valid grant shows nothing', async () => {
    for (const path of ['/fhir/Patient/pExpired', '/fhir/Patient/pFuture', '/fhir/Observation/obs-pExpired', '/fhir/Observation/obs-pFuture']) {
      expect((await asA(path)).status, path).toBe(404);
    }
  });

  it('shows a Group only when every member in it is granted', async () => {
    expect((await asA('/fhir/Group/only-a')).status).toBe(200);
    expect((await asA('/fhir/Group/a-and-b')).status).toBe(404);
    expect(ids(await search('/fhir/Group'))).toEqual(['Group/only-a']);
  });

  it('keeps directory data (types outside the Patient compartment) readable under the scopes', async () => {
    expect((await asA('/fhir/Organization/clinic')).status).toBe(200);
  });

  it('isolates partners from each other in both directions', async () => {
    const asB = await tokenOf(partnerB);
    expect((await baton.request('/fhir/Patient/pB', { token: asB })).status).toBe(200);
    expect((await baton.request('/fhir/Patient/pA', { token: asB })).status).toBe(404);
    expect((await baton.request('/fhir/Encounter/enc-pB', { token: asB })).status).toBe(200);
  });
});

describe('searches', () => {
  it('returns only granted members and their compartments, with totals to match', async () => {
    expect(ids(await search('/fhir/Patient?_total=accurate'))).toEqual(['Patient/pA']);
    expect((await search('/fhir/Patient?_total=accurate')).total).toBe(1);
    expect((await search('/fhir/Patient?_summary=count')).total).toBe(1);
    expect(ids(await search('/fhir/Observation?_sort=_id'))).toEqual(['Observation/obs-pA']);
    expect(ids(await search('/fhir/Observation?subject=Patient/pB'))).toEqual([]);
    expect(ids(await search('/fhir/Observation?patient=pX'))).toEqual([]);
    expect(ids(await search('/fhir/Coverage'))).toEqual(['Coverage/family']);
  });

  it('never includes a hidden member through _include', async () => {
    const bundle = await search('/fhir/Coverage?_include=Coverage:subscriber&_include=Coverage:beneficiary&_include=Coverage:payor');
    expect(ids(bundle).sort()).toEqual(['Coverage/family', 'Organization/clinic', 'Patient/pA']);
  });

  it('never includes hidden resources through _revinclude', async () => {
    expect(ids(await search('/fhir/Patient?_revinclude=Observation:subject'))).toEqual(['Patient/pA', 'Observation/obs-pA']);
    expect(ids(await search('/fhir/Organization?_id=clinic&_revinclude=Observation:performer'))).toEqual(['Organization/clinic', 'Observation/obs-pA']);
    expect(ids(await search('/fhir/Observation?_include=Observation:subject&_revinclude:iterate=Encounter:subject'))).toEqual(['Observation/obs-pA', 'Patient/pA']);
  });

  it('does not widen through _has or POST _search', async () => {
    expect(ids(await search('/fhir/Patient?_has:Observation:subject:status=final'))).toEqual(['Patient/pA']);
    const posted = await asA('/fhir/Patient/_search', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'gender=unknown' });
    expect(ids(await body(posted))).toEqual(['Patient/pA']);
  });

  it('filters type history and refuses whole-system history', async () => {
    expect(ids(await search('/fhir/Patient/_history'))).toEqual(['Patient/pA']);
    expect((await asA('/fhir/_history')).status).toBe(403);
  });

  it('applies inside batch bundles', async () => {
    const response = await asA('/fhir', {
      method: 'POST',
      json: {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [{ request: { method: 'GET', url: 'Patient/pA' } }, { request: { method: 'GET', url: 'Patient/pB' } }, { request: { method: 'GET', url: 'Observation?subject=Patient/pB' } }],
      },
    });
    const batch = await body(response);
    expect(batch.entry.map((e: { response: { status: string } }) => e.response.status.slice(0, 3))).toEqual(['200', '404', '200']);
    expect(batch.entry[2].resource.entry ?? []).toHaveLength(0);
  });
});

describe('writes', () => {
  it('refuses a partner any write of member data, even with write scopes', async () => {
    const writer = await tokenOf(partnerA, ['system/*.cruds']);
    const attempts: [string, RequestInit & { json?: unknown }][] = [
      ['/fhir/Patient/pA', { method: 'PUT', json: { resourceType: 'Patient', id: 'pA' } }],
      ['/fhir/Patient/pB', { method: 'DELETE' }],
      ['/fhir/Observation', { method: 'POST', json: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/pA' } } }],
      ['/fhir/Observation?subject=Patient/pB', { method: 'DELETE' }],
    ];
    for (const [path, init] of attempts) {
      const response = await baton.request(path, { ...init, token: writer });
      expect(response.status, `${init.method} ${path}`).toBe(403);
    }
    expect((await baton.request('/fhir/Patient/pB')).status).toBe(200);
    // Directory data stays writable under the scopes.
    expect((await baton.request('/fhir/Organization', { method: 'POST', json: { resourceType: 'Organization', name: 'New' }, token: writer })).status).toBe(201);
  });
});

describe('grants are checked at every access', () => {
  it('hides a member as soon as the grant ends, and everything once the partner is removed', async () => {
    const temp = (await createClient(baton.db, { name: 'Partner C', kind: 'partner', organizationIdentifiers: ORG.identifier, jwks: { keys: [{ kty: 'EC', kid: 'k' }] }, jwksUri: undefined, scopes: ['system/*.rs'] })).client_id;
    const grant = await createGrant(baton.db, { clientId: temp, patientId: 'pX' });
    const token = await tokenOf(temp);
    expect((await baton.request('/fhir/Patient/pX', { token })).status).toBe(200);
    await baton.db.execute(sql`UPDATE access_grants SET valid_until = now() WHERE id = ${grant}`);
    expect((await baton.request('/fhir/Patient/pX', { token })).status).toBe(404);

    await createGrant(baton.db, { clientId: temp, patientId: 'pX' });
    expect((await baton.request('/fhir/Patient/pX', { token })).status).toBe(200);
    await deleteClient(baton.db, temp);
    // The token is still a valid signature for a few minutes; it sees no member.
    expect((await baton.request('/fhir/Patient/pX', { token })).status).toBe(404);
  });
});
