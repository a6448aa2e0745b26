import type { Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';
import { writeSearchIndex } from './search/index-writer.ts';

/** One stored version of a resource, as the database holds it. */
export interface StoredResource {
  resourceType: string;
  id: string;
  versionId: number;
  /** Epoch milliseconds of meta.lastUpdated. */
  lastUpdatedMs: number;
  deleted: boolean;
  /** The resource JSON as served; for a deletion, the last content before it. */
  json: string;
}

export interface HistoryRecord extends StoredResource {
  seq: number;
  method: WriteMethod;
}

export type WriteMethod = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A version about to be written. `resource` already carries its id and meta. */
export interface NewVersion {
  resource: Resource & { id: string };
  versionId: number;
  lastUpdated: string;
  method: WriteMethod;
  deleted: boolean;
}

const COLUMNS = sql`resource_type AS "resourceType", id, version_id AS "versionId",
  (extract(epoch FROM last_updated) * 1000)::float8 AS "lastUpdatedMs", deleted, content AS json`;

export async function readCurrent(q: Queryable, resourceType: string, id: string, forUpdate = false): Promise<StoredResource | undefined> {
  const lock = forUpdate ? sql` FOR UPDATE` : sql``;
  const rows = await q.execute<StoredResource>(sql`SELECT ${COLUMNS} FROM resources WHERE resource_type = ${resourceType} AND id = ${id}${lock}`);
  return rows[0];
}

/** Current versions of many resources at once (deleted ones excluded), in no particular order. */
export async function readCurrentMany(q: Queryable, refs: { resourceType: string; id: string }[]): Promise<StoredResource[]> {
  if (refs.length === 0) return [];
  const keys = sql.join(
    refs.map((r) => sql`(${r.resourceType}, ${r.id})`),
    sql`, `,
  );
  return q.execute<StoredResource>(sql`SELECT ${COLUMNS} FROM resources WHERE (resource_type, id) IN (${keys}) AND NOT deleted`);
}

/** Current rows (deleted ones included) locked FOR UPDATE in one statement, in key order so concurrent lockers do not deadlock. */
export async function lockCurrentMany(q: Queryable, refs: { resourceType: string; id: string }[]): Promise<StoredResource[]> {
  if (refs.length === 0) return [];
  const keys = sql.join(
    refs.map((r) => sql`(${r.resourceType}, ${r.id})`),
    sql`, `,
  );
  return q.execute<StoredResource>(sql`SELECT ${COLUMNS} FROM resources WHERE (resource_type, id) IN (${keys}) ORDER BY resource_type, id FOR UPDATE`);
}

export async function readVersion(q: Queryable, resourceType: string, id: string, versionId: number): Promise<StoredResource | undefined> {
  const rows = await q.execute<StoredResource>(
    sql`SELECT ${COLUMNS} FROM resource_history WHERE resource_type = ${resourceType} AND id = ${id} AND version_id = ${versionId}`,
  );
  return rows[0];
}

/** Rows per INSERT: keeps each statement well under PostgreSQL's 65,535 bind parameters. */
const CHUNK = 1000;

/**
 * Writes versions: the current row, the history row and the search index, in the caller's
 * transaction. Callers have already decided version numbers under a row lock.
 */
export async function writeVersions(q: Queryable, versions: NewVersion[]): Promise<void> {
  for (let i = 0; i < versions.length; i += CHUNK) {
    const chunk = versions.slice(i, i + CHUNK);
    const rows = chunk.map((v) => ({ v, json: JSON.stringify(v.resource) }));
    await q.execute(sql`INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, content) VALUES ${sql.join(
      rows.map(({ v, json }) => sql`(${v.resource.resourceType}, ${v.resource.id}, ${v.versionId}, ${v.lastUpdated}, ${v.deleted}, ${json})`),
      sql`, `,
    )}
      ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, last_updated = excluded.last_updated,
        deleted = excluded.deleted, content = excluded.content`);
    await q.execute(sql`INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, content) VALUES ${sql.join(
      rows.map(({ v, json }) => sql`(${v.resource.resourceType}, ${v.resource.id}, ${v.versionId}, ${v.lastUpdated}, ${v.deleted}, ${v.method}, ${json})`),
      sql`, `,
    )}`);
    await writeSearchIndex(
      q,
      chunk.map((v) => ({ resourceType: v.resource.resourceType, id: v.resource.id, resource: v.deleted ? undefined : v.resource })),
    );
  }
}

export interface HistoryQuery {
  resourceType?: string;
  id?: string;
  /** Only versions written at or after this instant (ISO). */
  since?: string;
  /** Only versions written before this instant (ISO), the `_at` upper bound. */
  before?: string;
  /** Paging cursor: only versions older than this write sequence number. */
  beforeSeq?: number;
  limit: number;
}

/** History newest first, in write order. */
export async function readHistory(q: Queryable, query: HistoryQuery): Promise<HistoryRecord[]> {
  const where: SQL[] = [];
  if (query.resourceType) where.push(sql`resource_type = ${query.resourceType}`);
  if (query.id) where.push(sql`id = ${query.id}`);
  if (query.since) where.push(sql`last_updated >= ${query.since}`);
  if (query.before) where.push(sql`last_updated < ${query.before}`);
  if (query.beforeSeq !== undefined) where.push(sql`seq < ${query.beforeSeq}`);
  const clause = where.length ? sql`WHERE ${sql.join(where, sql` AND `)}` : sql``;
  return q.execute<HistoryRecord>(
    sql`SELECT ${COLUMNS}, seq::float8 AS seq, method FROM resource_history ${clause} ORDER BY seq DESC LIMIT ${query.limit}`,
  );
}

/**
 * The writes of one transaction Bundle. The rows its entries change are locked up front in
 * one query and new versions are buffered, then written with the multi-row INSERTs of
 * writeVersions: a thousand entries cost a handful of statements, not a thousand round trips.
 * Anything that reads the database in the same transaction (search, read) flushes first.
 */
export class WriteBuffer {
  private readonly locked = new Map<string, StoredResource | undefined>();
  private readonly written = new Set<string>();
  private pending: NewVersion[] = [];

  constructor(private readonly q: Queryable) {}

  async lock(refs: { resourceType: string; id: string }[]): Promise<void> {
    const fresh = refs.filter((r) => !this.locked.has(bufferKey(r.resourceType, r.id)));
    const rows = await lockCurrentMany(this.q, fresh);
    for (const r of fresh) this.locked.set(bufferKey(r.resourceType, r.id), undefined);
    for (const row of rows) this.locked.set(bufferKey(row.resourceType, row.id), row);
  }

  /** The current version for a write, under a row lock. */
  async current(resourceType: string, id: string): Promise<StoredResource | undefined> {
    const key = bufferKey(resourceType, id);
    if (this.locked.has(key) && !this.written.has(key)) return this.locked.get(key);
    await this.flush();
    return readCurrent(this.q, resourceType, id, true);
  }

  write(version: NewVersion): void {
    this.pending.push(version);
    this.written.add(bufferKey(version.resource.resourceType, version.resource.id));
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const versions = this.pending;
    this.pending = [];
    await writeVersions(this.q, versions);
  }
}

function bufferKey(resourceType: string, id: string): string {
  return `${resourceType}/${id}`;
}
