import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processBundle } from '../../src/fhir/bundle.ts';
import { BASE_URL, body, startBaton, type TestBaton, UUID_V7 } from '../support/baton.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton.close());

const FIXTURES = new URL('../../../shared/fixtures/davinci/', import.meta.url);
const SYSTEM = 'https://plan.example.org/member';

const urn = (): string => `urn:uuid:${randomUUID()}`;
const transaction = (...entry: BundleEntry[]): Bundle => ({ resourceType: 'Bundle', type: 'transaction', entry });
const batch = (...entry: BundleEntry[]): Bundle => ({ resourceType: 'Bundle', type: 'batch', entry });
const member = (value: string, extra: Record<string, unknown> = {}): Resource =>
  ({ resourceType: 'Patient', identifier: [{ system: SYSTEM, value }], ...extra }) as Resource;
const observation = (subject: string): Resource =>
  ({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: subject } }) as Resource;
// Observation.code is 1..1: this one is not valid R4.
const invalidObservation = { resourceType: 'Observation', status: 'final' } as Resource;

const post = (bundle: unknown) => baton.request('/fhir', { method: 'POST', json: bundle });
const get = async (path: string) => body(await baton.request(`/fhir/${path}`));
const put = (path: string, resource: unknown) => baton.request(`/fhir/${path}`, { method: 'PUT', json: resource });
const idOf = (entry: BundleEntry): string => /\/([^/]+)\/_history\/\d+$/.exec(entry.response?.location ?? '')?.[1] as string;
const codes = (bundle: Bundle): string[] => (bundle.entry ?? []).map((e) => e.response?.status.slice(0, 3) as string);
/** The newest version in the whole server's history: unchanged when a transaction wrote nothing. */
const newestWrite = async (): Promise<string> => {
  const [latest] = (await get('_history?_count=1')).entry as BundleEntry[];
  return `${latest.fullUrl} ${latest.response?.etag}`;
};

function readFixture(path: string): any {
  return JSON.parse(readFileSync(new URL(path, FIXTURES), 'utf8'));
}

describe.skipIf(!existsSync(FIXTURES))('transaction over the Inferno $everything example (needs ../shared/fixtures)', () => {
  it('creates every entry and rewrites urn:uuid references, forward ones included, to the assigned ids', async () => {
    const searchset = readFixture('inferno/spec-everything-response.json') as Bundle;
    const urns = new Map<string, string>();
    for (const entry of searchset.entry ?? []) urns.set(`${entry.resource?.resourceType}/${entry.resource?.id}`, urn());
    // As a client would send it: references to Bundle members become the members' urn:uuid.
    const text = JSON.stringify(searchset.entry).replace(/"reference":"([^"]+)"/g, (ref, target: string) => (urns.has(target) ? `"reference":"${urns.get(target)}"` : ref));
    const members = (JSON.parse(text) as BundleEntry[]).map((e) => e.resource as Resource & { id?: string });
    const patientUrn = urns.get('Patient/999') as string;
    const encounter = members.find((r) => r.resourceType === 'Encounter') as any;
    encounter.text.div = `<div xmlns="http://www.w3.org/1999/xhtml"><a href="${patientUrn}">the member</a></div>`;
    // Patient last: every other entry refers forward to it.
    const entries = members.reverse().map((resource) => {
      const fullUrl = urns.get(`${resource.resourceType}/${resource.id}`) as string;
      const { id: _id, ...content } = resource;
      return { fullUrl, resource: content as Resource, request: { method: 'POST' as const, url: resource.resourceType } };
    });

    const res = await post(transaction(...entries));
    expect(res.status).toBe(200);
    const answer = await body<Bundle>(res);
    expect(answer.type).toBe('transaction-response');
    expect(codes(answer)).toEqual(entries.map(() => '201'));
    expect(answer.entry?.map((e) => e.resource?.resourceType)).toEqual(entries.map((e) => e.resource.resourceType));
    const patientEntry = answer.entry?.at(-1) as BundleEntry;
    const patientId = idOf(patientEntry);
    expect(patientEntry.response).toMatchObject({ status: '201 Created', location: `${BASE_URL}/Patient/${patientId}/_history/1`, etag: 'W/"1"' });
    expect(Date.parse(patientEntry.response?.lastModified as string)).not.toBeNaN();

    for (const entry of answer.entry?.slice(0, -1) ?? []) {
      const stored = await get(`${entry.resource?.resourceType}/${idOf(entry)}`);
      const references = JSON.stringify(stored).match(/"reference":"[^"]+"/g) ?? [];
      expect(references.length).toBeGreaterThan(0);
      expect(references.filter((r) => r.includes('Patient/'))).toEqual(references.filter((r) => r.includes('Patient/')).map(() => `"reference":"Patient/${patientId}"`));
      expect(JSON.stringify(stored)).not.toContain('urn:uuid:');
    }
    const careTeam = answer.entry?.find((e) => e.resource?.resourceType === 'CareTeam') as BundleEntry;
    expect(JSON.stringify(await get(`CareTeam/${idOf(careTeam)}`))).toContain('"reference":"Practitioner/pdex-Practitioner"');
    const storedEncounter = answer.entry?.find((e) => e.resource?.resourceType === 'Encounter') as BundleEntry;
    expect((await get(`Encounter/${idOf(storedEncounter)}`)).text.div).toContain(`href="Patient/${patientId}"`);
  });
});

describe('transaction', () => {
  it('writes a Bundle of 600 PUTs, then updates every one of them in another', async () => {
    const entries = (value: string) =>
      Array.from({ length: 600 }, (_, i) => ({ resource: { resourceType: 'Basic', id: `bulk-put-${i}`, code: { text: value } }, request: { method: 'PUT', url: `Basic/bulk-put-${i}` } }));
    const first = await post({ resourceType: 'Bundle', type: 'transaction', entry: entries('first') });
    expect(first.status).toBe(200);
    expect(((await first.json()) as Bundle).entry?.every((e) => e.response?.status?.startsWith('201'))).toBe(true);
    const second = await post({ resourceType: 'Bundle', type: 'transaction', entry: entries('second') });
    expect(second.status).toBe(200);
    expect(((await second.json()) as Bundle).entry?.every((e) => e.response?.status?.startsWith('200') && e.response.etag === 'W/"2"')).toBe(true);
  });

  it('rewrites urn:oid references too, in PUT bodies and in contained resources', async () => {
    const patientUrn = 'urn:oid:2.16.840.1.113883.3.4242.1';
    const res = await post(
      transaction(
        {
          resource: {
            resourceType: 'Coverage',
            id: 'tx-coverage-1',
            status: 'active',
            beneficiary: { reference: patientUrn },
            payor: [{ reference: '#payer' }],
            contained: [{ resourceType: 'RelatedPerson', id: 'payer', patient: { reference: patientUrn } }],
          } as Resource,
          request: { method: 'PUT', url: 'Coverage/tx-coverage-1' },
        },
        { fullUrl: patientUrn, resource: member('TX-PUT-1'), request: { method: 'POST', url: 'Patient' } },
      ),
    );
    expect(res.status).toBe(200);
    const answer = await body<Bundle>(res);
    expect(codes(answer)).toEqual(['201', '201']);
    const patient = `Patient/${idOf(answer.entry?.[1] as BundleEntry)}`;
    const coverage = await get('Coverage/tx-coverage-1');
    expect(coverage.beneficiary.reference).toBe(patient);
    expect(coverage.contained[0].patient.reference).toBe(patient);
    expect(coverage.payor[0].reference).toBe('#payer');
  });

  it('processes DELETE, then POST, then PUT/PATCH, then GET, answering in the request order', async () => {
    await put('Patient/order-a', { resourceType: 'Patient', id: 'order-a', gender: 'male' });
    await put('Patient/order-b', { resourceType: 'Patient', id: 'order-b' });
    const res = await post(
      transaction(
        { request: { method: 'GET', url: 'Patient/order-a' } },
        { resource: { resourceType: 'Patient', id: 'order-a', gender: 'female' } as Resource, request: { method: 'PUT', url: 'Patient/order-a' } },
        { fullUrl: urn(), resource: member('ORDER-NEW'), request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'DELETE', url: 'Patient/order-b' } },
      ),
    );
    expect(res.status).toBe(200);
    const answer = await body<Bundle>(res);
    expect(answer.entry?.map((e) => e.response?.status)).toEqual(['200 OK', '200 OK', '201 Created', '204 No Content']);
    // The GET, listed first, ran last: it sees the update.
    expect(answer.entry?.[0].resource).toMatchObject({ id: 'order-a', gender: 'female', meta: { versionId: '2' } });
    const writes = await get('_history?_count=3');
    expect(writes.entry.map((e: BundleEntry) => `${e.request?.method} ${e.request?.url}`)).toEqual(['PUT Patient/order-a', 'POST Patient', 'DELETE Patient/order-b']);
    expect((await baton.request('/fhir/Patient/order-b')).status).toBe(410);
  });

  it('writes nothing when the third entry fails, and names that entry', async () => {
    await put('Patient/rollback-1', { resourceType: 'Patient', id: 'rollback-1', gender: 'male' });
    const before = await newestWrite();
    const res = await post(
      transaction(
        { fullUrl: urn(), resource: member('ROLLBACK-NEW'), request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Patient', id: 'rollback-1', gender: 'female' } as Resource, request: { method: 'PUT', url: 'Patient/rollback-1' } },
        { fullUrl: urn(), resource: invalidObservation, request: { method: 'POST', url: 'Observation' } },
        { fullUrl: urn(), resource: member('ROLLBACK-LAST'), request: { method: 'POST', url: 'Patient' } },
      ),
    );
    expect(res.status).toBe(400);
    const outcome = await body(res);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].diagnostics).toMatch(/^Bundle\.entry\[2\]: /);
    expect(outcome.issue[0].expression).toContain('Bundle.entry[2]');

    expect(await get('Patient/rollback-1')).toMatchObject({ gender: 'male', meta: { versionId: '1' } });
    expect((await get('Patient/rollback-1/_history')).entry).toHaveLength(1);
    expect(await newestWrite()).toBe(before);
    for (const value of ['ROLLBACK-NEW', 'ROLLBACK-LAST']) expect((await get(`Patient?identifier=${SYSTEM}|${value}`)).entry ?? []).toEqual([]);
  });

  it('answers 412 for a stale ifMatch and writes none of the entries before it', async () => {
    await put('Patient/if-match-1', { resourceType: 'Patient', id: 'if-match-1' });
    const before = await newestWrite();
    const stale = await post(
      transaction(
        { fullUrl: urn(), resource: member('IF-MATCH-NEW'), request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Patient', id: 'if-match-1', active: true } as Resource, request: { method: 'PUT', url: 'Patient/if-match-1', ifMatch: 'W/"7"' } },
      ),
    );
    expect(stale.status).toBe(412);
    expect((await body(stale)).issue[0].diagnostics).toMatch(/^Bundle\.entry\[1\]: .*version 1, not 7/);
    expect(await newestWrite()).toBe(before);

    const current = await post(
      transaction({ resource: { resourceType: 'Patient', id: 'if-match-1', active: true } as Resource, request: { method: 'PUT', url: 'Patient/if-match-1', ifMatch: 'W/"1"' } }),
    );
    expect((await body<Bundle>(current)).entry?.[0].response).toMatchObject({ status: '200 OK', etag: 'W/"2"' });
    const staleDelete = await post(transaction({ request: { method: 'DELETE', url: 'Patient/if-match-1', ifMatch: 'W/"1"' } }));
    expect(staleDelete.status).toBe(412);
  });

  it.each([
    [
      'a PUT and a DELETE of one resource',
      [
        { resource: { resourceType: 'Patient', id: 'twice-1' }, request: { method: 'PUT', url: 'Patient/twice-1' } },
        { request: { method: 'DELETE', url: 'Patient/twice-1' } },
      ],
    ],
    [
      'two creates with the same If-None-Exist',
      [
        { resource: member('TWICE-2'), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYSTEM}|TWICE-2` } },
        { resource: member('TWICE-2'), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYSTEM}|TWICE-2` } },
      ],
    ],
  ])('answers 400 when the same resource is written twice: %s', async (_case, entries) => {
    const res = await post(transaction(...(entries as BundleEntry[])));
    expect(res.status).toBe(400);
    expect((await body(res)).issue[0].diagnostics).toMatch(/^Bundle\.entry\[1\]: .*also written by Bundle\.entry\[0\]/);
    expect((await get(`Patient?identifier=${SYSTEM}|TWICE-2`)).entry ?? []).toEqual([]);
    expect((await baton.request('/fhir/Patient/twice-1')).status).toBe(404);
  });

  it('resolves If-None-Exist: a match is answered 200 and references to its fullUrl point at it', async () => {
    const existing = await body(await baton.request('/fhir/Patient', { method: 'POST', json: member('CC-1') }));
    const matchUrn = urn();
    const newUrn = urn();
    const res = await post(
      transaction(
        { fullUrl: matchUrn, resource: member('CC-1'), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYSTEM}|CC-1` } },
        { fullUrl: newUrn, resource: member('CC-2'), request: { method: 'POST', url: 'Patient', ifNoneExist: `Patient?identifier=${SYSTEM}|CC-2` } },
        { fullUrl: urn(), resource: observation(matchUrn), request: { method: 'POST', url: 'Observation' } },
        { fullUrl: urn(), resource: observation(newUrn), request: { method: 'POST', url: 'Observation' } },
      ),
    );
    const answer = await body<Bundle>(res);
    expect(codes(answer)).toEqual(['200', '201', '201', '201']);
    expect(answer.entry?.[0].resource?.id).toBe(existing.id);
    expect(answer.entry?.[2].resource).toMatchObject({ subject: { reference: `Patient/${existing.id}` } });
    expect(answer.entry?.[3].resource).toMatchObject({ subject: { reference: `Patient/${answer.entry?.[1].resource?.id}` } });
  });

  it('resolves a conditional reference to the one matching resource', async () => {
    const target = await body(await baton.request('/fhir/Patient', { method: 'POST', json: member('CR-1') }));
    const res = await post(transaction({ fullUrl: urn(), resource: observation(`Patient?identifier=${SYSTEM}|CR-1`), request: { method: 'POST', url: 'Observation' } }));
    expect(res.status).toBe(200);
    const created = (await body<Bundle>(res)).entry?.[0] as BundleEntry;
    expect((await get(`Observation/${idOf(created)}`)).subject.reference).toBe(`Patient/${target.id}`);
  });

  it.each([
    ['matches nothing', `Patient?identifier=${SYSTEM}|CR-NONE`, 412, 'matched 0'],
    ['matches two resources', `Patient?identifier=${SYSTEM}|CR-TWO`, 412, 'matched 2'],
    ['names an unknown type', 'Nonsense?identifier=x', 400, 'unknown resource type'],
    ['has an invalid search value', 'Patient?birthdate=not-a-date', 400, ''],
  ])('answers the failing status when a conditional reference %s', async (_case, reference, status, message) => {
    if ((await get(`Patient?identifier=${SYSTEM}|CR-TWO`)).entry === undefined) {
      await baton.request('/fhir/Patient', { method: 'POST', json: member('CR-TWO') });
      await baton.request('/fhir/Patient', { method: 'POST', json: member('CR-TWO') });
    }
    const res = await post(
      transaction(
        { fullUrl: urn(), resource: member('CR-ROLLBACK'), request: { method: 'POST', url: 'Patient' } },
        { fullUrl: urn(), resource: observation(reference), request: { method: 'POST', url: 'Observation' } },
      ),
    );
    expect(res.status).toBe(status);
    const outcome = await body(res);
    expect(outcome.issue[0].diagnostics).toMatch(/^Bundle\.entry\[1\]: /);
    expect(outcome.issue[0].diagnostics).toContain(message);
    expect((await get(`Patient?identifier=${SYSTEM}|CR-ROLLBACK`)).entry ?? []).toEqual([]);
  });

  it('resolves a conditional update first, so urn references to it point at the resource it writes', async () => {
    const patientUrn = urn();
    const res = await post(
      transaction(
        { fullUrl: urn(), resource: observation(patientUrn), request: { method: 'POST', url: 'Observation' } },
        { fullUrl: patientUrn, resource: member('CU-1'), request: { method: 'PUT', url: `Patient?identifier=${SYSTEM}|CU-1` } },
      ),
    );
    const answer = await body<Bundle>(res);
    expect(codes(answer)).toEqual(['201', '201']);
    const patientId = answer.entry?.[1].resource?.id;
    expect(answer.entry?.[0].resource).toMatchObject({ subject: { reference: `Patient/${patientId}` } });

    const again = await post(
      transaction({ fullUrl: urn(), resource: member('CU-1', { gender: 'other' }), request: { method: 'PUT', url: `Patient?identifier=${SYSTEM}|CU-1` } }),
    );
    expect((await body<Bundle>(again)).entry?.[0]).toMatchObject({ response: { status: '200 OK', etag: 'W/"2"' }, resource: { id: patientId, gender: 'other' } });
  });

  it('applies a JSON Patch carried as a Binary', async () => {
    await put('Patient/patched-1', { resourceType: 'Patient', id: 'patched-1', gender: 'male' });
    const operations = [{ op: 'replace', path: '/gender', value: 'female' }];
    const binary = { resourceType: 'Binary', contentType: 'application/json-patch+json', data: Buffer.from(JSON.stringify(operations)).toString('base64') };
    const res = await post(transaction({ resource: binary as Resource, request: { method: 'PATCH', url: 'Patient/patched-1' } }));
    expect((await body<Bundle>(res)).entry?.[0]).toMatchObject({ response: { status: '200 OK', etag: 'W/"2"' }, resource: { gender: 'female' } });
  });

  it('answers reads, version reads, history and searches, and HEAD without a body', async () => {
    await put('Patient/reads-1', { resourceType: 'Patient', id: 'reads-1', identifier: [{ system: SYSTEM, value: 'READS-1' }] });
    await put('Patient/reads-1', { resourceType: 'Patient', id: 'reads-1', identifier: [{ system: SYSTEM, value: 'READS-1' }], active: true });
    const res = await post(
      transaction(
        { request: { method: 'GET', url: 'Patient/reads-1' } },
        { request: { method: 'GET', url: 'Patient/reads-1/_history/1' } },
        { request: { method: 'GET', url: 'Patient/reads-1/_history' } },
        { request: { method: 'GET', url: `Patient?identifier=${SYSTEM}|READS-1` } },
        { request: { method: 'HEAD', url: 'Patient/reads-1' } },
        { request: { method: 'GET', url: 'Patient/reads-1', ifNoneMatch: 'W/"2"' } },
        { request: { method: 'GET', url: `${BASE_URL}/Patient/reads-1?_elements=identifier` } },
      ),
    );
    const answer = await body<Bundle>(res);
    expect(codes(answer)).toEqual(['200', '200', '200', '200', '200', '304', '200']);
    expect(answer.entry?.[0].resource?.meta?.versionId).toBe('2');
    expect(answer.entry?.[1].resource?.meta?.versionId).toBe('1');
    expect(answer.entry?.[2].resource).toMatchObject({ resourceType: 'Bundle', type: 'history' });
    expect((answer.entry?.[2].resource as Bundle).entry).toHaveLength(2);
    const found = answer.entry?.[3].resource as Bundle;
    expect(found.type).toBe('searchset');
    expect(found.entry?.map((e) => e.resource?.id)).toEqual(['reads-1']);
    expect(answer.entry?.[4].resource).toBeUndefined();
    expect(answer.entry?.[4].response?.etag).toBe('W/"2"');
    expect(answer.entry?.[5].resource).toBeUndefined();
    expect(answer.entry?.[6].resource).not.toHaveProperty('active');
    expect(answer.entry?.[6].resource?.meta?.tag).toContainEqual(expect.objectContaining({ code: 'SUBSETTED' }));
  });

  it('stores a nested transaction Bundle as a resource without processing it', async () => {
    const inner = transaction({ fullUrl: 'urn:uuid:6a1d4c9e-5a53-4d34-9b6e-1b9f1f0c0a01', resource: member('NESTED-1'), request: { method: 'POST', url: 'Patient' } });
    const res = await post(transaction({ fullUrl: urn(), resource: inner as Resource, request: { method: 'POST', url: 'Bundle' } }));
    expect(res.status).toBe(200);
    const created = (await body<Bundle>(res)).entry?.[0] as BundleEntry;
    expect(created.response?.status).toBe('201 Created');
    const stored = await get(`Bundle/${idOf(created)}`);
    expect(stored).toMatchObject({ type: 'transaction', entry: [{ fullUrl: 'urn:uuid:6a1d4c9e-5a53-4d34-9b6e-1b9f1f0c0a01', request: { method: 'POST' } }] });
    expect((await get(`Patient?identifier=${SYSTEM}|NESTED-1`)).entry ?? []).toEqual([]);
  });

  it('assigns the resources it creates time-ordered ids (UUIDv7)', async () => {
    const res = await post(transaction(...[1, 2, 3].map((n) => ({ fullUrl: urn(), resource: { resourceType: 'Patient', identifier: [{ system: SYSTEM, value: `V7-${n}` }] } as Resource, request: { method: 'POST' as const, url: 'Patient' } }))));
    expect(res.status).toBe(200);
    const ids = ((await body<Bundle>(res)).entry ?? []).map(idOf);
    expect(ids).toHaveLength(3);
    for (const id of ids) expect(id).toMatch(UUID_V7);
  });

  it('answers an empty transaction with an empty transaction-response', async () => {
    const res = await post(transaction());
    expect(res.status).toBe(200);
    expect(await body(res)).toEqual({ resourceType: 'Bundle', type: 'transaction-response', entry: [] });
  });

  it('answers 400 for a urn:uuid reference that no entry creates', async () => {
    const res = await post(transaction({ fullUrl: urn(), resource: observation(urn()), request: { method: 'POST', url: 'Observation' } }));
    expect(res.status).toBe(400);
    expect((await body(res)).issue[0].diagnostics).toMatch(/^Bundle\.entry\[0\]: .*names no fullUrl/);
  });

  it('answers 400 when two entries share a urn fullUrl', async () => {
    const shared = urn();
    const res = await post(
      transaction(
        { fullUrl: shared, resource: member('SHARED-1'), request: { method: 'POST', url: 'Patient' } },
        { fullUrl: shared, resource: member('SHARED-2'), request: { method: 'POST', url: 'Patient' } },
      ),
    );
    expect(res.status).toBe(400);
    expect((await body(res)).issue[0].expression).toContain('Bundle.entry[1].fullUrl');
  });
});

describe('transactions larger than one write chunk', () => {
  const members = (prefix: string, count: number): BundleEntry[] => {
    const patientUrn = urn();
    const entries: BundleEntry[] = [{ fullUrl: patientUrn, resource: member(`${prefix}-0`), request: { method: 'POST', url: 'Patient' } }];
    for (let i = 1; i < count; i++) entries.push({ fullUrl: urn(), resource: observation(patientUrn), request: { method: 'POST', url: 'Observation' } });
    return entries;
  };

  it('writes every entry, with references across chunks rewritten', async () => {
    const res = await post(transaction(...members('LARGE', 450)));
    expect(res.status).toBe(200);
    const answer = await body<Bundle>(res);
    expect(codes(answer).filter((c) => c === '201')).toHaveLength(450);
    const patientId = idOf(answer.entry?.[0] as BundleEntry);
    expect(await get(`Observation/${idOf(answer.entry?.[449] as BundleEntry)}`)).toMatchObject({ subject: { reference: `Patient/${patientId}` } });
    expect((await get(`Observation?subject=Patient/${patientId}&_summary=count`)).total).toBe(449);
  });

  it('writes nothing when the last entry fails after earlier chunks were sent', async () => {
    const before = await newestWrite();
    const entries = members('LARGE-ROLLBACK', 450);
    entries.push({ fullUrl: urn(), resource: invalidObservation, request: { method: 'POST', url: 'Observation' } });
    const res = await post(transaction(...entries));
    expect(res.status).toBe(400);
    expect((await body(res)).issue[0].diagnostics).toMatch(/^Bundle\.entry\[450\]: /);
    expect(await newestWrite()).toBe(before);
    expect((await get(`Patient?identifier=${SYSTEM}|LARGE-ROLLBACK-0`)).entry ?? []).toEqual([]);
  });
});

describe('Prefer: return on the writes of a Bundle', () => {
  const bundle = () => transaction({ fullUrl: urn(), resource: member('PREFER-1'), request: { method: 'POST', url: 'Patient' } });

  it.each([
    ['representation', (entry: BundleEntry) => expect(entry.resource).toMatchObject({ resourceType: 'Patient' })],
    ['minimal', (entry: BundleEntry) => expect(entry).not.toHaveProperty('resource')],
    ['OperationOutcome', (entry: BundleEntry) => expect(entry.response?.outcome).toMatchObject({ resourceType: 'OperationOutcome' })],
  ] as const)('return=%s shapes each entry', async (preferReturn, check) => {
    const answer = await processBundle(baton.ctx, bundle(), { preferReturn });
    expect(answer.entry?.[0].response).toMatchObject({ status: '201 Created', etag: 'W/"1"' });
    check(answer.entry?.[0] as BundleEntry);
  });
});

describe('batch', () => {
  it('answers 200 and reports each failing entry in its own response', async () => {
    const res = await post(
      batch(
        { fullUrl: urn(), resource: member('BATCH-1'), request: { method: 'POST', url: 'Patient' } },
        { fullUrl: urn(), resource: invalidObservation, request: { method: 'POST', url: 'Observation' } },
        { request: { method: 'GET', url: 'Patient/batch-missing' } },
        { resource: { resourceType: 'Patient', id: 'batch-2' } as Resource, request: { method: 'PUT', url: 'Patient/batch-2' } },
        { request: { method: 'DELETE', url: 'Patient/batch-missing' } },
        { resource: member('BATCH-3') } as BundleEntry,
      ),
    );
    expect(res.status).toBe(200);
    const answer = await body<Bundle>(res);
    expect(answer.type).toBe('batch-response');
    expect(codes(answer)).toEqual(['201', '400', '404', '201', '404', '400']);
    expect(answer.entry?.[1].response?.outcome?.issue?.[0].diagnostics).toMatch(/^Bundle\.entry\[1\]: /);
    expect(answer.entry?.[5].response?.outcome?.issue?.[0].expression).toContain('Bundle.entry[5].request');
    expect(answer.entry?.[1]).not.toHaveProperty('resource');
    expect((await get(`Patient?identifier=${SYSTEM}|BATCH-1`)).entry).toHaveLength(1);
    expect((await baton.request('/fhir/Patient/batch-2')).status).toBe(200);
  });

  it('answers a write that races another request with that entry\'s 409, never a failed batch', async () => {
    const racer = () => post(batch({ resource: { resourceType: 'Patient', id: 'batch-race' } as Resource, request: { method: 'PUT', url: 'Patient/batch-race' } }));
    const answers = await Promise.all(Array.from({ length: 6 }, racer));
    expect(answers.map((r) => r.status)).toEqual(answers.map(() => 200));
    const statuses = (await Promise.all(answers.map((r) => body<Bundle>(r)))).map((b) => codes(b)[0]);
    expect(statuses.filter((s) => s === '201')).toHaveLength(1);
    expect(statuses.every((s) => ['200', '201', '409'].includes(s))).toBe(true);
  });

  it('rejects an entry that refers to another entry, since batch entries are independent', async () => {
    const patientUrn = urn();
    const res = await post(
      batch(
        { fullUrl: patientUrn, resource: member('BATCH-LINK'), request: { method: 'POST', url: 'Patient' } },
        { fullUrl: urn(), resource: observation(patientUrn), request: { method: 'POST', url: 'Observation' } },
      ),
    );
    const answer = await body<Bundle>(res);
    expect(codes(answer)).toEqual(['201', '400']);
    expect(answer.entry?.[1].response?.outcome?.issue?.[0].diagnostics).toContain('use a transaction');
  });

  it('resolves conditional references per entry', async () => {
    const target = await body(await baton.request('/fhir/Patient', { method: 'POST', json: member('BATCH-CR') }));
    const answer = await body<Bundle>(
      await post(
        batch(
          { resource: observation(`Patient?identifier=${SYSTEM}|BATCH-CR`), request: { method: 'POST', url: 'Observation' } },
          { resource: observation(`Patient?identifier=${SYSTEM}|BATCH-CR-NONE`), request: { method: 'POST', url: 'Observation' } },
        ),
      ),
    );
    expect(codes(answer)).toEqual(['201', '412']);
    expect(answer.entry?.[0].resource).toMatchObject({ subject: { reference: `Patient/${target.id}` } });
  });
});

describe('bad Bundles', () => {
  it.each([
    ['a resource that is not a Bundle', { resourceType: 'Patient' }, 'takes a Bundle'],
    ['a JSON array', [], 'takes a Bundle'],
    ['a Bundle of another type', { resourceType: 'Bundle', type: 'collection', entry: [] }, 'Bundle.type is "collection"'],
    ['Bundle.entry that is not an array', { resourceType: 'Bundle', type: 'transaction', entry: {} }, 'Bundle.entry must be an array'],
  ])('answers 400 for %s', async (_case, payload, message) => {
    const res = await post(payload);
    expect(res.status).toBe(400);
    const outcome = await body(res);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].diagnostics).toContain(message);
  });

  const patient = { resourceType: 'Patient' };
  it.each([
    ['an entry that is not an object', 'not an entry', 'must be an object'],
    ['an entry without request', { resource: patient }, 'has no request'],
    ['an unknown method', { resource: patient, request: { method: 'FETCH', url: 'Patient' } }, 'request.method must be one of'],
    ['a missing url', { resource: patient, request: { method: 'POST' } }, 'request.url is missing'],
    ['an absolute url of another server', { resource: patient, request: { method: 'POST', url: 'https://elsewhere.example.org/fhir/Patient' } }, 'not this server'],
    ['a body whose resourceType is not the url type', { resource: { resourceType: 'Observation' }, request: { method: 'POST', url: 'Patient' } }, 'does not match'],
    ['a POST without a body', { request: { method: 'POST', url: 'Patient' } }, 'resource is missing'],
    ['an unknown resource type', { resource: patient, request: { method: 'POST', url: 'Nonsense' } }, 'known resource type'],
    ['an invalid id', { request: { method: 'GET', url: 'Patient/not_an_id!' } }, 'Invalid id'],
    ['a PUT without id or criteria', { resource: patient, request: { method: 'PUT', url: 'Patient' } }, 'PUT needs'],
    ['a PATCH that is not a Binary', { resource: patient, request: { method: 'PATCH', url: 'Patient/x' } }, 'Binary'],
    ['a PATCH whose Binary is not JSON Patch', { resource: { resourceType: 'Binary', contentType: 'application/json-patch+json', data: 'e30=' }, request: { method: 'PATCH', url: 'Patient/x' } }, 'JSON Patch array'],
    ['an operation url', { request: { method: 'GET', url: 'Patient/$everything' } }, 'Invalid id'],
    ['a POST with a query', { resource: patient, request: { method: 'POST', url: 'Patient?identifier=x' } }, 'ifNoneExist'],
    ['a non-string ifMatch', { resource: { ...patient, id: 'x' }, request: { method: 'PUT', url: 'Patient/x', ifMatch: 1 } }, 'request.ifMatch must be a string'],
  ])('answers 400 naming the entry for %s, in a transaction and in a batch', async (_case, entry, message) => {
    const res = await post({ resourceType: 'Bundle', type: 'transaction', entry: [entry] });
    expect(res.status).toBe(400);
    const outcome = await body(res);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].diagnostics).toMatch(/^Bundle\.entry\[0\]: /);
    expect(outcome.issue[0].diagnostics).toContain(message);

    const inBatch = await post({ resourceType: 'Bundle', type: 'batch', entry: [entry] });
    expect(inBatch.status).toBe(200);
    expect((await body<Bundle>(inBatch)).entry?.[0].response).toMatchObject({ status: '400 Bad Request', outcome: { issue: [{ diagnostics: outcome.issue[0].diagnostics }] } });
  });

  it('accepts an absolute url of this server', async () => {
    const res = await post(transaction({ resource: { resourceType: 'Patient', id: 'absolute-1' } as Resource, request: { method: 'PUT', url: `${BASE_URL}/Patient/absolute-1` } }));
    expect(codes(await body<Bundle>(res))).toEqual(['201']);
  });
});
