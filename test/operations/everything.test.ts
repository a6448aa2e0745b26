import { existsSync, readFileSync } from 'node:fs';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/auth/clients.ts';
import { createGrant } from '../../src/auth/grants.ts';
import { loadPopulation } from '../../src/seed/load.ts';
import { populationOptions } from '../../src/seed/population.ts';
import { BASE_URL, body, startBaton, type TestBaton } from '../support/baton.ts';

/**
 * Patient/$everything (R4 Patient-everything, PDex 2.1) over HTTP: what the answer holds (the
 * Patient once, its compartment, what that references), paging, the inputs, and the partner
 * isolation and consent limits the caller's access policy sets.
 */

let baton: TestBaton;
let partner: string;
let regularPartner: string;
let strangerPartner: string;

const PSY = 'http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY';
const ORG = { identifier: [{ system: 'http://www.naic.org', value: '77777' }] };
const FIXTURES = '/work/shared/fixtures/davinci/inferno';
/** A seeded member with claims and clinical data, to compare with what search finds. */
const SEEDED = 'ev-patient-1';
const SUBJECT = { reference: 'Patient/m1' };

/** A member built resource by resource: each kind of thing $everything must (or must not) return. */
const MEMBER: Resource[] = [
  { resourceType: 'Organization', id: 'payer-org', name: 'Old Payer' },
  { resourceType: 'Organization', id: 'clinic', name: 'Clinic' },
  { resourceType: 'Organization', id: 'unrelated-org', name: 'Nobody references me' },
  { resourceType: 'Practitioner', id: 'dr-a', name: [{ family: 'A' }] },
  { resourceType: 'PractitionerRole', id: 'dr-a-role', practitioner: { reference: 'Practitioner/dr-a' } },
  { resourceType: 'Location', id: 'ward', name: 'Ward' },
  { resourceType: 'Medication', id: 'med', code: { text: 'Medication' } },
  { resourceType: 'Patient', id: 'm1', gender: 'female', managingOrganization: { reference: 'Organization/payer-org' } },
  { resourceType: 'Patient', id: 'm2', gender: 'male', link: [{ other: { reference: 'Patient/m1' }, type: 'seealso' }] },
  { resourceType: 'Coverage', id: 'm1-coverage', status: 'active', beneficiary: SUBJECT, payor: [{ reference: 'Organization/payer-org' }] },
  { resourceType: 'Encounter', id: 'm1-enc-2019', status: 'finished', class: { code: 'AMB' }, subject: SUBJECT, period: { start: '2019-06-01T10:00:00Z', end: '2019-06-01T11:00:00Z' }, location: [{ location: { reference: 'Location/ward' } }], serviceProvider: { reference: 'Organization/clinic' } },
  { resourceType: 'Observation', id: 'm1-obs-2019', status: 'final', code: { text: 'x' }, subject: SUBJECT, effectiveDateTime: '2019-06-01', performer: [{ reference: 'Practitioner/dr-a' }] },
  { resourceType: 'Observation', id: 'm1-obs-2024', status: 'final', code: { text: 'x' }, subject: SUBJECT, effectiveDateTime: '2024-03-15' },
  { resourceType: 'Observation', id: 'm1-obs-undated', status: 'final', code: { text: 'x' }, subject: SUBJECT },
  { resourceType: 'Observation', id: 'm1-obs-psy', meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }] }, status: 'final', code: { text: 'x' }, subject: SUBJECT, effectiveDateTime: '2024-04-01', performer: [{ reference: 'PractitionerRole/dr-a-role' }] },
  { resourceType: 'MedicationRequest', id: 'm1-rx', status: 'active', intent: 'order', medicationReference: { reference: 'Medication/med' }, subject: SUBJECT, authoredOn: '2024-03-15' },
  { resourceType: 'Device', id: 'm1-device', patient: SUBJECT, deviceName: [{ name: 'Implant', type: 'user-friendly-name' }] },
  { resourceType: 'Claim', id: 'm1-claim', status: 'active', type: { coding: [{ code: 'professional' }] }, use: 'claim', patient: SUBJECT, created: '2024-03-20', provider: { reference: 'Organization/clinic' }, priority: { coding: [{ code: 'normal' }] }, insurance: [{ sequence: 1, focal: true, coverage: { reference: 'Coverage/m1-coverage' } }] },
  { resourceType: 'ClaimResponse', id: 'm1-claim-response', status: 'active', type: { coding: [{ code: 'professional' }] }, use: 'claim', patient: SUBJECT, created: '2024-03-25', insurer: { reference: 'Organization/payer-org' }, outcome: 'complete' },
  eob('m1-eob', 'claim', '2024-03-25'),
  eob('m1-preauth', 'preauthorization', '2024-02-01'),
  // Another member's record, and resources referencing only it: never part of m1's answer.
  { resourceType: 'Observation', id: 'm2-obs', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/m2' }, performer: [{ reference: 'Organization/unrelated-org' }] },
];

function eob(id: string, use: 'claim' | 'preauthorization', created: string): Resource {
  return {
    resourceType: 'ExplanationOfBenefit',
    id,
    status: 'active',
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
    use,
    patient: SUBJECT,
    created,
    // CARIN and PDex date a claim's care by its billable period (service-date).
    billablePeriod: { start: created, end: created },
    insurer: { reference: 'Organization/payer-org' },
    provider: { reference: 'Organization/clinic' },
    careTeam: [{ sequence: 1, provider: { reference: 'Practitioner/dr-a' } }],
    outcome: 'complete',
    insurance: [{ focal: true, coverage: { reference: 'Coverage/m1-coverage' } }],
  } as Resource;
}

const keysOf = (bundle: Bundle): string[] => (bundle.entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`);
const everything = async (query = '', token?: string) => baton.request(`/fhir/Patient/m1/$everything${query}`, token ? { token } : {});
const everythingOf = async (query = '', token?: string): Promise<Bundle> => {
  const response = await everything(query, token);
  expect(response.status, JSON.stringify(await response.clone().json())).toBe(200);
  return body<Bundle>(response);
};
const partnerToken = (clientId: string) => baton.token({ clientId, kind: 'partner', scopes: ['system/*.rs'] });

beforeAll(async () => {
  baton = await startBaton();
  for (const resource of MEMBER) {
    const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
    expect(response.status, `${resource.resourceType}/${resource.id}: ${JSON.stringify(await response.clone().json())}`).toBe(201);
  }
  await loadPopulation(baton.db, populationOptions({ members: 4, seed: 7, idPrefix: 'ev' }));
  const register = async (name: string) =>
    (await createClient(baton.db, { name, kind: 'partner', organizationIdentifiers: ORG.identifier, jwks: { keys: [] }, jwksUri: undefined, scopes: ['system/*.rs'] })).client_id;
  partner = await register('Granted partner');
  regularPartner = await register('Regular-consent partner');
  strangerPartner = await register('Partner without a grant');
  await createGrant(baton.db, { clientId: partner, patientId: 'm1' });
  await createGrant(baton.db, { clientId: regularPartner, patientId: 'm1', excludedSecurity: [PSY] });
  await createGrant(baton.db, { clientId: strangerPartner, patientId: 'm2' });
}, 120_000);
afterAll(async () => {
  await baton?.close();
});

describe('contents', () => {
  it('returns the Patient exactly once, first, with its compartment and the resources that compartment references', async () => {
    const bundle = await everythingOf();
    expect(bundle.type).toBe('searchset');
    const keys = keysOf(bundle);
    expect(keys[0]).toBe('Patient/m1');
    expect(keys.filter((k) => k.startsWith('Patient/'))).toEqual(['Patient/m1']);
    expect(new Set(keys).size).toBe(keys.length);
    expect(bundle.total).toBe(keys.length);
    const record = MEMBER.filter((r) => r.id?.startsWith('m1-')).map((r) => `${r.resourceType}/${r.id}`);
    const supporting = ['Organization/payer-org', 'Organization/clinic', 'Practitioner/dr-a', 'PractitionerRole/dr-a-role', 'Location/ward', 'Medication/med'];
    expect(keys.sort()).toEqual(['Patient/m1', ...record, ...supporting].sort());
  });

  it('includes claims, prior authorizations and the coverage, and marks supporting resources as included', async () => {
    const bundle = await everythingOf();
    const byKey = new Map((bundle.entry ?? []).map((e) => [`${e.resource?.resourceType}/${e.resource?.id}`, e]));
    expect((byKey.get('ExplanationOfBenefit/m1-preauth')?.resource as { use?: string }).use).toBe('preauthorization');
    for (const key of ['ExplanationOfBenefit/m1-eob', 'Claim/m1-claim', 'ClaimResponse/m1-claim-response', 'Coverage/m1-coverage']) expect(byKey.get(key)?.search?.mode, key).toBe('match');
    expect(byKey.get('Organization/clinic')?.search?.mode).toBe('include');
    expect(byKey.get('Patient/m1')?.fullUrl).toBe(`${BASE_URL}/Patient/m1`);
  });

  it("holds what a search of the seeded member's compartment finds, and the providers its claims name", async () => {
    const response = await baton.request(`/fhir/Patient/${SEEDED}/$everything`);
    expect(response.status).toBe(200);
    const keys = keysOf(await body<Bundle>(response));
    const ofType = (type: string) => keys.filter((k) => k.startsWith(`${type}/`)).sort();
    const types = new Set(keys.map((k) => k.split('/')[0]));
    for (const type of ['Encounter', 'Observation', 'Condition', 'ExplanationOfBenefit', 'Coverage']) expect(types.has(type), type).toBe(true);
    for (const type of [...types].filter((t) => !['Patient', 'Organization', 'Coverage'].includes(t))) {
      const found = keysOf(await body<Bundle>(await baton.request(`/fhir/${type}?patient=Patient/${SEEDED}&_count=1000`)));
      expect(ofType(type), type).toEqual(found.sort());
    }
    expect(ofType('Coverage')).toContain('Coverage/ev-coverage-1');
    const providers = keysOf(await body<Bundle>(await baton.request(`/fhir/ExplanationOfBenefit?patient=Patient/${SEEDED}&_include=ExplanationOfBenefit:provider&_count=1000`))).filter((k) => k.startsWith('Organization/'));
    expect(providers.length).toBeGreaterThan(0);
    expect(keys).toEqual(expect.arrayContaining(providers));
    expect(ofType('Patient')).toEqual([`Patient/${SEEDED}`]);
  });
});

describe('paging', () => {
  it('covers every resource exactly once across pages, by next links under the base URL', async () => {
    const whole = keysOf(await everythingOf());
    const seen: string[] = [];
    let url: string | undefined = `${BASE_URL}/Patient/m1/$everything?_count=4`;
    let pages = 0;
    while (url) {
      expect(url.startsWith(`${BASE_URL}/Patient/m1/$everything?`)).toBe(true);
      const page: Bundle = await body<Bundle>(await baton.request(url.replace(BASE_URL, '/fhir')));
      expect(page.total).toBe(whole.length);
      expect((page.entry ?? []).length).toBeLessThanOrEqual(4);
      seen.push(...keysOf(page));
      url = page.link?.find((l) => l.relation === 'next')?.url;
      pages++;
    }
    expect(pages).toBe(Math.ceil(whole.length / 4));
    expect(seen).toEqual(whole);
  });

  it('keeps its place when a resource is added before the cursor between pages', async () => {
    const first = await everythingOf('?_count=3');
    const next = first.link?.find((l) => l.relation === 'next')?.url as string;
    const put = await baton.request('/fhir/Account/m1-account', { method: 'PUT', json: { resourceType: 'Account', id: 'm1-account', status: 'active', subject: [SUBJECT] } });
    expect(put.status).toBe(201);
    try {
      const second = await body<Bundle>(await baton.request(next.replace(BASE_URL, '/fhir')));
      const whole = keysOf(await everythingOf());
      const firstKeys = keysOf(first);
      expect(keysOf(second)).toEqual(whole.filter((k) => k !== 'Account/m1-account').slice(3, 6));
      expect(firstKeys.some((k) => keysOf(second).includes(k))).toBe(false);
    } finally {
      expect((await baton.request('/fhir/Account/m1-account', { method: 'DELETE' })).status).toBeLessThan(300);
    }
  });

  it('answers the total alone for _count=0', async () => {
    const bundle = await everythingOf('?_count=0');
    expect(bundle.entry).toBeUndefined();
    expect(bundle.total).toBe(keysOf(await everythingOf()).length);
  });
});

describe('inputs', () => {
  it('keeps records whose care date overlaps start/end, and records without a care date', async () => {
    const from2024 = keysOf(await everythingOf('?start=2024-01-01'));
    expect(from2024).toEqual(expect.arrayContaining(['Observation/m1-obs-2024', 'Observation/m1-obs-undated', 'Coverage/m1-coverage', 'MedicationRequest/m1-rx', 'Device/m1-device']));
    expect(from2024).not.toContain('Observation/m1-obs-2019');
    expect(from2024).not.toContain('Encounter/m1-enc-2019');
    // What only the 2019 records referenced is no longer needed to support the answer.
    expect(from2024).not.toContain('Location/ward');

    const until2019 = keysOf(await everythingOf('?end=2019'));
    expect(until2019).toEqual(expect.arrayContaining(['Observation/m1-obs-2019', 'Encounter/m1-enc-2019', 'Observation/m1-obs-undated', 'Location/ward']));
    for (const key of ['Observation/m1-obs-2024', 'ExplanationOfBenefit/m1-eob', 'ExplanationOfBenefit/m1-preauth', 'Claim/m1-claim']) expect(until2019).not.toContain(key);

    const march2024 = keysOf(await everythingOf('?start=2024-03&end=2024-03'));
    expect(march2024).toEqual(expect.arrayContaining(['Observation/m1-obs-2024', 'ExplanationOfBenefit/m1-eob', 'Claim/m1-claim']));
    for (const key of ['ExplanationOfBenefit/m1-preauth', 'Observation/m1-obs-psy', 'Observation/m1-obs-2019']) expect(march2024).not.toContain(key);
    expect(march2024[0]).toBe('Patient/m1');
  });

  it('returns what changed at or after _since, and the Patient', async () => {
    const before = await everythingOf();
    const lastUpdated = (bundle: Bundle) => Math.max(...(bundle.entry ?? []).map((e) => Date.parse(e.resource?.meta?.lastUpdated as string)));
    const since = new Date(lastUpdated(before) + 1).toISOString();
    const changed = { ...(MEMBER.find((r) => r.id === 'm1-obs-2024') as Resource), status: 'amended' };
    expect((await baton.request('/fhir/Observation/m1-obs-2024', { method: 'PUT', json: changed })).status).toBe(200);
    expect(keysOf(await everythingOf(`?_since=${encodeURIComponent(since)}`))).toEqual(['Patient/m1', 'Observation/m1-obs-2024']);
    expect(keysOf(await everythingOf('?_since=2999-01-01T00:00:00Z'))).toEqual(['Patient/m1']);
  });

  it('returns the types _type names, and the Patient whatever it names', async () => {
    const keys = keysOf(await everythingOf('?_type=Observation,Organization&_type=ExplanationOfBenefit'));
    expect(keys[0]).toBe('Patient/m1');
    expect(new Set(keys.slice(1).map((k) => k.split('/')[0]))).toEqual(new Set(['Observation', 'Organization', 'ExplanationOfBenefit']));
    expect(keys).toEqual(expect.arrayContaining(['Organization/clinic', 'Organization/payer-org', 'ExplanationOfBenefit/m1-preauth']));
    expect(keysOf(await everythingOf('?_type=Practitioner'))).toEqual(['Patient/m1', 'Practitioner/dr-a']);
    expect(keysOf(await everythingOf('?_type=ValueSet'))).toEqual(['Patient/m1']);
  });

  it('takes the inputs as Parameters by POST', async () => {
    const response = await baton.request('/fhir/Patient/m1/$everything', {
      method: 'POST',
      json: { resourceType: 'Parameters', parameter: [{ name: 'start', valueDate: '2024-01-01' }, { name: '_type', valueCode: 'Observation' }, { name: '_count', valueInteger: 2 }] },
    });
    expect(response.status).toBe(200);
    const bundle = await body<Bundle>(response);
    const viaGet = await everythingOf('?start=2024-01-01&_type=Observation&_count=2');
    expect(keysOf(bundle)).toEqual(keysOf(viaGet));
    expect(bundle.link).toEqual(viaGet.link);
  });

  it.each([
    ['?foo=1', 'foo'],
    ['?_summary=count', '_summary'],
    ['?start=2024-13-01', 'start'],
    ['?end=yesterday', 'end'],
    ['?start=2024-05-01&end=2024-04-01', 'start'],
    ['?start=2024&start=2025', 'start'],
    ['?_since=last-week', '_since'],
    ['?_type=Observation,Nonsense', '_type'],
    ['?_type=', '_type'],
    ['?_count=-1', '_count'],
    ['?_count=many', '_count'],
    ['?_cursor=elsewhere', '_cursor'],
  ])('refuses %s with a 400 naming %s', async (query, name) => {
    const response = await everything(query);
    expect(response.status).toBe(400);
    const outcome = await body(response);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].expression).toContain(name);
  });

  it('ignores an unknown parameter under Prefer: handling=lenient, not a bad value', async () => {
    const lenient = { headers: { prefer: 'handling=lenient' } };
    expect((await baton.request('/fhir/Patient/m1/$everything?foo=1', lenient)).status).toBe(200);
    expect((await baton.request('/fhir/Patient/m1/$everything?_count=-1', lenient)).status).toBe(400);
  });

  it('refuses a POST body that is not Parameters', async () => {
    const response = await baton.request('/fhir/Patient/m1/$everything', { method: 'POST', json: { resourceType: 'Patient' } });
    expect(response.status).toBe(400);
  });

  it('answers 404 for an unknown Patient and 403 without read on Patient', async () => {
    expect((await baton.request('/fhir/Patient/nobody/$everything')).status).toBe(404);
    const observationsOnly = await baton.token({ scopes: ['system/Observation.rs'] });
    expect((await everything('', observationsOnly)).status).toBe(403);
  });
});

describe('access', () => {
  it('answers a partner without a grant for the member exactly as for an unknown id', async () => {
    const token = await partnerToken(strangerPartner);
    const hidden = await everything('', token);
    const unknown = await baton.request('/fhir/Patient/nobody/$everything', { token });
    expect(hidden.status).toBe(404);
    expect(unknown.status).toBe(404);
    const [h, u] = [await body(hidden), await body(unknown)];
    expect(h.issue[0].diagnostics.replace('m1', '?')).toBe(u.issue[0].diagnostics.replace('nobody', '?'));
  });

  it("gives a granted partner the member's record and its supporting resources, and no one else's", async () => {
    const keys = keysOf(await everythingOf('', await partnerToken(partner)));
    expect(keys.sort()).toEqual(keysOf(await everythingOf()).sort());
    expect(keys).not.toContain('Observation/m2-obs');
    expect(keys).not.toContain('Patient/m2');
  });

  it('leaves out data bearing a label the grant excludes (HRex #regular), and what only that data referenced', async () => {
    const keys = keysOf(await everythingOf('', await partnerToken(regularPartner)));
    expect(keys).not.toContain('Observation/m1-obs-psy');
    expect(keys).not.toContain('PractitionerRole/dr-a-role');
    expect(keys).toEqual(expect.arrayContaining(['Patient/m1', 'Observation/m1-obs-2024', 'ExplanationOfBenefit/m1-preauth', 'Practitioner/dr-a']));
    const full = keysOf(await everythingOf('', await partnerToken(partner)));
    expect(full).toContain('Observation/m1-obs-psy');
    expect(full).toContain('PractitionerRole/dr-a-role');
  });

  it('leaves out the types the caller may not read', async () => {
    const token = await baton.token({ scopes: ['system/Patient.rs', 'system/Observation.rs'] });
    const keys = keysOf(await everythingOf('', token));
    expect(new Set(keys.map((k) => k.split('/')[0]))).toEqual(new Set(['Patient', 'Observation']));
  });
});

describe('audit', () => {
  it("records each page as an operation on the member's record, naming the member, the partner and the operation", async () => {
    const token = await partnerToken(partner);
    const first = await everythingOf('?_type=Organization&_count=1', token);
    const next = first.link?.find((l) => l.relation === 'next')?.url as string;
    // The second page holds only Organizations, which belong to no patient.
    const second = await body<Bundle>(await baton.request(next.replace(BASE_URL, '/fhir'), { token }));
    expect(keysOf(second).every((k) => k.startsWith('Organization/'))).toBe(true);
    await baton.sealAudit();
    const auditor = await baton.token({ clientId: 'auditor', scopes: ['system/AuditEvent.rs'] });
    const events = await body<Bundle>(await baton.request(`/fhir/AuditEvent?patient=Patient/m1&agent:identifier=http://baton.test|${partner}&_count=50`, { token: auditor }));
    type Event = { subtype?: { code?: string }[]; outcome?: string; entity?: { query?: string }[] };
    const queryOf = (e: Event) => Buffer.from(e.entity?.find((x) => x.query)?.query ?? '', 'base64').toString();
    const pages = (events.entry ?? []).map((e) => e.resource as Event).filter((e) => queryOf(e).includes('$everything?_type=Organization'));
    expect(pages).toHaveLength(2);
    for (const event of pages) {
      expect(event.subtype?.map((c) => c.code)).toContain('http://hl7.org/fhir/OperationDefinition/Patient-everything');
      expect(event.outcome).toBe('0');
    }
  });
});

describe('Inferno PDex fixture', () => {
  const fixture = `${FIXTURES}/spec-everything-response.json`;
  const present = existsSync(fixture);
  const name = 'returns every resource of the Inferno example member, in the shape of the example response';
  it.skipIf(!present)(present ? name : `${name} (skipped: ${fixture} is absent)`, async () => {
    const example = JSON.parse(readFileSync(fixture, 'utf8')) as Bundle;
    const patientId = (example.entry ?? []).find((e) => e.resource?.resourceType === 'Patient')?.resource?.id as string;
    for (const { resource } of example.entry ?? []) {
      const response = await baton.request(`/fhir/${resource?.resourceType}/${resource?.id}`, { method: 'PUT', json: resource });
      expect(response.status, `${resource?.resourceType}/${resource?.id}`).toBeLessThan(300);
    }
    const response = await baton.request(`/fhir/Patient/${patientId}/$everything`);
    expect(response.status).toBe(200);
    const bundle = await body<Bundle>(response);
    expect(bundle.resourceType).toBe(example.resourceType);
    expect(bundle.type).toBe(example.type);
    expect(keysOf(bundle).sort()).toEqual(expect.arrayContaining(keysOf(example).sort()));
    expect(keysOf(bundle).filter((k) => k.startsWith('Patient/'))).toEqual([`Patient/${patientId}`]);
    for (const entry of bundle.entry ?? []) expect(entry.fullUrl).toBe(`${BASE_URL}/${entry.resource?.resourceType}/${entry.resource?.id}`);
    expect(bundle.link?.[0]).toMatchObject({ relation: 'self' });
  });
});
