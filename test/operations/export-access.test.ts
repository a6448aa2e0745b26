import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/auth/clients.ts';
import { createGrant } from '../../src/auth/grants.ts';
import { body } from '../support/baton.ts';
import { download, drain, exported, get, kickOff, type Manifest, runExport, startExportBaton } from './export-support.ts';

/**
 * Exports under per-partner isolation: a partner exports only the members it holds grants for
 * (their compartments, less what a #regular consent withholds, and the directory data that
 * data references), a Group only if it may see the Group, and a grant that has expired since
 * the kick-off hides its member's data at download. Also: the process taking a kick-off plans
 * it itself, and every step of an export is audited under its name.
 */

let baton: Awaited<ReturnType<typeof startExportBaton>>;
const ORG = [{ system: 'http://www.naic.org', value: '77777' }];
const PSY = 'http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY';
let partnerA: string;
let partnerC: string;

const put = async (resource: Record<string, unknown>) => {
  const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
  expect(response.status, await response.clone().text()).toBeLessThan(300);
};
const tokenOf = (clientId: string, scopes = ['system/*.rs']) => baton.token({ clientId, kind: 'partner', scopes });
const register = async (name: string) =>
  (await createClient(baton.db, { name, kind: 'partner', organizationIdentifiers: ORG, jwks: { keys: [{ kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'k' }] }, jwksUri: undefined, scopes: ['system/*.rs'] })).client_id;
const patientsOf = (byType: Map<string, Record<string, any>[]>) => {
  const patients = new Set<string>();
  for (const [type, resources] of byType) {
    if (type === 'Organization' || type === 'Group') continue;
    for (const resource of resources) patients.add(type === 'Patient' ? `Patient/${resource.id}` : (resource.subject ?? resource.patient ?? resource.beneficiary).reference);
  }
  return [...patients].sort();
};
const labelled = async (patient: string): Promise<string[]> =>
  (
    await baton.db.execute<{ ref: string }>(sql`SELECT t.resource_type || '/' || t.resource_id AS ref FROM sp_token t
      WHERE t.code = '_security' AND t.system || '|' || t.value = ${PSY} AND t.resource_id LIKE ${`%-${patient}-%`}`)
  ).map((row) => row.ref);

beforeAll(async () => {
  baton = await startExportBaton();
  // Clinics only one member's data names: one behind a PSY-labelled visit of member 2, one of member 5.
  await put({ resourceType: 'Organization', id: 'psy-clinic', name: 'Behavioural health clinic' });
  await put({ resourceType: 'Organization', id: 'clinic-of-5', name: "Member 5's clinic" });
  await put({ resourceType: 'Encounter', id: 'psy-visit', meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }] }, status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/exp-patient-2' }, serviceProvider: { reference: 'Organization/psy-clinic' } });
  await put({ resourceType: 'Encounter', id: 'visit-of-5', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/exp-patient-5' }, serviceProvider: { reference: 'Organization/clinic-of-5' } });
  await put({ resourceType: 'Group', id: 'granted-pair', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/exp-patient-1' } }, { entity: { reference: 'Patient/exp-patient-2' } }] });
  await put({ resourceType: 'Group', id: 'mixed', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/exp-patient-1' } }, { entity: { reference: 'Patient/exp-patient-5' } }] });
  partnerA = await register('Partner A');
  partnerC = await register('Partner C');
  await createGrant(baton.db, { clientId: partnerA, patientId: 'exp-patient-1' });
  // An HRex #regular consent: all but the sensitive data.
  await createGrant(baton.db, { clientId: partnerA, patientId: 'exp-patient-2', excludedSecurity: [PSY] });
  await createGrant(baton.db, { clientId: partnerC, patientId: 'exp-patient-6' });
});
afterAll(async () => {
  await baton?.close();
});

describe('a partner', () => {
  it("exports, at system level, its granted members' data only, less what their consent withholds, and the directory data it references", async () => {
    const token = await tokenOf(partnerA);
    const { manifest } = await runExport(baton, '/fhir/$export', { token });
    const { refs, byType } = await exported(baton, manifest, { token });
    expect(patientsOf(byType)).toEqual(['Patient/exp-patient-1', 'Patient/exp-patient-2']);
    const sensitive = await labelled('2');
    expect(sensitive.length).toBeGreaterThan(0);
    for (const ref of [...sensitive, 'Encounter/psy-visit']) expect(refs).not.toContain(ref);
    expect((byType.get('Organization') ?? []).map((o) => o.id).sort()).toEqual(['baton-payer', 'exp-provider-3']);
    expect(refs.some((ref) => ref.startsWith('Group/'))).toBe(true);
    expect(refs).not.toContain('Group/mixed');
  });

  it('gets the same from a Patient export', async () => {
    const token = await tokenOf(partnerA);
    const system = await exported(baton, (await runExport(baton, '/fhir/$export', { token })).manifest, { token });
    const patient = await exported(baton, (await runExport(baton, '/fhir/Patient/$export', { token })).manifest, { token });
    expect(patient.refs.sort()).toEqual(system.refs.sort());
  });

  it('exports a Group whose members it holds grants for, and no Group naming another member (404)', async () => {
    const token = await tokenOf(partnerA);
    expect((await kickOff(baton, '/fhir/Group/mixed/$export', { token })).status).toBe(404);
    const { manifest } = await runExport(baton, '/fhir/Group/granted-pair/$export', { token });
    const { byType } = await exported(baton, manifest, { token });
    expect(patientsOf(byType)).toEqual(['Patient/exp-patient-1', 'Patient/exp-patient-2']);
  });

  it('cannot name a member it holds no grant for in patient (400, as for an unknown patient)', async () => {
    const token = await tokenOf(partnerA);
    const refused = await kickOff(baton, '/fhir/Patient/$export', { token, json: { resourceType: 'Parameters', parameter: [{ name: 'patient', valueReference: { reference: 'Patient/exp-patient-5' } }] } });
    const unknown = await kickOff(baton, '/fhir/Patient/$export', { token, json: { resourceType: 'Parameters', parameter: [{ name: 'patient', valueReference: { reference: 'Patient/nobody' } }] } });
    expect(refused.status).toBe(400);
    expect(unknown.status).toBe(400);
    expect((await body(refused)).issue[0].diagnostics).toBe((await body(unknown)).issue[0].diagnostics);
  });

  it("hears only of its members' deletions in deleted[]", async () => {
    const since = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (const id of ['exp-observation-1-2', 'exp-observation-6-2']) expect((await baton.request(`/fhir/Observation/${id}`, { method: 'DELETE' })).status).toBe(204);
    const tokenA = await tokenOf(partnerA);
    const { manifest } = await runExport(baton, `/fhir/$export?_type=Observation&_since=${encodeURIComponent(since)}`, { token: tokenA });
    expect(manifest.deleted?.map((d) => d.count)).toEqual([1]);
    const [bundle] = await download(baton, manifest.deleted?.[0].url as string, { token: tokenA });
    expect(bundle.entry[0].request.url).toBe('Observation/exp-observation-1-2');
    const system = await runExport(baton, `/fhir/$export?_type=Observation&_since=${encodeURIComponent(since)}`);
    expect(system.manifest.deleted?.map((d) => d.count)).toEqual([2]);
  });

  it('loses at download the data of a member whose grant expired after the kick-off', async () => {
    const token = await tokenOf(partnerC);
    const { manifest } = await runExport(baton, '/fhir/$export?_type=Patient,Observation', { token });
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([
      ['Patient', 1],
      ['Observation', 1],
    ]);
    await baton.db.execute(sql`UPDATE access_grants SET valid_until = now() WHERE client_id = ${partnerC}`);
    for (const file of manifest.output) expect(await download(baton, file.url, { token })).toEqual([]);
  });

  it("cannot read another partner's export", async () => {
    const tokenA = await tokenOf(partnerA);
    const { statusUrl, manifest } = await runExport(baton, '/fhir/$export?_type=Patient', { token: tokenA });
    const tokenC = await tokenOf(partnerC);
    expect((await get(baton, statusUrl, { token: tokenC })).status).toBe(404);
    expect((await get(baton, manifest.output[0].url, { token: tokenC })).status).toBe(401);
  });
});

describe('auditing', () => {
  it('records the kick-off, the poll, the download and the cancel under their names', async () => {
    const { statusUrl, manifest } = await runExport(baton, '/fhir/Group/granted-pair/$export?_type=Patient');
    await download(baton, manifest.output[0].url);
    expect((await baton.request(new URL(statusUrl).pathname, { method: 'DELETE' })).status).toBe(202);
    const rows = await baton.db.execute<{ content: string }>(sql`SELECT content FROM audit_events ORDER BY seq`);
    const events = rows.map((row) => JSON.parse(row.content) as { action: string; subtype?: { code: string }[] });
    const named = (code: string) => events.filter((e) => e.subtype?.some((s) => s.code === code)).map((e) => e.action);
    expect(named('http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export')).toContain('E');
    expect(named('urn:baton:operation:export-status')).toEqual(expect.arrayContaining(['E', 'D']));
    expect(named('urn:baton:operation:export-file')).toContain('R');
  });
});

describe('the process that takes the kick-off', () => {
  let planning: Awaited<ReturnType<typeof startExportBaton>>;

  beforeAll(async () => {
    planning = await startExportBaton({ worker: true });
  });
  afterAll(async () => {
    await planning?.close();
  });

  it('plans the export itself, without a worker of its own', async () => {
    const response = await kickOff(planning, '/fhir/$export?_type=Patient');
    expect(response.status).toBe(202);
    const id = (response.headers.get('content-location') as string).split('/').pop();
    // Waits for the job, not for a time: the in-process worker runs on its own.
    let status = 'queued';
    while (status !== 'completed' && status !== 'failed') {
      await new Promise((resolve) => setTimeout(resolve, 20));
      status = (await planning.db.execute<{ status: string }>(sql`SELECT status FROM export_jobs WHERE id = ${id}`))[0].status;
    }
    expect(status).toBe('completed');
    const manifest = (await (await get(planning, response.headers.get('content-location') as string)).json()) as Manifest;
    expect(manifest.output).toEqual([expect.objectContaining({ type: 'Patient', count: 6 })]);
    expect(await drain(planning)).toBe(0);
  });
});
