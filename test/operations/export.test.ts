import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScopedAccess } from '../../src/auth/access-policy.ts';
import { ExportEngine } from '../../src/export/engine.ts';
import { BASE_URL, body } from '../support/baton.ts';
import { download, drain, exported, get, kickOff, type Manifest, runExport, startExportBaton } from './export-support.ts';

/**
 * Bulk Data Access 2.0.0 $export over HTTP, as a client drives it: the kick-off and every
 * parameter with its errors, and what the files hold at each level (system, Patient, Group).
 * Jobs, cancellation and files in depth: export-jobs.test.ts; partners: export-access.test.ts.
 */

let baton: Awaited<ReturnType<typeof startExportBaton>>;

const put = async (resource: Record<string, unknown>): Promise<Record<string, any>> => {
  const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
  expect(response.status, await response.clone().text()).toBeLessThan(300);
  return body(response);
};
const remove = async (path: string) => expect((await baton.request(`/fhir/${path}`, { method: 'DELETE' })).status).toBeLessThan(300);
const parameters = (...parameter: Record<string, unknown>[]) => ({ resourceType: 'Parameters', parameter });
const statusOf = async (response: Response) => ({ status: response.status, outcome: (await response.json()) as { resourceType: string; issue: { code: string; expression?: string[] }[] } });

/** Live resources of the database, `Type/id`. */
async function liveResources(types?: string[]): Promise<string[]> {
  const filter = types ? sql` AND resource_type IN ${types}` : sql``;
  const rows = await baton.db.execute<{ ref: string }>(sql`SELECT resource_type || '/' || id AS ref FROM resources WHERE NOT deleted${filter}`);
  return rows.map((row) => row.ref).sort();
}

beforeAll(async () => {
  baton = await startExportBaton();
  await put({ resourceType: 'Group', id: 'cohort', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/exp-patient-1' } }, { entity: { reference: 'Patient/exp-patient-2' } }, { entity: { reference: 'Patient/exp-patient-3' }, inactive: true }] });
  // Directory data no member's record refers to: a system export holds it, a Patient or Group export does not.
  await put({ resourceType: 'Organization', id: 'unreferenced', name: 'Nobody refers to this one' });
  await put({ resourceType: 'Practitioner', id: 'unreferenced', name: [{ family: 'Nobody' }] });
});
afterAll(async () => {
  await baton?.close();
});

describe('kick-off', () => {
  it.each([
    ['system, GET', '/fhir/$export', undefined],
    ['Patient, GET', '/fhir/Patient/$export', undefined],
    ['Group, GET', '/fhir/Group/cohort/$export', undefined],
    ['system, POST', '/fhir/$export', parameters({ name: '_type', valueString: 'Patient' })],
    ['Patient, POST', '/fhir/Patient/$export', parameters({ name: 'patient', valueReference: { reference: 'Patient/exp-patient-1' } })],
    ['Group, POST', '/fhir/Group/cohort/$export', parameters({ name: '_since', valueInstant: '2020-01-01T00:00:00Z' })],
  ])('answers 202 with an absolute Content-Location (%s)', async (_, path, json) => {
    const response = await kickOff(baton, path, { json });
    expect(response.status, await response.clone().text()).toBe(202);
    expect(response.headers.get('content-location')).toMatch(new RegExp(`^${BASE_URL.replace(/[.$]/g, '\\$&')}/\\$export-status/[0-9a-f-]{36}$`));
    expect((await response.json()).resourceType).toBe('OperationOutcome');
    // Each client may have three exports in progress; these are done with.
    expect((await baton.request(new URL(response.headers.get('content-location') as string).pathname, { method: 'DELETE' })).status).toBe(202);
  });

  it('refuses a kick-off without Prefer: respond-async', async () => {
    const { status, outcome } = await statusOf(await kickOff(baton, '/fhir/$export', { headers: { prefer: 'return=minimal' } }));
    expect(status).toBe(400);
    expect(outcome.resourceType).toBe('OperationOutcome');
  });

  it.each([
    ['_since without a time', '_since=2024-01-01', '_since'],
    ['_since that is no instant', '_since=yesterday', '_since'],
    ['_since given twice', '_since=2024-01-01T00:00:00Z&_since=2024-02-01T00:00:00Z', '_since'],
    ['an unknown _type', '_type=Observation,Nonsense', '_type'],
    ['a result parameter in _typeFilter', '_type=Observation&_typeFilter=Observation%3F_count%3D5', '_typeFilter'],
    ['an unknown search parameter in _typeFilter', '_type=Observation&_typeFilter=Observation%3Fnope%3D1', '_typeFilter'],
    ['a _typeFilter on a type _type leaves out', '_type=Observation&_typeFilter=Condition%3Fcode%3D1', '_typeFilter'],
    ['a _typeFilter without a type', '_typeFilter=code%3D1', '_typeFilter'],
    ['a malformed search value in _typeFilter', '_type=Observation&_typeFilter=Observation%3Fdate%3Dnot-a-date', undefined],
    ['a nested element in _elements', '_elements=Patient.name.given', '_elements'],
    ['an unknown type in _elements', '_elements=Nonsense.id', '_elements'],
    ['a custom includeAssociatedData value', 'includeAssociatedData=_everything', 'includeAssociatedData'],
    ['an unsupported _outputFormat', '_outputFormat=text/csv', '_outputFormat'],
    ['a Bulk Data 3 parameter (_until)', '_until=2024-01-01T00:00:00Z', '_until'],
    ['a Bulk Data 3 parameter (organizeOutputBy)', 'organizeOutputBy=Patient', 'organizeOutputBy'],
    ['patient by GET', 'patient=Patient/exp-patient-1', 'patient'],
  ])('refuses %s with 400 and an OperationOutcome naming it', async (_, query, expression) => {
    const { status, outcome } = await statusOf(await kickOff(baton, `/fhir/Patient/$export?${query}`));
    expect(status).toBe(400);
    expect(outcome.resourceType).toBe('OperationOutcome');
    if (expression) expect(outcome.issue[0].expression).toEqual([expression]);
  });

  it.each(['application/fhir+ndjson', 'application/ndjson', 'ndjson'])('accepts _outputFormat=%s', async (format) => {
    const response = await kickOff(baton, `/fhir/$export?_type=Organization&_outputFormat=${encodeURIComponent(format)}`);
    expect(response.status).toBe(202);
    await baton.request(new URL(response.headers.get('content-location') as string).pathname, { method: 'DELETE' });
  });

  it('under Prefer: handling=lenient ignores what it does not support, and its error file says what, one OperationOutcome each', async () => {
    const { manifest } = await runExport(baton, '/fhir/$export?_type=Patient&_outputFormat=text/csv&foo=bar&includeAssociatedData=_custom', {
      headers: { prefer: 'respond-async, handling=lenient' },
    });
    expect(manifest.output.map((o) => o.type)).toEqual(['Patient']);
    expect(manifest.error).toHaveLength(1);
    expect(manifest.error[0]).toMatchObject({ type: 'OperationOutcome', count: 3 });
    const outcomes = await download<{ resourceType: string; issue: { severity: string; expression: string[] }[] }>(baton, manifest.error[0].url);
    expect(outcomes.map((o) => o.resourceType)).toEqual(['OperationOutcome', 'OperationOutcome', 'OperationOutcome']);
    expect(outcomes.map((o) => o.issue[0].expression[0]).sort()).toEqual(['_outputFormat', 'foo', 'includeAssociatedData']);
    expect(outcomes.every((o) => o.issue[0].severity === 'warning')).toBe(true);
  });

  it('under lenient handling still refuses a malformed value', async () => {
    expect((await kickOff(baton, '/fhir/$export?_since=yesterday', { headers: { prefer: 'respond-async, handling=lenient' } })).status).toBe(400);
  });

  it.each([
    ['patient on a system export', '/fhir/$export', parameters({ name: 'patient', valueReference: { reference: 'Patient/exp-patient-1' } }), 400],
    ['a patient the server does not know', '/fhir/Patient/$export', parameters({ name: 'patient', valueReference: { reference: 'Patient/nobody' } }), 400],
    ['a patient outside the Group', '/fhir/Group/cohort/$export', parameters({ name: 'patient', valueReference: { reference: 'Patient/exp-patient-5' } }), 400],
    ['an inactive member of the Group', '/fhir/Group/cohort/$export', parameters({ name: 'patient', valueReference: { reference: 'Patient/exp-patient-3' } }), 400],
    ['patient that is no Patient reference', '/fhir/Patient/$export', parameters({ name: 'patient', valueReference: { reference: 'Organization/baton-payer' } }), 400],
    ['a body that is not Parameters', '/fhir/$export', { resourceType: 'Patient' }, 400],
    ['a parameter without a string value', '/fhir/$export', parameters({ name: '_type', valueInteger: 3 }), 400],
  ])('refuses %s (POST)', async (_, path, json, expected) => {
    const { status, outcome } = await statusOf(await kickOff(baton, path, { json }));
    expect(status).toBe(expected);
    expect(outcome.resourceType).toBe('OperationOutcome');
  });

  it('refuses parameters in the query string of a POST kick-off', async () => {
    expect((await kickOff(baton, '/fhir/$export?_type=Patient', { json: parameters() })).status).toBe(400);
  });

  it('answers 404 for a Group it does not hold, and 400 for an invalid id', async () => {
    expect((await kickOff(baton, '/fhir/Group/nothing-here/$export')).status).toBe(404);
    expect((await kickOff(baton, '/fhir/Group/not_valid!/$export')).status).toBe(400);
  });

  it('refuses with 403 a type the token does not cover, and exports only covered types when none is named', async () => {
    const token = await baton.token({ clientId: 'patients-only', scopes: ['system/Patient.rs'] });
    const refused = await statusOf(await kickOff(baton, '/fhir/$export?_type=Patient,Observation', { token }));
    expect(refused.status).toBe(403);
    expect(refused.outcome.issue[0].code).toBe('forbidden');
    const { manifest } = await runExport(baton, '/fhir/$export', { token });
    expect(manifest.output.map((o) => o.type)).toEqual(['Patient']);
  });
});

describe('the manifest and the files', () => {
  let manifest: Manifest;
  let status: Response;

  beforeAll(async () => {
    const started = await kickOff(baton, '/fhir/$export');
    await drain(baton);
    status = await get(baton, started.headers.get('content-location') as string);
    manifest = (await status.clone().json()) as Manifest;
  });

  it('is application/json with the five keys Bulk Data requires, absolute file URLs and an Expires header', async () => {
    expect(status.status).toBe(200);
    expect(status.headers.get('content-type')).toMatch(/^application\/json/);
    expect(Date.parse(status.headers.get('expires') as string)).toBeGreaterThan(Date.now());
    expect(Object.keys(manifest).sort()).toEqual(['error', 'output', 'request', 'requiresAccessToken', 'transactionTime']);
    expect(manifest.request).toBe(`${BASE_URL}/$export`);
    expect(manifest.requiresAccessToken).toBe(true);
    expect(manifest.transactionTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(manifest.error).toEqual([]);
    for (const file of manifest.output) expect(file.url.startsWith(`${BASE_URL}/$export-file/`)).toBe(true);
  });

  it('holds every live resource exactly once, one type per file, as many lines as the count says', async () => {
    const { refs } = await exported(baton, manifest);
    expect(new Set(refs).size).toBe(refs.length);
    expect(refs.sort()).toEqual(await liveResources());
    expect(new Set(manifest.output.map((o) => o.type)).size).toBe(manifest.output.length);
  });

  it('refuses a file without a token (401)', async () => {
    const response = await baton.request(new URL(manifest.output[0].url).pathname, { token: null });
    expect(response.status).toBe(401);
  });

  it('answers 404 for a file number the export does not have', async () => {
    const url = manifest.output[0].url.replace(/\/\d+$/, '/999');
    expect((await get(baton, url)).status).toBe(404);
    expect((await get(baton, url.replace(/\/999$/, '/x'))).status).toBe(404);
  });
});

describe('consistency as of transactionTime', () => {
  it('serves the latest version of each resource only', async () => {
    await put({ resourceType: 'Organization', id: 'versions', name: 'first' });
    await put({ resourceType: 'Organization', id: 'versions', name: 'second' });
    await put({ resourceType: 'Organization', id: 'versions', name: 'third' });
    const { manifest } = await runExport(baton, '/fhir/$export?_type=Organization');
    const organizations = (await exported(baton, manifest)).byType.get('Organization') ?? [];
    expect(organizations.filter((o) => o.id === 'versions').map((o) => [o.name, o.meta.versionId])).toEqual([['third', '3']]);
  });

  it('holds what was there at kick-off: a resource changed after it as it was, one deleted after it, none created after it', async () => {
    await put({ resourceType: 'Organization', id: 'changes-later', name: 'before' });
    await put({ resourceType: 'Organization', id: 'deleted-later', name: 'still there at kick-off' });
    const started = await kickOff(baton, '/fhir/$export?_type=Organization');
    await put({ resourceType: 'Organization', id: 'changes-later', name: 'after' });
    await remove('Organization/deleted-later');
    await put({ resourceType: 'Organization', id: 'created-later', name: 'too late' });
    await drain(baton);
    const manifest = (await (await get(baton, started.headers.get('content-location') as string)).json()) as Manifest;
    const organizations = (await exported(baton, manifest)).byType.get('Organization') ?? [];
    const byId = new Map(organizations.map((o) => [o.id, o]));
    expect(byId.get('changes-later')?.name).toBe('before');
    expect(byId.get('deleted-later')?.name).toBe('still there at kick-off');
    expect(byId.has('created-later')).toBe(false);
    for (const organization of organizations) expect(Date.parse(organization.meta.lastUpdated)).toBeLessThanOrEqual(Date.parse(manifest.transactionTime));
  });

  it('with _since holds what changed after it, and lists what was deleted since in deleted[] as transaction Bundles of DELETEs', async () => {
    await put({ resourceType: 'Organization', id: 'gone-before', name: 'deleted before _since' });
    await remove('Organization/gone-before');
    await put({ resourceType: 'Organization', id: 'gone-after', name: 'deleted after _since' });
    const since = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    await remove('Organization/gone-after');
    const updated = await put({ resourceType: 'Patient', ...(await body(await baton.request('/fhir/Patient/exp-patient-4'))), gender: 'other' });
    const { manifest } = await runExport(baton, `/fhir/$export?_type=Patient,Organization&_since=${encodeURIComponent(since)}`);
    const { refs } = await exported(baton, manifest);
    expect(refs).toEqual(['Patient/exp-patient-4']);
    expect(updated.meta.versionId).not.toBe('1');
    expect(manifest.deleted).toHaveLength(1);
    expect(manifest.deleted?.[0]).toMatchObject({ type: 'Bundle', count: 1 });
    const [bundle] = await download(baton, manifest.deleted?.[0].url as string);
    expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: 'Organization/gone-after' } }] });
    expect(Date.parse(bundle.meta.lastUpdated)).toBeGreaterThan(Date.parse(since));
  });

  it('with _since and nothing deleted gives an empty deleted[]', async () => {
    const { manifest } = await runExport(baton, `/fhir/$export?_type=Coverage&_since=${encodeURIComponent(new Date().toISOString())}`);
    expect(manifest.output).toEqual([]);
    expect(manifest.deleted).toEqual([]);
  });
});

describe('_type, _typeFilter and _elements', () => {
  it('filters a type by its _typeFilter searches (alternatives ORed) and leaves the other types whole', async () => {
    const filter = ['Observation?code=http://loinc.org|2093-3', 'Observation?code=http://loinc.org|4548-4'].map(encodeURIComponent).join(',');
    const { manifest } = await runExport(baton, `/fhir/$export?_type=Observation,Condition&_typeFilter=${filter}`);
    const { byType } = await exported(baton, manifest);
    const expected = await body(await baton.request('/fhir/Observation?code=http://loinc.org|2093-3,http://loinc.org|4548-4&_count=100'));
    expect((byType.get('Observation') ?? []).map((o) => o.id).sort()).toEqual(expected.entry.map((e: { resource: { id: string } }) => e.resource.id).sort());
    expect(byType.get('Observation')?.length).toBeGreaterThan(1);
    expect((byType.get('Condition') ?? []).length).toBe((await liveResources(['Condition'])).length);
  });

  it('repeated _typeFilter parameters count as one list', async () => {
    const { manifest } = await runExport(baton, `/fhir/$export?_type=Observation&_typeFilter=${encodeURIComponent('Observation?subject=Patient/exp-patient-1')}&_typeFilter=${encodeURIComponent('Observation?subject=Patient/exp-patient-3')}`);
    const subjects = new Set(((await exported(baton, manifest)).byType.get('Observation') ?? []).map((o) => o.subject.reference));
    expect([...subjects].sort()).toEqual(['Patient/exp-patient-1', 'Patient/exp-patient-3']);
  });

  it('with _elements keeps the elements named (and the mandatory ones) and tags the resources SUBSETTED', async () => {
    const { manifest } = await runExport(baton, '/fhir/$export?_type=Patient,Coverage,Condition&_elements=Patient.name,status');
    const { byType } = await exported(baton, manifest);
    const subsetted = (resource: Record<string, any>) => resource.meta.tag?.some((t: { code: string }) => t.code === 'SUBSETTED');
    for (const patient of byType.get('Patient') ?? []) {
      expect(Object.keys(patient).sort()).toEqual(['id', 'meta', 'name', 'resourceType']);
      expect(subsetted(patient)).toBe(true);
    }
    for (const coverage of byType.get('Coverage') ?? []) {
      // status was asked for every type; beneficiary and payor are mandatory in Coverage.
      expect(Object.keys(coverage).sort()).toEqual(['beneficiary', 'id', 'meta', 'payor', 'resourceType', 'status']);
      expect(subsetted(coverage)).toBe(true);
    }
    // Condition has no element `status` (clinicalStatus is another): only its mandatory subject stays.
    for (const condition of byType.get('Condition') ?? []) expect(Object.keys(condition).sort()).toEqual(['id', 'meta', 'resourceType', 'subject']);
  });
});

describe('Patient and Group exports', () => {
  const subjectsOf = (byType: Map<string, Record<string, any>[]>) => {
    const patients = new Set<string>();
    for (const [type, resources] of byType) {
      if (type === 'Patient' || type === 'Organization' || type === 'Group') continue;
      for (const resource of resources) patients.add((resource.subject ?? resource.patient ?? resource.beneficiary).reference);
    }
    return [...patients].sort();
  };

  it('a Patient export holds the compartments and the resources outside them that they reference, not the others', async () => {
    const { manifest } = await runExport(baton, '/fhir/Patient/$export');
    const { refs, byType } = await exported(baton, manifest);
    expect(new Set(refs).size).toBe(refs.length);
    expect((byType.get('Patient') ?? []).length).toBe(6);
    const organizations = (byType.get('Organization') ?? []).map((o) => o.id).sort();
    expect(organizations).toContain('baton-payer');
    expect(organizations.some((id) => id.startsWith('exp-provider-'))).toBe(true);
    expect(organizations).not.toContain('unreferenced');
    expect(byType.has('Practitioner')).toBe(false);
    expect(refs.filter((ref) => ref.startsWith('Observation/')).sort()).toEqual(await liveResources(['Observation']));
  });

  it('a Patient export with patient (POST) holds those members only, and what their records reference', async () => {
    const { manifest } = await runExport(baton, '/fhir/Patient/$export', { json: parameters({ name: 'patient', valueReference: { reference: 'Patient/exp-patient-6' } }) });
    const { byType } = await exported(baton, manifest);
    expect(manifest.request).toBe(`${BASE_URL}/Patient/$export`);
    expect((byType.get('Patient') ?? []).map((p) => p.id)).toEqual(['exp-patient-6']);
    expect(subjectsOf(byType)).toEqual(['Patient/exp-patient-6']);
    // Member 6 was seen by provider 4 only; the others' providers are not theirs to see.
    expect((byType.get('Organization') ?? []).map((o) => o.id).sort()).toEqual(['baton-payer', 'exp-provider-4']);
  });

  it("a Group export holds its active members' compartments and the Organizations they reference (Coverage payor included)", async () => {
    const { manifest } = await runExport(baton, '/fhir/Group/cohort/$export');
    const { refs, byType } = await exported(baton, manifest);
    expect(manifest.request).toBe(`${BASE_URL}/Group/cohort/$export`);
    expect((byType.get('Patient') ?? []).map((p) => p.id).sort()).toEqual(['exp-patient-1', 'exp-patient-2']);
    expect(subjectsOf(byType)).toEqual(['Patient/exp-patient-1', 'Patient/exp-patient-2']);
    expect((byType.get('Coverage') ?? []).map((c) => c.id).sort()).toEqual(['exp-coverage-1', 'exp-coverage-2']);
    expect((byType.get('Organization') ?? []).map((o) => o.id).sort()).toEqual(['baton-payer', 'exp-provider-3']);
    expect(refs).toContain('Group/cohort');
    const expectedEobs = (await liveResources(['ExplanationOfBenefit'])).filter((ref) => /exp-eob-[12]-/.test(ref));
    expect(refs.filter((ref) => ref.startsWith('ExplanationOfBenefit/')).sort()).toEqual(expectedEobs);
  });

  it("a Group export narrows its members' data and the directory data by _typeFilter", async () => {
    const filter = ['Observation?code=http://loinc.org|2093-3', 'Organization?_id=baton-payer'].map(encodeURIComponent).join(',');
    const { manifest } = await runExport(baton, `/fhir/Group/cohort/$export?_type=Observation,Organization&_typeFilter=${filter}`);
    const { byType } = await exported(baton, manifest);
    const expected = await body(await baton.request('/fhir/Observation?code=http://loinc.org|2093-3&subject=Patient/exp-patient-1,Patient/exp-patient-2&_count=100'));
    expect((byType.get('Observation') ?? []).map((o) => o.id).sort()).toEqual(expected.entry.map((e: { resource: { id: string } }) => e.resource.id).sort());
    expect(expected.entry.length).toBeGreaterThan(1);
    expect((byType.get('Organization') ?? []).map((o) => o.id)).toEqual(['baton-payer']);
  });

  it('a Group export honours _type for types outside the compartment', async () => {
    const { manifest } = await runExport(baton, '/fhir/Group/cohort/$export?_type=Organization');
    const { byType } = await exported(baton, manifest);
    expect([...byType.keys()]).toEqual(['Organization']);
    expect((byType.get('Organization') ?? []).map((o) => o.id).sort()).toEqual(['baton-payer', 'exp-provider-3']);
  });
});

describe('includeAssociatedData (Provenance)', () => {
  const provenance = (id: string, target: string, recorded: string) => ({
    resourceType: 'Provenance',
    id,
    target: [{ reference: target }],
    recorded,
    agent: [{ who: { reference: 'Organization/baton-payer' } }],
  });

  beforeAll(async () => {
    await put(provenance('prov-member-old', 'Observation/exp-observation-1-1', '2024-01-01T00:00:00Z'));
    await put(provenance('prov-member-new', 'Observation/exp-observation-1-1', '2024-02-01T00:00:00Z'));
    await put(provenance('prov-other', 'Observation/exp-observation-6-1', '2024-01-01T00:00:00Z'));
  });

  const provenanceIds = async (manifest: Manifest) => ((await exported(baton, manifest)).byType.get('Provenance') ?? []).map((p) => p.id).sort();

  it("a Group export holds the Provenance of its members' resources by default", async () => {
    const { manifest } = await runExport(baton, '/fhir/Group/cohort/$export');
    expect(await provenanceIds(manifest)).toEqual(['prov-member-new', 'prov-member-old']);
  });

  it('LatestProvenanceResources keeps the latest Provenance of each resource', async () => {
    const { manifest } = await runExport(baton, '/fhir/Group/cohort/$export?includeAssociatedData=LatestProvenanceResources');
    expect(await provenanceIds(manifest)).toEqual(['prov-member-new']);
  });

  it('RelevantProvenanceResources adds the Provenance of the exported types, and wins over Latest', async () => {
    const { manifest } = await runExport(baton, '/fhir/$export?_type=Observation&includeAssociatedData=LatestProvenanceResources,RelevantProvenanceResources');
    expect(await provenanceIds(manifest)).toEqual(['prov-member-new', 'prov-member-old', 'prov-other']);
  });

  it('without it, a _type leaving Provenance out exports none', async () => {
    const { manifest } = await runExport(baton, '/fhir/$export?_type=Observation');
    expect(manifest.output.map((o) => o.type)).toEqual(['Observation']);
  });
});

describe('the engine API', () => {
  it('starts a Group export with _until (as $davinci-data-export does): versions written after it are left out', async () => {
    const engine = new ExportEngine({ db: baton.db, baseUrl: BASE_URL, config: baton.exportConfig });
    const until = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const later = await body(await baton.request('/fhir/Coverage/exp-coverage-1'));
    await put({ ...later, status: 'cancelled' });
    const access = new ScopedAccess({ clientId: 'test-harness', kind: 'internal', scopes: ['system/*.*'] }, BASE_URL);
    const started = await engine.startExport({ ...baton.ctx, access }, { kind: 'group', groupId: 'cohort', types: ['Coverage'], until, requestUrl: `${BASE_URL}/Group/cohort/$davinci-data-export` });
    expect(started.statusUrl).toBe(`${BASE_URL}/$export-status/${started.id}`);
    await drain(baton);
    const manifest = (await (await get(baton, started.statusUrl)).json()) as Manifest;
    expect(manifest.request).toBe(`${BASE_URL}/Group/cohort/$davinci-data-export`);
    const coverages = (await exported(baton, manifest)).byType.get('Coverage') ?? [];
    expect(coverages.map((c) => c.id)).toEqual(['exp-coverage-2']);
  });
});

describe('deleted[] and _typeFilter', () => {
  // Bulk Data 2.0.0: deleted[] lists the resources "that match the kickoff request criteria" deleted since _since;
  // a deleted resource is judged by its last content.
  const observation = (id: string, patient: string, code: string) => ({
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code }] },
    subject: { reference: patient },
  });
  const deletedRefs = async (manifest: Manifest): Promise<string[]> => {
    const refs: string[] = [];
    for (const file of manifest.deleted ?? []) {
      const bundles = await download(baton, file.url);
      expect(bundles).toHaveLength(file.count);
      for (const bundle of bundles) for (const entry of bundle.entry) refs.push(entry.request.url);
    }
    return refs.sort();
  };
  /** Writes the resources, takes _since, deletes them: every one was deleted after _since. */
  const deletedSince = async (resources: Record<string, unknown>[]): Promise<string> => {
    for (const resource of resources) await put(resource);
    const since = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (const resource of resources) await remove(`${resource.resourceType}/${resource.id}`);
    return encodeURIComponent(since);
  };

  it('a system export lists the deletions of a filtered type that match one of its searches (chained ones too), and every deletion of the other types', async () => {
    await put({ resourceType: 'Patient', id: 'del-chain-target', name: [{ family: 'Deletedchain' }] });
    const since = await deletedSince([
      observation('del-sys-match', 'Patient/exp-patient-1', '2093-3'),
      observation('del-sys-other', 'Patient/exp-patient-1', '718-7'),
      observation('del-sys-chain', 'Patient/del-chain-target', '718-7'),
      { resourceType: 'Condition', id: 'del-sys-condition', subject: { reference: 'Patient/exp-patient-1' }, code: { text: 'gone' } },
    ]);
    const filter = ['Observation?code=http://loinc.org|2093-3', 'Observation?subject:Patient.family=Deletedchain'].map(encodeURIComponent).join(',');
    const { manifest } = await runExport(baton, `/fhir/$export?_type=Observation,Condition&_since=${since}&_typeFilter=${filter}`);
    expect(await deletedRefs(manifest)).toEqual(['Condition/del-sys-condition', 'Observation/del-sys-chain', 'Observation/del-sys-match']);
    const unfiltered = await runExport(baton, `/fhir/$export?_type=Observation,Condition&_since=${since}`);
    expect(await deletedRefs(unfiltered.manifest)).toEqual(['Condition/del-sys-condition', 'Observation/del-sys-chain', 'Observation/del-sys-match', 'Observation/del-sys-other']);
    await remove('Patient/del-chain-target');
  });

  it('a negated search judges the deleted resource, not its tombstone', async () => {
    const since = await deletedSince([observation('del-not-match', 'Patient/exp-patient-2', '2093-3'), observation('del-not-other', 'Patient/exp-patient-2', '718-7')]);
    const filter = encodeURIComponent('Observation?code:not=http://loinc.org|2093-3');
    const { manifest } = await runExport(baton, `/fhir/$export?_type=Observation&_since=${since}&_typeFilter=${filter}`);
    expect(await deletedRefs(manifest)).toEqual(['Observation/del-not-other']);
  });

  it("a Group export lists its members' deletions that match the filter only", async () => {
    const since = await deletedSince([
      observation('del-group-match', 'Patient/exp-patient-1', '2093-3'),
      observation('del-group-other', 'Patient/exp-patient-2', '718-7'),
      observation('del-group-outsider', 'Patient/exp-patient-6', '2093-3'),
    ]);
    const filter = encodeURIComponent('Observation?code=http://loinc.org|2093-3');
    const { manifest } = await runExport(baton, `/fhir/Group/cohort/$export?_type=Observation&_since=${since}&_typeFilter=${filter}`);
    expect(await deletedRefs(manifest)).toEqual(['Observation/del-group-match']);
  });
});
