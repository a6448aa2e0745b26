import type { Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { ScopedAccess } from '../auth/access-policy.ts';
import type { Queryable } from '../db/connection.ts';
import { patientsOf } from '../fhir/compartment.ts';
import { callerPolicy } from './caller.ts';
import type { ExportJob } from './jobs.ts';
import { DELETED_IDS, deletedMatchingFilters } from './deleted-matches.ts';
import { ExportSelection, isOutsideCompartment } from './selection.ts';
import { readSnapshotBytes, readSnapshotPage, type SnapshotBytes, type SnapshotRange, type SnapshotRow, type SnapshotWindow } from './snapshot.ts';

/**
 * A job's export as the worker plans it and a download streams it: the caller's policy rebuilt
 * from the job (grants read now), the selection over its members and references, and the
 * snapshot window. Planning and downloads build it the same way, so they select the same rows.
 */
export interface JobScope {
  policy: ScopedAccess;
  selection: ExportSelection;
  window: SnapshotWindow;
  /** A subquery of the job's members, when it has members. */
  members: SQL | undefined;
}

export function jobScope(job: ExportJob, baseUrl: string): JobScope {
  const policy = callerPolicy(job.caller, baseUrl);
  const members = hasMembers(job) ? sql`SELECT m.patient_id FROM export_patients m WHERE m.job_id = ${job.id}` : undefined;
  const selection = new ExportSelection(
    {
      kind: job.kind,
      members,
      items: (resourceType, range = {}) => {
        const after = range.after ? sql` AND x.id > ${range.after}` : sql``;
        const upTo = range.upTo ? sql` AND x.id <= ${range.upTo}` : sql``;
        return sql`SELECT x.id FROM export_items x WHERE x.job_id = ${job.id} AND x.resource_type = ${resourceType}${after}${upTo}`;
      },
      allItems: sql`SELECT x.resource_type, x.id FROM export_items x WHERE x.job_id = ${job.id}`,
      typeFilters: job.parameters.typeFilters ?? [],
      associatedProvenance: job.parameters.associatedProvenance,
      types: job.types ?? [],
    },
    policy,
    baseUrl,
  );
  const { since, until } = job.parameters;
  return { policy, selection, members, window: { at: job.transactionTime, ...(since ? { since } : {}), ...(until ? { until } : {}) } };
}

/** A Group export is about its members (none, if the Group has none); a Patient export only when the `patient` parameter names them. */
export function hasMembers(job: ExportJob): boolean {
  return job.kind === 'group' || (job.kind === 'patient' && job.parameters.patients !== undefined);
}

/**
 * The deleted resources (tombstones as of transactionTime) the export reports: the search index
 * no longer holds them, so their place is read from their last content. A system export by a
 * caller who sees every row reports every deletion of its types; otherwise a deletion is
 * reported when the resource was in the compartment of a Patient the export is about (a member,
 * or any Patient of a Patient export) that the caller may see; deletions outside the
 * compartment are reported by unrestricted system exports only. A type with `_typeFilter`
 * searches reports only the deletions of resources whose last content matches one of them
 * (Bulk Data 2.0.0: `deleted` lists resources "that match the kickoff request criteria";
 * deleted-matches.ts).
 */
export async function reportedDeletions(q: Queryable, job: ExportJob, scope: JobScope, resourceType: string, rows: SnapshotRow[], baseUrl: string): Promise<SnapshotRow[]> {
  const reported = await placedDeletions(q, job, scope, resourceType, rows, baseUrl);
  const matches = scope.selection.filterMatches(resourceType, DELETED_IDS);
  if (reported.length === 0 || !matches) return reported;
  const matching = await deletedMatchingFilters(q, resourceType, reported, matches);
  return reported.filter((row) => matching.has(row.id));
}

/** The deletions whose place (a compartment the export is about, or the whole server) the export reports. */
async function placedDeletions(q: Queryable, job: ExportJob, scope: JobScope, resourceType: string, rows: SnapshotRow[], baseUrl: string): Promise<SnapshotRow[]> {
  if (job.kind === 'system' && !scope.policy.filtersRows) return rows;
  if (isOutsideCompartment(resourceType)) return [];
  const patientsByRow = rows.map((row) => (resourceType === 'Patient' ? [row.id] : patientsOf(JSON.parse(row.content) as Resource, baseUrl)));
  const candidates = [...new Set(patientsByRow.flat())];
  if (candidates.length === 0) return [];
  const r = sql.raw('r');
  const conditions = [sql`${r}.resource_type = 'Patient'`, sql`${r}.id IN ${candidates}`];
  if (scope.members) conditions.push(sql`${r}.id IN (${scope.members})`);
  const visible = scope.policy.visibility('Patient', r, 's');
  if (visible) conditions.push(visible);
  const allowed = new Set((await q.execute<{ id: string }>(sql`SELECT ${r}.id FROM resources ${r} WHERE ${sql.join(conditions, sql` AND `)}`)).map((row) => row.id));
  return rows.filter((_, i) => patientsByRow[i].some((patient) => allowed.has(patient)));
}

/** The deletions the export reports in a file's range (after, upTo], read in pages of at most `pageRows` rows. */
export async function* deletionPages(q: Queryable, job: ExportJob, scope: JobScope, resourceType: string, range: SnapshotRange, baseUrl: string, pageRows: number): AsyncGenerator<SnapshotRow[]> {
  const pages = paged(q, job.id, undefined, range, pageRows, (page) => readSnapshotPage(q, resourceType, scope.window, 'deleted', sql`TRUE`, page, pageRows));
  for await (const rows of pages) yield await reportedDeletions(q, job, scope, resourceType, rows, baseUrl);
}

/**
 * The live rows of a file's range as a download streams them, their content as bytes
 * (Queryable.executeBytes), outside the V8 heap: as strings, pages of 1,000 rows were promoted to
 * the old generation while the rest arrived, and the API's resident set grew from ~245 to
 * ~490 MB over a 177k-resource export until V8 collected.
 */
export function liveFilePages(q: Queryable, job: ExportJob, scope: JobScope, resourceType: string, range: SnapshotRange, pageRows: number): AsyncGenerator<SnapshotBytes[]> {
  const itemsOf = scope.selection.readsItems(resourceType) ? resourceType : undefined;
  return paged(q, job.id, itemsOf, range, pageRows, (page) => readSnapshotBytes(q, resourceType, scope.window, scope.selection.includes(resourceType, sql.raw('r'), page), page, pageRows));
}

/**
 * Keyset pages over a range of ids. A type selected by its recorded items (`itemsOf` names it:
 * export_items, for an export about members or `_typeFilter` matches) is paged by its items:
 * each page reads its next pageRows items first and then their rows (SnapshotRange.ids), so
 * the items read per page are that page's, not the rest of the file's.
 * Otherwise a page ends at its last row, and a short page is the last.
 */
async function* paged<Row extends { id: string }>(
  q: Queryable,
  jobId: string,
  itemsOf: string | undefined,
  range: SnapshotRange,
  pageRows: number,
  read: (page: SnapshotRange) => Promise<Row[]>,
): AsyncGenerator<Row[]> {
  let after = range.after ?? null;
  for (;;) {
    const ids = itemsOf ? await itemPage(q, jobId, itemsOf, { after, upTo: range.upTo }, pageRows) : undefined;
    if (ids?.length === 0) return;
    const rows = await read(ids ? { after, upTo: ids[ids.length - 1], ids } : { after, upTo: range.upTo ?? null });
    yield rows;
    if (ids) {
      if (ids.length < pageRows) return;
      after = ids[ids.length - 1];
    } else {
      if (rows.length < pageRows) return;
      after = rows[rows.length - 1].id;
    }
  }
}

/** The next `limit` recorded items of the type within the range, in id order. */
async function itemPage(q: Queryable, jobId: string, resourceType: string, range: SnapshotRange, limit: number): Promise<string[]> {
  const after = range.after ? sql` AND x.id > ${range.after}` : sql``;
  const upTo = range.upTo ? sql` AND x.id <= ${range.upTo}` : sql``;
  const rows = await q.execute<{ id: string }>(sql`SELECT x.id FROM export_items x WHERE x.job_id = ${jobId} AND x.resource_type = ${resourceType}${after}${upTo} ORDER BY x.id LIMIT ${limit}`);
  return rows.map((row) => row.id);
}
