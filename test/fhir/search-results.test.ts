import type { Bundle, BundleEntry, OperationOutcome, Patient, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_URL, body, startBaton, type TestBaton } from '../support/baton.ts';
import { fixturesPresent, pdex } from './search/examples.ts';

/**
 * Result parameters through HTTP (search.html#return): paging, _sort, _total, _summary,
 * _elements, _include/_revinclude, and the conditional interactions built on the same search.
 */
const MEMBER_SYSTEM = 'http://example.org/old-payer/identifiers/member';
const FAMILIES = ['Zimmerman', 'Abbott', 'Nguyen', 'Okafor', 'Brown'];

describe.skipIf(!fixturesPresent)('search results (needs ../shared/fixtures/davinci)', () => {
  let baton: TestBaton;
  /** The 25 members created from Patient-1001, by member id. */
  const members = new Map<string, Patient>();

  beforeAll(async () => {
    baton = await startBaton();
    const template = pdex<Patient>('Patient-1001');
    for (let i = 0; i < 25; i++) {
      const memberId = `M${String(i).padStart(4, '0')}`;
      const patient: Patient = {
        ...template,
        id: undefined,
        identifier: [{ system: MEMBER_SYSTEM, value: memberId }],
        name: [{ family: FAMILIES[i % FAMILIES.length], given: ['Pat', `N${i}`] }],
        gender: i % 2 ? 'female' : 'male',
        birthDate: `${1950 + i}-0${1 + (i % 9)}-1${i % 10}`,
      };
      const response = await baton.request('/fhir/Patient', { method: 'POST', json: patient });
      expect(response.status).toBe(201);
      members.set(memberId, await body<Patient>(response));
    }
    for (const name of ['Patient-1', 'Organization-Payer1', 'Coverage-883210', 'Coverage-Coverage1', 'Encounter-6', 'Provenance-1000002']) {
      const resource = pdex(name);
      const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
      expect(response.status).toBeLessThan(300);
    }
  });

  afterAll(async () => {
    await baton?.close();
  });

  async function search(path: string, init?: RequestInit): Promise<Bundle> {
    const response = await baton.request(path.startsWith('http') ? new URL(path).pathname + new URL(path).search : `/fhir/${path}`, init);
    expect(response.status, path).toBe(200);
    return body<Bundle>(response);
  }

  const matchEntries = (bundle: Bundle): BundleEntry[] => (bundle.entry ?? []).filter((e) => e.search?.mode === 'match');
  const link = (bundle: Bundle, relation: string): string | undefined => bundle.link?.find((l) => l.relation === relation)?.url;
  const memberQuery = `Patient?identifier=${MEMBER_SYSTEM}|`;

  describe('the searchset Bundle', () => {
    it('is a searchset with absolute fullUrls, match modes and a self link', async () => {
      const bundle = await search('Patient?identifier=M0003');
      expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 1 });
      const [entry] = bundle.entry ?? [];
      const id = members.get('M0003')?.id;
      expect(entry).toMatchObject({ fullUrl: `${BASE_URL}/Patient/${id}`, search: { mode: 'match' }, resource: { resourceType: 'Patient', id } });
      expect(link(bundle, 'self')).toBe(`${BASE_URL}/Patient?identifier=M0003`);
    });

    it('finds nothing without failing', async () => {
      const bundle = await search('Patient?identifier=no-such-member');
      expect(bundle.total).toBe(0);
      expect(bundle.entry).toBeUndefined();
    });
  });

  describe('paging', () => {
    it('follows next links to the end, every member once, in a stable order', async () => {
      const seen: string[] = [];
      let bundle = await search(`${memberQuery}&_count=10&_total=accurate`);
      let pages = 1;
      for (;;) {
        expect(bundle.total).toBe(25);
        seen.push(...matchEntries(bundle).map((e) => e.resource?.id as string));
        const next = link(bundle, 'next');
        if (!next) break;
        expect(next.startsWith(`${BASE_URL}/Patient?`)).toBe(true);
        bundle = await search(next);
        pages++;
      }
      expect(pages).toBe(3);
      expect(seen).toHaveLength(25);
      expect(new Set(seen).size).toBe(25);
      expect(seen).toEqual([...seen].sort());
    });

    it('links back with previous', async () => {
      const first = await search(`${memberQuery}&_count=10`);
      const second = await search(link(first, 'next') as string);
      const back = await search(link(second, 'previous') as string);
      expect(matchEntries(back).map((e) => e.resource?.id)).toEqual(matchEntries(first).map((e) => e.resource?.id));
      expect(link(first, 'previous')).toBeUndefined();
    });

    it('defaults to 20 per page', async () => {
      const bundle = await search(memberQuery);
      expect(matchEntries(bundle)).toHaveLength(20);
      expect(link(bundle, 'next')).toBeDefined();
    });

    it('answers _count=0 with the total alone', async () => {
      const bundle = await search(`${memberQuery}&_count=0`);
      expect(bundle.total).toBe(25);
      expect(bundle.entry).toBeUndefined();
      expect(link(bundle, 'next')).toBeUndefined();
    });

    it('caps _count at 1000 and rejects negative or non-numeric counts', async () => {
      expect(matchEntries(await search(`${memberQuery}&_count=5000`))).toHaveLength(25);
      for (const count of ['-1', 'ten', '1.5']) {
        const response = await baton.request(`/fhir/${memberQuery}&_count=${count}`);
        expect(response.status).toBe(400);
        expect((await body<OperationOutcome>(response)).issue?.[0].expression).toEqual(['_count']);
      }
    });
  });

  describe('_sort', () => {
    const ordered = async (query: string, key: (p: Patient) => string): Promise<string[]> => {
      const bundle = await search(`${memberQuery}&_count=100&${query}`);
      return matchEntries(bundle).map((e) => key(e.resource as Patient));
    };

    it('sorts by a string parameter, then by id', async () => {
      const families = await ordered('_sort=family', (p) => p.name?.[0].family as string);
      expect(families).toEqual([...families].sort());
      expect(families[0]).toBe('Abbott');
    });

    it('sorts descending by a date parameter', async () => {
      const dates = await ordered('_sort=-birthdate', (p) => p.birthDate as string);
      expect(dates).toEqual([...dates].sort().reverse());
    });

    it('sorts by several keys', async () => {
      const keys = await ordered('_sort=gender,-birthdate', (p) => `${p.gender}|${p.birthDate}`);
      const expected = [...keys].sort((a, b) => {
        const [ga, da] = a.split('|');
        const [gb, db] = b.split('|');
        return ga.localeCompare(gb) || db.localeCompare(da);
      });
      expect(keys).toEqual(expected);
      expect(keys[0].startsWith('female|')).toBe(true);
    });

    it('sorts by _id and _lastUpdated', async () => {
      const ids = await ordered('_sort=-_id', (p) => p.id as string);
      expect(ids).toEqual([...ids].sort().reverse());
      const updated = await ordered('_sort=_lastUpdated', (p) => p.meta?.lastUpdated as string);
      expect(updated).toEqual([...updated].sort());
    });

    it('keeps pages of a sorted search disjoint', async () => {
      const first = await search(`${memberQuery}&_sort=family&_count=7`);
      const second = await search(link(first, 'next') as string);
      const a = matchEntries(first).map((e) => e.resource?.id);
      const b = matchEntries(second).map((e) => e.resource?.id);
      expect(a.filter((id) => b.includes(id))).toEqual([]);
      expect(new URL(link(second, 'self') as string).searchParams.get('_sort')).toBe('family');
    });

    it('rejects unknown sort keys with 400', async () => {
      for (const sort of ['nonsense', 'family,-nonsense', 'code-value-quantity']) {
        const response = await baton.request(`/fhir/Patient?_sort=${sort}`);
        expect(response.status).toBe(400);
        expect((await body<OperationOutcome>(response)).issue?.[0].expression).toEqual(['_sort']);
      }
    });
  });

  describe('_total and _summary', () => {
    it('leaves the total out for _total=none and counts for _total=accurate and _total=estimate', async () => {
      expect((await search(`${memberQuery}&_count=5&_total=none`)).total).toBeUndefined();
      expect((await search(`${memberQuery}&_count=5&_total=accurate`)).total).toBe(25);
      expect((await search(`${memberQuery}&_count=5&_total=estimate`)).total).toBe(25);
      expect((await baton.request(`/fhir/${memberQuery}&_total=sometimes`)).status).toBe(400);
    });

    it('estimates beyond a thousand matches with _total=estimate, and counts them with _total=accurate', async () => {
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: Array.from({ length: 1100 }, (_, i) => ({
          resource: { resourceType: 'Patient', identifier: [{ system: 'http://example.org/bulk', value: `B${i}` }], name: [{ family: 'Bulkload' }] } as Resource,
          request: { method: 'POST', url: 'Patient' },
        })),
      };
      expect((await baton.request('/fhir', { method: 'POST', json: bundle })).status).toBe(200);
      const estimated = await search('Patient?family=bulkload&_total=estimate');
      expect(estimated.total).toBeGreaterThan(1000);
      expect(matchEntries(estimated)).toHaveLength(20);
      expect((await search('Patient?family=bulkload&_total=accurate')).total).toBe(1100);
      expect((await search('Patient?identifier=http://example.org/bulk|&_summary=count')).total).toBe(1100);
    });

    it('gives the total by default only when the page tells it, without counting', async () => {
      expect((await search(`${memberQuery}&_count=10`)).total).toBeUndefined();
      expect((await search(`${memberQuery}&_count=10&_offset=20`)).total).toBe(25);
      expect((await search(`${memberQuery}&_count=30`)).total).toBe(25);
    });

    it('answers _summary=count with the total and no entries', async () => {
      const bundle = await search(`${memberQuery}&_summary=count`);
      expect(bundle.total).toBe(25);
      expect(bundle.entry).toBeUndefined();
    });

    it('reduces matches to summary elements with _summary=true and marks them SUBSETTED', async () => {
      const bundle = await search('Patient?identifier=M0001&_summary=true');
      const patient = matchEntries(bundle)[0].resource as Patient & Record<string, unknown>;
      expect(patient.text).toBeUndefined();
      expect(patient.identifier?.[0].value).toBe('M0001');
      expect(patient.meta?.tag).toContainEqual({ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' });
    });

    it('keeps only the asked elements with _elements', async () => {
      const bundle = await search('Patient?identifier=M0001&_elements=identifier,birthDate');
      const patient = matchEntries(bundle)[0].resource as Patient;
      expect(Object.keys(patient).sort()).toEqual(['birthDate', 'id', 'identifier', 'meta', 'resourceType']);
    });
  });

  describe('_include and _revinclude', () => {
    const included = (bundle: Bundle): string[] =>
      (bundle.entry ?? [])
        .filter((e) => e.search?.mode === 'include')
        .map((e) => `${e.resource?.resourceType}/${e.resource?.id}`)
        .sort();

    it('includes the targets of a reference parameter', async () => {
      const bundle = await search('Encounter?_id=6&_include=Encounter:subject');
      expect(matchEntries(bundle).map((e) => e.resource?.id)).toEqual(['6']);
      expect(included(bundle)).toEqual(['Patient/1']);
      expect(bundle.entry?.find((e) => e.search?.mode === 'include')?.fullUrl).toBe(`${BASE_URL}/Patient/1`);
      expect(included(await search('Encounter?_id=6&_include=Encounter:subject:Patient'))).toEqual(['Patient/1']);
      expect(included(await search('Encounter?_id=6&_include=Encounter:subject:Group'))).toEqual([]);
    });

    it('includes through every reference with *', async () => {
      expect(included(await search('Coverage?_id=883210&_include=*'))).toEqual(['Organization/Payer1', 'Patient/1']);
    });

    it('includes each target once, and never a match again', async () => {
      const bundle = await search('Coverage?beneficiary=Patient/1&_include=Coverage:beneficiary&_include=Coverage:payor');
      expect(matchEntries(bundle)).toHaveLength(2);
      expect(included(bundle)).toEqual(['Organization/Payer1', 'Patient/1']);
    });

    it('revincludes Provenance targeting the matches', async () => {
      expect(included(await search('Encounter?_id=6&_revinclude=Provenance:target'))).toEqual(['Provenance/1000002']);
      expect(included(await search('Patient?_id=1&_revinclude=Coverage:beneficiary&_revinclude=Encounter:patient'))).toEqual([
        'Coverage/883210',
        'Coverage/Coverage1',
        'Encounter/6',
      ]);
    });

    it('iterates with :iterate from included resources', async () => {
      const bundle = await search('Provenance?_id=1000002&_include=Provenance:target&_include:iterate=Encounter:subject');
      expect(included(bundle)).toEqual(['Encounter/6', 'Patient/1']);
      expect(included(await search('Provenance?_id=1000002&_include=Provenance:target'))).toEqual(['Encounter/6']);
    });

    it('rejects includes that name no reference parameter', async () => {
      for (const include of ['_include=Encounter:status', '_include=Nonsense:subject', '_include=Patient:link', '_revinclude=Provenance']) {
        const response = await baton.request(`/fhir/Encounter?${include}`);
        expect(response.status, include).toBe(400);
      }
    });
  });

  describe('the index follows writes', () => {
    it('finds an updated resource by its new values only, and a deleted one not at all', async () => {
      const created = await body<Patient>(
        await baton.request('/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient', identifier: [{ system: MEMBER_SYSTEM, value: 'W1' }], name: [{ family: 'Before' }] } }),
      );
      expect(matchEntries(await search('Patient?family=before'))).toHaveLength(1);
      const updated = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: { ...created, name: [{ family: 'After' }] } });
      expect(updated.status).toBe(200);
      expect(matchEntries(await search('Patient?family=before'))).toHaveLength(0);
      expect(matchEntries(await search('Patient?family=after')).map((e) => e.resource?.id)).toEqual([created.id]);
      expect((await baton.request(`/fhir/Patient/${created.id}`, { method: 'DELETE' })).status).toBe(204);
      expect(matchEntries(await search('Patient?family=after'))).toHaveLength(0);
      expect(matchEntries(await search(`Patient?_id=${created.id}`))).toHaveLength(0);
    });

    it('never returns a deleted resource, whichever way it would match', async () => {
      const start = new Date().toISOString();
      const patient = await body<Patient>(
        await baton.request('/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient', gender: 'unknown', name: [{ family: 'Departed' }] } }),
      );
      const observation = { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8302-2' }] }, subject: { reference: `Patient/${patient.id}` } };
      expect((await baton.request('/fhir/Observation', { method: 'POST', json: observation })).status).toBe(201);
      const queries = [
        `Patient?_id=${patient.id}`,
        'Patient?family=departed',
        '_has:Observation:patient:code=8302-2',
        `_lastUpdated=ge${start}&gender:not=male&birthdate:missing=true`,
      ].map((q) => (q.startsWith('Patient?') ? q : `Patient?${q}`));
      for (const query of queries) expect(matchEntries(await search(query)).map((e) => e.resource?.id), query).toEqual([patient.id]);
      expect((await baton.request(`/fhir/Patient/${patient.id}`, { method: 'DELETE' })).status).toBe(204);
      for (const query of queries) expect(matchEntries(await search(query)), query).toEqual([]);
    });

    it('indexes a string with a lone surrogate, which PostgreSQL text cannot hold, without it', async () => {
      const response = await baton.request('/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient', name: [{ family: 'Surrogate', given: ['\ud800Odd'] }] } });
      expect(response.status).toBe(201);
      const id = (await body<Patient>(response)).id;
      expect(matchEntries(await search('Patient?given=odd')).map((e) => e.resource?.id)).toEqual([id]);
    });

    it('indexes what a transaction writes', async () => {
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: ['T1', 'T2', 'T3'].map((value) => ({
          fullUrl: `urn:uuid:${crypto.randomUUID()}`,
          resource: { resourceType: 'Patient', identifier: [{ system: MEMBER_SYSTEM, value }], name: [{ family: 'Transactional' }] } as Resource,
          request: { method: 'POST', url: 'Patient' },
        })),
      };
      expect((await baton.request('/fhir', { method: 'POST', json: bundle })).status).toBe(200);
      expect((await search('Patient?family=transactional')).total).toBe(3);
      expect(matchEntries(await search(`Patient?identifier=${MEMBER_SYSTEM}|T2`))).toHaveLength(1);
    });
  });

  describe('conditional interactions share the search', () => {
    it('returns the existing resource for If-None-Exist on its identifier', async () => {
      const existing = members.get('M0007') as Patient;
      const response = await baton.request('/fhir/Patient', {
        method: 'POST',
        json: { resourceType: 'Patient', identifier: [{ system: MEMBER_SYSTEM, value: 'M0007' }] },
        headers: { 'if-none-exist': `identifier=${MEMBER_SYSTEM}|M0007` },
      });
      expect(response.status).toBe(200);
      expect((await body<Patient>(response)).id).toBe(existing.id);
    });

    it('rejects a condition with an unknown parameter instead of widening it', async () => {
      const response = await baton.request('/fhir/Patient', {
        method: 'POST',
        json: { resourceType: 'Patient' },
        headers: { 'if-none-exist': 'member-number=M0007' },
      });
      expect(response.status).toBe(400);
      expect((await body<OperationOutcome>(response)).issue?.[0].expression).toEqual(['member-number']);
    });

    it('fails a conditional update that matches several resources with 412', async () => {
      const response = await baton.request('/fhir/Patient?family=Abbott', { method: 'PUT', json: { resourceType: 'Patient', name: [{ family: 'Abbott' }] } });
      expect(response.status).toBe(412);
    });
  });
});
