import { afterAll, beforeAll, expect, it } from 'vitest';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/**
 * The Da Vinci search parameters Baton adds to R4's (conformance/search-parameters.json): PDex
 * Group `characteristic-value-reference` (a bulk member match's Groups by requesting payer) and
 * ExplanationOfBenefit `service-date` (PDex, CARIN: billable period or item service dates).
 */
let baton: TestBaton;
const total = async (query: string) => (await body(await baton.request(`/fhir/${query}`))).total;

beforeAll(async () => {
  baton = await startBaton();
  const put = async (resource: Record<string, unknown>) => expect((await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource })).status).toBe(201);
  await put({ resourceType: 'Organization', id: 'new-plan', name: 'New Plan' });
  await put({ resourceType: 'Group', id: 'matched', type: 'person', actual: true, characteristic: [{ code: { text: 'requester' }, valueReference: { reference: 'Organization/new-plan' }, exclude: false }] });
  await put({ resourceType: 'Group', id: 'other', type: 'person', actual: true, characteristic: [{ code: { text: 'plan' }, valueCodeableConcept: { text: 'gold' }, exclude: false }] });
  await put({
    resourceType: 'ExplanationOfBenefit', id: 'eob', status: 'active', type: { text: 'professional' }, use: 'claim', patient: { reference: 'Patient/p' }, created: '2024-01-01',
    insurer: { reference: 'Organization/new-plan' }, provider: { reference: 'Organization/new-plan' }, outcome: 'complete', insurance: [{ focal: true, coverage: { reference: 'Coverage/c' } }],
    billablePeriod: { start: '2023-05-01', end: '2023-05-03' }, item: [{ sequence: 1, productOrService: { text: 'visit' }, servicedDate: '2023-06-07' }],
  });
});
afterAll(async () => {
  await baton?.close();
});

it('finds Groups by the party their characteristic references', async () => {
  expect(await total('Group?characteristic-value-reference=Organization/new-plan')).toBe(1);
  expect(await total('Group?characteristic-value-reference=Organization/elsewhere')).toBe(0);
});

it('finds claims by service date: the billable period or an item date, with prefixes', async () => {
  expect(await total('ExplanationOfBenefit?service-date=2023-05')).toBe(1);
  expect(await total('ExplanationOfBenefit?service-date=2023-06-07')).toBe(1);
  expect(await total('ExplanationOfBenefit?service-date=ge2024-01-01')).toBe(0);
  expect(await total('ExplanationOfBenefit?service-date=lt2023-05-02')).toBe(1);
  expect(await total('ExplanationOfBenefit?service-date=2022')).toBe(0);
  expect((await baton.request('/fhir/ExplanationOfBenefit?service-date=someday')).status).toBe(400);
});

it('lists them in the CapabilityStatement with their IG definitions', async () => {
  const statement = await body(await baton.request('/fhir/metadata', { token: null }));
  const params = (type: string) => statement.rest[0].resource.find((r: { type: string }) => r.type === type).searchParam.map((p: { name: string; definition: string }) => `${p.name} ${p.definition}`);
  expect(params('Group')).toContain('characteristic-value-reference http://hl7.org/fhir/us/davinci-pdex/SearchParameter/pdex-group-characteristic-value-reference');
  expect(params('ExplanationOfBenefit')).toContain('service-date http://hl7.org/fhir/us/davinci-pdex/SearchParameter/explanationofbenefit-service-date');
});
