import type { Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../../db/connection.ts';
import { emptyRows, extractIndexRows, INDEX_COLUMNS, INDEX_TABLES, type IndexRows, type IndexTable } from './extract.ts';

export interface IndexEntry {
  resourceType: string;
  id: string;
  /** Absent when the resource is deleted: its rows are removed and none written. */
  resource: Resource | undefined;
}

/**
 * One statement for the whole batch, whatever its size: the rows travel as one JSON document
 * and data-modifying CTEs delete the old rows and insert the new ones of every sp_* table.
 * The CTEs share one snapshot, so the deletes never see the rows inserted beside them. Only
 * the tables a batch touches appear in its statement: planning sixteen CTEs for a single
 * create cost more than its inserts (measured 1.4 ms of PostgreSQL time per create).
 */
const statements = new Map<string, SQL>();

function statementBody(tables: readonly IndexTable[], deletes: boolean): SQL {
  const key = `${deletes}:${tables.join(',')}`;
  let body = statements.get(key);
  if (!body) {
    const parts = deletes
      ? [
          `, doomed AS (SELECT k->>0 AS resource_type, k->>1 AS resource_id FROM input, jsonb_array_elements(input.doc->'doomed') k)`,
          ...INDEX_TABLES.map(
            (table) => `, delete_${table} AS (DELETE FROM sp_${table} t USING doomed d WHERE t.resource_type = d.resource_type AND t.resource_id = d.resource_id)`,
          ),
        ]
      : [];
    for (const table of tables) {
      const columns = ['resource_type', 'resource_id', 'code', 'grp', ...INDEX_COLUMNS[table].map(([name]) => name)];
      const values = [
        `r->>0`,
        `r->>1`,
        `r->>2`,
        `(r->>3)::integer`,
        ...INDEX_COLUMNS[table].map(([, type], i) => (type === 'text' ? `r->>${i + 4}` : `(r->>${i + 4})::${type}`)),
      ];
      parts.push(
        `, insert_${table} AS (INSERT INTO sp_${table} (${columns.map((c) => `"${c}"`).join(', ')}) SELECT ${values.join(', ')} FROM input, jsonb_array_elements(input.doc->'${table}') r)`,
      );
    }
    body = sql.raw(`${parts.join('\n')} SELECT 1`);
    statements.set(key, body);
  }
  return body;
}

/** Replaces the search index rows of each entry with the values extracted from its resource. */
export async function writeSearchIndex(q: Queryable, entries: IndexEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const latest = new Map<string, IndexEntry>();
  for (const entry of entries) latest.set(`${entry.resourceType}/${entry.id}`, entry);
  const doomed: [string, string][] = [];
  const rows: IndexRows = emptyRows();
  for (const entry of latest.values()) {
    // A first version has no rows to replace.
    if (entry.resource?.meta?.versionId !== '1') doomed.push([entry.resourceType, entry.id]);
    if (entry.resource) extractIndexRows({ ...entry.resource, id: entry.id }, rows);
  }
  const tables = INDEX_TABLES.filter((table) => rows[table].length > 0);
  if (tables.length === 0 && doomed.length === 0) return;
  const doc = storableJson(JSON.stringify({ doomed, ...rows }));
  await q.execute(sql`WITH input AS (SELECT ${doc}::jsonb AS doc)${statementBody(tables, doomed.length > 0)}`);
}

/**
 * PostgreSQL text holds neither NUL nor lone surrogates, which JSON strings may carry (escaped as
 * \u0000 and \udXXX: JSON.stringify escapes surrogates only when unpaired). Dropped from the index.
 */
function storableJson(json: string): string {
  if (!json.includes('\\u')) return json;
  return json.replace(/(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/gi, '$1');
}
