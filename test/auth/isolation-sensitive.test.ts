import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/auth/clients.ts';
import { createGrant } from '../../src/auth/grants.ts';
import { loadSensitiveDataRule } from '../../src/operations/member-match/sensitive-data.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/**
 * Issue 5, consent-limited grants: a grant made from an HRex #regular consent hides the member's
 * resources carrying a label of the sensitive data rule, on every read path (read, vread,
 * history, search, _include, _revinclude), checked at every access; a #sensitive grant shows
 * them, and when a partner holds both for one member the #sensitive one wins.
 */

let baton: TestBaton;
const clients: Record<'regular' | 'sensitive' | 'both' | 'regularLapsedSensitive', string> = { regular: '', sensitive: '', both: '', regularLapsedSensitive: '' };
const RULE = loadSensitiveDataRule();
const ACT_CODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const PSY = { system: ACT_CODE, code: 'PSY', display: 'psychiatry information sensitivity' };
const ETH = { system: ACT_CODE, code: 'ETH', display: 'substance abuse information sensitivity' };

const ids = (bundle: Record<string, any>): string[] => (bundle.entry ?? []).map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`);

const put = async (resource: Record<string, unknown>) => {
  const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
  expect(response.status, `PUT ${resource.resourceType}/${resource.id}`).toBeLessThan(300);
};

const observation = (id: string, patient: string, security: object[] = [], extra: Record<string, unknown> = {}) => ({
  resourceType: 'Observation',
  id,
  ...(security.length ? { meta: { security } } : {}),
  status: 'final',
  code: { text: 'screening' },
  subject: { reference: `Patient/${patient}` },
  ...extra,
});

beforeAll(async () => {
  baton = await startBaton();
  for (const p of ['pA', 'pB']) await put({ resourceType: 'Patient', id: p, gender: 'unknown' });
  await put({ resourceType: 'Encounter', id: 'enc-a', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/pA' }, reasonReference: [{ reference: 'Condition/cond-psy' }] });
  // Condition's compartment parameter (patient) is stored as its subject rows: a regression case for the compartment lookup.
  await put({ resourceType: 'Condition', id: 'cond-plain', code: { text: 'hypertension' }, subject: { reference: 'Patient/pA' } });
  await put({ resourceType: 'Condition', id: 'cond-psy', meta: { security: [PSY] }, code: { text: 'depression' }, subject: { reference: 'Patient/pA' } });
  await put(observation('obs-plain', 'pA', [], { encounter: { reference: 'Encounter/enc-a' } }));
  await put(observation('obs-psy', 'pA', [PSY], { encounter: { reference: 'Encounter/enc-a' } }));
  await put(observation('obs-eth-psy', 'pA', [ETH, PSY]));
  // Labels of the Confidentiality system the rule lists, and a look-alike it does not.
  await put(observation('obs-restricted', 'pA', [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }]));
  await put(observation('obs-normal', 'pA', [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'N' }]));
  await put(observation('obs-foreign-psy', 'pA', [{ system: 'http://example.org/local-labels', code: 'PSY' }]));
  await put(observation('obs-b-psy', 'pB', [PSY]));

  const jwks = { keys: [{ kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'k' }] };
  for (const name of Object.keys(clients) as (keyof typeof clients)[]) {
    clients[name] = (await createClient(baton.db, { name, kind: 'partner', organizationIdentifiers: [{ system: 'http://www.naic.org', value: '99999' }], jwks, jwksUri: undefined, scopes: ['system/*.rs'] })).client_id;
  }
  const regular = (clientId: string) => createGrant(baton.db, { clientId, patientId: 'pA', consent: 'Consent/regular', excludedSecurity: RULE.labels });
  const sensitive = (clientId: string, validUntil?: string) => createGrant(baton.db, { clientId, patientId: 'pA', consent: 'Consent/sensitive', excludedSecurity: [], ...(validUntil ? { validFrom: '2020-01-01T00:00:00Z', validUntil } : {}) });
  await regular(clients.regular);
  await sensitive(clients.sensitive);
  await regular(clients.both);
  await sensitive(clients.both);
  await regular(clients.regularLapsedSensitive);
  await sensitive(clients.regularLapsedSensitive, '2021-01-01T00:00:00Z');
});
afterAll(async () => {
  await baton?.close();
});

const as = async (client: keyof typeof clients, path: string) => baton.request(path, { token: await baton.token({ clientId: clients[client], kind: 'partner', scopes: ['system/*.rs'] }) });
const search = async (client: keyof typeof clients, path: string) => {
  const response = await as(client, path);
  expect(response.status, path).toBe(200);
  return body(response);
};

const PLAIN = ['Observation/obs-foreign-psy', 'Observation/obs-normal', 'Observation/obs-plain'];
const SENSITIVE = ['Observation/obs-eth-psy', 'Observation/obs-psy', 'Observation/obs-restricted'];

describe('a grant from a #regular consent', () => {
  it('stores the excluded labels on the grant', async () => {
    const rows = await baton.db.execute<{ consent: string; excluded_security: string[] | null }>(
      sql`SELECT consent, excluded_security FROM access_grants WHERE client_id = ${clients.both} ORDER BY consent`,
    );
    expect(rows.map((r) => [r.consent, r.excluded_security])).toEqual([
      ['Consent/regular', [...RULE.labels]],
      ['Consent/sensitive', null],
    ]);
  });

  it('reads the member and unlabelled data, and answers 404 for labelled data exactly as for unknown ids', async () => {
    expect((await as('regular', '/fhir/Patient/pA')).status).toBe(200);
    for (const id of [...PLAIN, 'Condition/cond-plain']) expect((await as('regular', `/fhir/${id}`)).status, id).toBe(200);
    for (const id of [...SENSITIVE, 'Condition/cond-psy']) expect((await as('regular', `/fhir/${id}`)).status, id).toBe(404);
    const hidden = await body(await as('regular', '/fhir/Observation/obs-psy'));
    const unknown = await body(await as('regular', '/fhir/Observation/no-such-observation'));
    expect(hidden.issue[0].code).toBe(unknown.issue[0].code);
    expect(hidden.issue[0].diagnostics.replace('obs-psy', '?')).toBe(unknown.issue[0].diagnostics.replace('no-such-observation', '?'));
  });

  it('hides labelled data from vread and history', async () => {
    for (const path of ['/fhir/Observation/obs-psy/_history/1', '/fhir/Observation/obs-psy/_history']) expect((await as('regular', path)).status, path).toBe(404);
    expect(ids(await search('regular', '/fhir/Observation/_history')).sort()).toEqual(PLAIN);
  });

  it('leaves labelled data out of searches, totals and _security searches', async () => {
    const all = await search('regular', '/fhir/Observation?_total=accurate&_sort=_id');
    expect(ids(all)).toEqual(PLAIN);
    expect(all.total).toBe(PLAIN.length);
    expect(ids(await search('regular', '/fhir/Observation?patient=pA&_sort=_id'))).toEqual(PLAIN);
    expect(ids(await search('regular', `/fhir/Observation?_security=${encodeURIComponent(`${ACT_CODE}|PSY`)}`))).toEqual([]);
    expect(ids(await search('regular', '/fhir/Condition'))).toEqual(['Condition/cond-plain']);
  });

  it('never brings labelled data in through _revinclude or _include', async () => {
    expect(ids(await search('regular', '/fhir/Patient?_revinclude=Observation:subject')).sort()).toEqual(['Patient/pA', ...PLAIN].sort());
    expect(ids(await search('regular', '/fhir/Encounter?_revinclude=Observation:encounter')).sort()).toEqual(['Encounter/enc-a', 'Observation/obs-plain']);
    expect(ids(await search('regular', '/fhir/Encounter?_include=Encounter:reason-reference'))).toEqual(['Encounter/enc-a']);
  });

  it('checks labels at every access: a resource labelled later disappears, and reappears when the label goes', async () => {
    await put(observation('obs-later', 'pA'));
    expect((await as('regular', '/fhir/Observation/obs-later')).status).toBe(200);
    await put(observation('obs-later', 'pA', [ETH]));
    expect((await as('regular', '/fhir/Observation/obs-later')).status).toBe(404);
    expect(ids(await search('regular', '/fhir/Observation?_id=obs-later'))).toEqual([]);
    await put(observation('obs-later', 'pA'));
    expect((await as('regular', '/fhir/Observation/obs-later')).status).toBe(200);
    expect((await baton.request('/fhir/Observation/obs-later', { method: 'DELETE' })).status).toBeLessThan(300);
  });

  it("does not open another member's data", async () => {
    expect((await as('regular', '/fhir/Observation/obs-b-psy')).status).toBe(404);
    expect((await as('regular', '/fhir/Patient/pB')).status).toBe(404);
  });
});

describe('a grant from a #sensitive consent', () => {
  it('reads and searches the labelled data too', async () => {
    for (const id of [...SENSITIVE, 'Condition/cond-psy']) expect((await as('sensitive', `/fhir/${id}`)).status, id).toBe(200);
    expect(ids(await search('sensitive', '/fhir/Observation?_sort=_id'))).toEqual([...PLAIN, ...SENSITIVE].sort());
    expect(ids(await search('sensitive', '/fhir/Encounter?_revinclude=Observation:encounter')).sort()).toEqual(['Encounter/enc-a', 'Observation/obs-plain', 'Observation/obs-psy']);
    expect(ids(await search('sensitive', '/fhir/Condition?_sort=_id'))).toEqual(['Condition/cond-plain', 'Condition/cond-psy']);
    expect((await as('sensitive', '/fhir/Observation/obs-b-psy')).status).toBe(404);
  });

  it('wins over a #regular grant the same partner holds for the member', async () => {
    expect((await as('both', '/fhir/Observation/obs-psy')).status).toBe(200);
    expect(ids(await search('both', '/fhir/Patient?_revinclude=Observation:subject'))).toEqual(expect.arrayContaining(['Observation/obs-psy', 'Observation/obs-eth-psy', 'Observation/obs-restricted']));
  });

  it('no longer counts once it has lapsed: the #regular grant alone applies', async () => {
    expect((await as('regularLapsedSensitive', '/fhir/Observation/obs-plain')).status).toBe(200);
    expect((await as('regularLapsedSensitive', '/fhir/Observation/obs-psy')).status).toBe(404);
    expect(ids(await search('regularLapsedSensitive', '/fhir/Observation?_sort=_id'))).not.toContain('Observation/obs-psy');
  });
});
