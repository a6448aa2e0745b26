import type { Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';
import { emptyRows, extractIndexRows, INDEX_COLUMNS, INDEX_TABLES } from '../fhir/search/extract.ts';
import type { SnapshotRow } from './snapshot.ts';

/**
 * Bulk Data 2.0.0 (manifest, `deleted`): the files list the resources "that match the kickoff
 * request criteria, but have been deleted subsequent to the `_since` date", and `_typeFilter` is
 * one of those criteria. A deleted resource has no search index rows left, so its `_typeFilter`
 * searches are run against the index as it would be had it not been deleted: the index rows of
 * its last content (the tombstone keeps it) beside every other resource's current rows.
 *
 * One statement per page of deletions: CTEs named like the index tables and `resources` shadow
 * them for the statement (a WITH name hides a table of the same name; inside its own definition,
 * without RECURSIVE, the name still means the table), each the table's rows plus those of the
 * deleted resources, and inlined (NOT MATERIALIZED) so the filters' conditions reach the tables'
 * indexes. The filter SQL is the search's own (ExportSelection.filterMatches, among DELETED_IDS), so a deleted
 * resource is judged exactly as a live one was when the export was planned. Its `_lastUpdated` is
 * that of its deletion (the tombstone's meta); chained parameters follow the targets' current
 * versions, as for live resources.
 */
export async function deletedMatchingFilters(q: Queryable, resourceType: string, rows: readonly SnapshotRow[], filterMatches: SQL): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const index = emptyRows();
  const gone: [string, string, string, string][] = [];
  for (const row of rows) {
    const resource = JSON.parse(row.content) as Resource;
    extractIndexRows({ ...resource, resourceType, id: row.id } as Resource & { id: string }, index);
    gone.push([resourceType, row.id, new Date(row.lastUpdatedMs).toISOString(), row.content]);
  }
  const doc = jsonbSafe(JSON.stringify({ gone, ...index }));
  const matched = await q.execute<{ id: string }>(sql`WITH input AS (SELECT ${doc}::jsonb AS doc)${SHADOWS} SELECT DISTINCT m.id FROM (${filterMatches}) m(id)`);
  return new Set(matched.map((row) => row.id));
}

/** The ids of the deleted resources a statement of deletedMatchingFilters judges: what `filterMatches` is asked to search among. */
export const DELETED_IDS = sql.raw(`SELECT g->>1 FROM input, jsonb_array_elements(input.doc->'gone') g`);

/** The shadowing CTEs (after `input`), built once: every index table and `resources`. */
const SHADOWS = sql.raw(
  [
    ...INDEX_TABLES.map((table) => {
      const columns = ['resource_type', 'resource_id', 'code', 'grp', ...INDEX_COLUMNS[table].map(([name]) => name)];
      const values = ['r->>0', 'r->>1', 'r->>2', '(r->>3)::integer', ...INDEX_COLUMNS[table].map(([, type], i) => (type === 'text' ? `r->>${i + 4}` : `(r->>${i + 4})::${type}`))];
      const list = columns.map((c) => `"${c}"`).join(', ');
      return `, sp_${table} AS NOT MATERIALIZED (SELECT ${list} FROM sp_${table} UNION ALL SELECT ${values.join(', ')} FROM input, jsonb_array_elements(input.doc->'${table}') r)`;
    }),
    `, resources AS NOT MATERIALIZED (SELECT resource_type, id, version_id, last_updated, deleted, content FROM resources
       UNION ALL SELECT g->>0, g->>1, 0, (g->>2)::timestamptz, FALSE, g->>3 FROM input, jsonb_array_elements(input.doc->'gone') g)`,
  ].join('\n'),
);

/**
 * jsonb holds neither NUL nor lone surrogates, which JSON strings may carry (as \u0000 and
 * \udXXX): dropped, as the search index drops them when it is written.
 */
function jsonbSafe(json: string): string {
  if (!json.includes('\\u')) return json;
  return json.replace(/(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/gi, '$1');
}
