import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/auth/clients.ts';
import { createGrant } from '../../src/auth/grants.ts';
import { body, type TestBaton } from '../support/baton.ts';
import { drain, exported, get, kickOff, type Manifest, runExport, startExportBaton } from './export-support.ts';

/**
 * Issue 6, Group/[id]/$davinci-data-export (ATR) as PDex payer-to-payer uses it: exportType
 * checked, _until honoured, delivered by the export engine under the caller's grants.
 */

let baton: TestBaton & Awaited<ReturnType<typeof startExportBaton>>;
let partner: string;
const PAYER_TO_PAYER = 'hl7.fhir.us.davinci-pdex#payertopayer';
const path = (query = '') => `/fhir/Group/matched/$davinci-data-export${query}`;
const parameters = (...parameter: Record<string, unknown>[]) => ({ resourceType: 'Parameters', parameter });

beforeAll(async () => {
  baton = await startExportBaton();
  const group = { resourceType: 'Group', id: 'matched', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/exp-patient-1' } }, { entity: { reference: 'Patient/exp-patient-2' } }] };
  expect((await baton.request('/fhir/Group/matched', { method: 'PUT', json: group })).status).toBe(201);
  const jwks = { keys: [{ kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'k' }] };
  partner = (await createClient(baton.db, { name: 'New Plan', kind: 'partner', organizationIdentifiers: [{ system: 'http://www.naic.org', value: '11111' }], jwks, jwksUri: undefined, scopes: ['system/*.rs'] })).client_id;
});
afterAll(async () => {
  await baton?.close();
});

describe('kick-off', () => {
  it.each([
    ['no exportType', '', 'exportType'],
    ['another exportType', '?exportType=hl7.fhir.us.davinci-atr', 'exportType'],
    ['exportType twice', `?exportType=${PAYER_TO_PAYER}&exportType=${PAYER_TO_PAYER}`, 'exportType'],
    ['a bad _until', `?exportType=${PAYER_TO_PAYER}&_until=yesterday`, '_until'],
    ['an unknown parameter', `?exportType=${PAYER_TO_PAYER}&_frobnicate=1`, '_frobnicate'],
    ['an unknown type', `?exportType=${PAYER_TO_PAYER}&_type=Nonsense`, '_type'],
  ])('refuses %s with a 400 naming it', async (_name, query, parameter) => {
    const response = await kickOff(baton, path(query.replaceAll('#', '%23')));
    expect(response.status).toBe(400);
    expect((await body(response)).issue[0].expression).toContain(parameter);
  });

  it('needs Prefer: respond-async', async () => {
    const response = await kickOff(baton, path(`?exportType=${encodeURIComponent(PAYER_TO_PAYER)}`), { headers: { prefer: 'return=minimal' } });
    expect(response.status).toBe(400);
    expect((await body(response)).issue[0].diagnostics).toContain('$davinci-data-export is asynchronous');
  });

  it('answers 404 for a Group that does not exist', async () => {
    expect((await kickOff(baton, `/fhir/Group/nobody/$davinci-data-export?exportType=${encodeURIComponent(PAYER_TO_PAYER)}`)).status).toBe(404);
  });
});

describe('the export', () => {
  it("delivers the members' data as NDJSON, the manifest naming this operation", async () => {
    const { manifest } = await runExport(baton, path(`?exportType=${encodeURIComponent(PAYER_TO_PAYER)}&_type=Patient,Coverage,ExplanationOfBenefit`));
    expect(manifest.request).toBe(`http://baton.test/fhir/Group/matched/$davinci-data-export?exportType=${encodeURIComponent(PAYER_TO_PAYER)}&_type=Patient%2CCoverage%2CExplanationOfBenefit`);
    const { byType } = await exported(baton, manifest);
    expect((byType.get('Patient') ?? []).map((p) => p.id).sort()).toEqual(['exp-patient-1', 'exp-patient-2']);
    expect((byType.get('Coverage') ?? []).map((c) => c.beneficiary.reference).sort()).toEqual(['Patient/exp-patient-1', 'Patient/exp-patient-2']);
    expect((byType.get('ExplanationOfBenefit') ?? []).every((e) => ['Patient/exp-patient-1', 'Patient/exp-patient-2'].includes(e.patient.reference))).toBe(true);
  });

  it('hands claims over without payments, totals or amounts (tagged SUBSETTED), prior authorizations whole; a Group $export keeps them', async () => {
    const { meta: _meta, ...claim } = await body(await baton.request('/fhir/ExplanationOfBenefit/exp-eob-1-1'));
    const priorAuth: Record<string, unknown> = { ...claim, id: 'exp-prior-auth-1', use: 'preauthorization' };
    expect((await baton.request('/fhir/ExplanationOfBenefit/exp-prior-auth-1', { method: 'PUT', json: priorAuth })).status).toBe(201);
    const query = `_type=ExplanationOfBenefit`;
    const payerToPayer = (await exported(baton, (await runExport(baton, path(`?exportType=${encodeURIComponent(PAYER_TO_PAYER)}&${query}`))).manifest)).byType.get('ExplanationOfBenefit') ?? [];
    const plain = (await exported(baton, (await runExport(baton, `/fhir/Group/matched/$export?${query}`)).manifest)).byType.get('ExplanationOfBenefit') ?? [];
    const claims = payerToPayer.filter((e) => e.use === 'claim');
    expect(claims.length).toBeGreaterThan(0);
    expect(claims.length).toBe(plain.filter((e) => e.use === 'claim').length);
    for (const eob of claims) {
      expect(JSON.stringify(eob)).not.toMatch(/"payment"|"total"|"amount"|"net"|"unitPrice"/);
      expect(eob.meta.tag).toContainEqual(expect.objectContaining({ code: 'SUBSETTED' }));
      expect(eob.item.length).toBeGreaterThan(0);
      expect(eob.item[0].productOrService).toBeDefined();
    }
    expect(plain.filter((e) => e.use === 'claim').every((e) => e.payment && e.total)).toBe(true);
    const sentPriorAuth = payerToPayer.find((e) => e.id === 'exp-prior-auth-1');
    expect(sentPriorAuth?.payment).toEqual(priorAuth.payment);
    expect(sentPriorAuth?.meta.tag ?? []).not.toContainEqual(expect.objectContaining({ code: 'SUBSETTED' }));
  });

  it('takes its parameters by POST too, exportType as a canonical, and leaves out what was written after _until', async () => {
    const until = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const coverage = await body(await baton.request('/fhir/Coverage/exp-coverage-1'));
    await baton.request('/fhir/Coverage/exp-coverage-1', { method: 'PUT', json: { ...coverage, status: 'cancelled' } });
    const { manifest } = await runExport(baton, path(), {
      json: parameters({ name: 'exportType', valueCanonical: PAYER_TO_PAYER }, { name: '_until', valueInstant: until }, { name: '_type', valueString: 'Coverage' }),
    });
    const coverages = (await exported(baton, manifest)).byType.get('Coverage') ?? [];
    expect(coverages.map((c) => c.id)).toEqual(['exp-coverage-2']);
  });

  it("gives a partner only the members it holds grants for, and is audited as the ATR operation", async () => {
    const token = await baton.token({ clientId: partner, kind: 'partner', scopes: ['system/*.rs'] });
    // The Group names a member the partner has no grant for: the Group itself is hidden.
    expect((await kickOff(baton, path(`?exportType=${encodeURIComponent(PAYER_TO_PAYER)}`), { token })).status).toBe(404);
    await createGrant(baton.db, { clientId: partner, patientId: 'exp-patient-1' });
    await createGrant(baton.db, { clientId: partner, patientId: 'exp-patient-2' });
    const started = await kickOff(baton, path(`?exportType=${encodeURIComponent(PAYER_TO_PAYER)}&_type=Patient`), { token });
    expect(started.status).toBe(202);
    await drain(baton);
    const manifest = (await (await get(baton, started.headers.get('content-location') as string, { token })).json()) as Manifest;
    expect((await exported(baton, manifest, { token })).refs.sort()).toEqual(['Patient/exp-patient-1', 'Patient/exp-patient-2']);
    const events = await baton.db.execute(sql`SELECT 1 FROM audit_events WHERE content LIKE '%davinci-atr/OperationDefinition/davinci-data-export%'`);
    expect(events.length).toBeGreaterThan(0);
  });
});
