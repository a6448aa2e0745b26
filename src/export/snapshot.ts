import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';

/**
 * The database as of an export's transactionTime, read in id order. Every resource has its row
 * in `resources` (a deleted one keeps a tombstone row), so the version as of T is that row when
 * it was last written at or before T, and otherwise the latest version at or before T in
 * resource_history, which is append-only: what was true at T stays readable, however long the
 * download takes. Resources created after T have no such version and are not there.
 *
 * The two cases are two scans in id order merged into one (each case ordered and limited on its
 * own, or PostgreSQL may read and sort a type's whole remainder for every page), so a file is
 * streamed in keyset pages (`after` … `upTo`), and planning counts with the same conditions.
 * The second case reads the rows written after T through the (resource_type, last_updated)
 * index behind a fence (OFFSET 0): the statements are prepared, and PostgreSQL's generic plan
 * otherwise walked the page's whole id range in the primary key to find those few rows
 * (440 ms instead of 3 ms per page of 1,000 Encounters, 892k resources).
 */
export interface SnapshotWindow {
  /** transactionTime, ISO. */
  at: string;
  /** Only versions written after this instant (`_since`). */
  since?: string;
  /** Only versions written at or before this instant (`_until`). */
  until?: string;
}

export interface SnapshotRow {
  id: string;
  /** The version's JSON as stored (for a deletion, the last content before it). */
  content: string;
  /** When the version was written, epoch milliseconds. */
  lastUpdatedMs: number;
}

/** A live row of the snapshot as a download passes it on: the stored JSON's bytes, not decoded. */
export interface SnapshotBytes {
  id: string;
  content: Buffer;
}

export interface SnapshotRange {
  /** Ids after this one (exclusive). */
  after?: string | null;
  /** Ids up to this one (inclusive). */
  upTo?: string | null;
  /** The range's recorded items (export_items), when a page is read by them: its rows are among these. */
  ids?: readonly string[];
}

/**
 * The resources of a type as of T: `live` ones passing `includes` (a condition on the current
 * row `r`, ExportSelection.includes), or the `deleted` ones (the deletion being their version
 * as of T). `columns` selects from the version (`r` itself, or the `v` found in history).
 */
function versionsAsOf(
  resourceType: string,
  window: SnapshotWindow,
  state: 'live' | 'deleted',
  includes: SQL,
  range: SnapshotRange,
  columns: (version: SQL) => SQL,
  limit?: number,
): SQL {
  const r = sql.raw('r');
  const v = sql.raw('v');
  const bounds: SQL[] = [];
  if (range.after) bounds.push(sql` AND ${r}.id > ${range.after}`);
  if (range.upTo) bounds.push(sql` AND ${r}.id <= ${range.upTo}`);
  const within = (version: SQL): SQL => {
    const parts: SQL[] = [];
    if (window.since) parts.push(sql` AND ${version}.last_updated > ${window.since}::timestamptz`);
    if (window.until) parts.push(sql` AND ${version}.last_updated <= ${window.until}::timestamptz`);
    return sql.join(parts, sql``);
  };
  const deleted = state === 'deleted' ? sql`` : sql`NOT `;
  const at = sql`${window.at}::timestamptz`;
  const idRange = sql.join(bounds, sql``);
  const first = limit === undefined ? sql` ORDER BY ${r}.id` : sql` ORDER BY ${r}.id LIMIT ${limit}`;
  return sql`(SELECT ${columns(r)} FROM resources ${r}
      WHERE ${r}.resource_type = ${resourceType} AND ${r}.last_updated <= ${at} AND ${deleted}${r}.deleted${idRange}${within(r)} AND ${includes}${first})
    UNION ALL
    (SELECT ${columns(v)} FROM (SELECT * FROM resources WHERE resource_type = ${resourceType} AND last_updated > ${at} OFFSET 0) ${r}, LATERAL (
        SELECT h.id, h.content, h.last_updated, h.deleted FROM resource_history h
        WHERE h.resource_type = ${r}.resource_type AND h.id = ${r}.id AND h.last_updated <= ${at}
        ORDER BY h.version_id DESC LIMIT 1) ${v}
      WHERE ${deleted}${v}.deleted${idRange}${within(v)} AND ${includes}${first})`;
}

/** One page of the snapshot's rows of a type, in id order. */
export async function readSnapshotPage(
  q: Queryable,
  resourceType: string,
  window: SnapshotWindow,
  state: 'live' | 'deleted',
  includes: SQL,
  range: SnapshotRange,
  limit: number,
): Promise<SnapshotRow[]> {
  const columns = (version: SQL) => sql`${version}.id, ${version}.content, (extract(epoch FROM ${version}.last_updated) * 1000)::float8 AS "lastUpdatedMs"`;
  return q.execute<SnapshotRow>(sql`SELECT * FROM (${versionsAsOf(resourceType, window, state, includes, range, columns, limit)}) s ORDER BY s.id LIMIT ${limit}`);
}

/** One page of the live snapshot rows of a type, in id order, their content as the database sent it (Queryable.executeBytes). */
export async function readSnapshotBytes(q: Queryable, resourceType: string, window: SnapshotWindow, includes: SQL, range: SnapshotRange, limit: number): Promise<SnapshotBytes[]> {
  const columns = (version: SQL) => sql`${version}.id, ${version}.content`;
  const rows = await q.executeBytes(sql`SELECT s.id, s.content FROM (${versionsAsOf(resourceType, window, 'live', includes, range, columns, limit)}) s ORDER BY s.id LIMIT ${limit}`);
  return rows.map(([id, content]) => ({ id: (id as Buffer).toString(), content: content as Buffer }));
}

/** Where files of `perFile` resources end: the id closing each file and the running count, the last (partial) file included. */
export interface FileBoundary {
  lastId: string;
  /** Resources up to and including lastId. */
  n: number;
}

/**
 * Cuts the live snapshot of a type into files of `perFile` resources in one pass over the ids
 * (the content is not read): every perFile-th id, and the last one.
 */
export async function fileBoundaries(q: Queryable, resourceType: string, window: SnapshotWindow, includes: SQL, perFile: number): Promise<FileBoundary[]> {
  const rows = await q.execute<{ id: string; n: string | number }>(sql`SELECT id, n FROM (
      SELECT s.id, row_number() OVER w AS n, lead(s.id) OVER w IS NULL AS last
      FROM (${versionsAsOf(resourceType, window, 'live', includes, {}, (version) => sql`${version}.id`)}) s
      WINDOW w AS (ORDER BY s.id)) numbered
    WHERE n % ${perFile} = 0 OR last
    ORDER BY n`);
  return rows.map((row) => ({ lastId: row.id, n: Number(row.n) }));
}
