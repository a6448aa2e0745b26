import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body } from '../support/baton.ts';
import { exported, runExport, startExportBaton } from './export-support.ts';

/**
 * A file is streamed in pages of BATON_EXPORT_PAGE_ROWS rows (src/export/job-scope.ts): paged by its
 * rows, or, when its type is selected by recorded items (a Group export, `_typeFilter` matches),
 * by those items. Files here span several pages, and an items-paged file has pages whose items
 * are not all rows of the snapshot: every resource still comes once.
 */

let baton: Awaited<ReturnType<typeof startExportBaton>>;
const PAGE_ROWS = 50;
const MANY = PAGE_ROWS * 3 + 7;

const observation = (id: string, patient: string) => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
  subject: { reference: `Patient/${patient}` },
});

/** Ids of the Observations a search finds (all pages). */
async function searched(query: string): Promise<string[]> {
  const found = await body(await baton.request(`/fhir/Observation?${query}&_count=1000`));
  return (found.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id).sort();
}

async function downloadedIds(path: string): Promise<string[]> {
  const { manifest } = await runExport(baton, path);
  const observations = (await exported(baton, manifest)).byType.get('Observation') ?? [];
  return observations.map((o) => o.id as string).sort();
}

beforeAll(async () => {
  baton = await startExportBaton({ pageRows: PAGE_ROWS });
  await baton.request('/fhir/Group/paged', {
    method: 'PUT',
    json: { resourceType: 'Group', id: 'paged', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/exp-patient-1' } }, { entity: { reference: 'Patient/exp-patient-2' } }] },
  });
  const entry = [
    ...Array.from({ length: MANY }, (_, i) => observation(`paged-${String(i).padStart(3, '0')}`, i % 2 ? 'exp-patient-1' : 'exp-patient-2')),
    ...Array.from({ length: MANY }, (_, i) => observation(`paged-other-${String(i).padStart(3, '0')}`, 'exp-patient-6')),
  ].map((resource) => ({ resource, request: { method: 'PUT', url: `Observation/${resource.id}` } }));
  const response = await baton.request('/fhir', { method: 'POST', json: { resourceType: 'Bundle', type: 'transaction', entry } });
  expect(response.status, await response.clone().text()).toBe(200);
});
afterAll(async () => {
  await baton?.close();
});

describe('files of several pages', () => {
  it('a system export (paged by rows) holds every Observation once', async () => {
    const ids = await downloadedIds('/fhir/$export?_type=Observation');
    expect(ids.length).toBeGreaterThan(2 * MANY);
    expect(ids).toEqual(await searched(''));
  });

  it("a Group export (paged by its items) holds its members' Observations once", async () => {
    const ids = await downloadedIds('/fhir/Group/paged/$export?_type=Observation');
    expect(ids.length).toBeGreaterThan(MANY);
    expect(ids).toEqual(await searched('subject=Patient/exp-patient-1,Patient/exp-patient-2'));
  });

  it('a _typeFilter export (paged by the matches) holds every match once', async () => {
    const ids = await downloadedIds(`/fhir/$export?_type=Observation&_typeFilter=${encodeURIComponent('Observation?subject=Patient/exp-patient-6')}`);
    expect(ids.length).toBeGreaterThan(MANY);
    expect(ids).toEqual(await searched('subject=Patient/exp-patient-6'));
  });

  it('an items-paged page with fewer rows than items is not taken for the last', async () => {
    const { statusUrl, manifest } = await runExport(baton, '/fhir/Group/paged/$export?_type=Observation');
    // Items with no row in the snapshot (as when a recorded resource is not visible at download): a whole page of them, and more scattered.
    const job = statusUrl.split('/').pop() as string;
    await baton.db.execute(sql`INSERT INTO export_items (job_id, resource_type, id)
      SELECT ${job}, 'Observation', 'paged-' || lpad(n::text, 3, '0') || '-ghost-' || k FROM generate_series(0, ${MANY - 1}) n, generate_series(1, 2) k`);
    await baton.db.execute(sql`INSERT INTO export_items (job_id, resource_type, id)
      SELECT ${job}, 'Observation', 'paged-000-' || lpad(k::text, 4, '0') FROM generate_series(1, ${PAGE_ROWS * 2}) k`);
    const observations = (await exported(baton, manifest)).byType.get('Observation') ?? [];
    expect(observations.map((o) => o.id as string).sort()).toEqual(await searched('subject=Patient/exp-patient-1,Patient/exp-patient-2'));
  });
});
