import type { Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';
import { recordWriteEvents } from '../subscriptions/events.ts';
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
const COLUMNS_OF_R = sql`r.resource_type AS "resourceType", r.id, r.version_id AS "versionId",
  (extract(epoch FROM r.last_updated) * 1000)::float8 AS "lastUpdatedMs", r.deleted, r.content AS json`;

export async function readCurrent(q: Queryable, resourceType: string, id: string, forUpdate = false): Promise<StoredResource | undefined> {
  const lock = forUpdate ? sql` FOR UPDATE` : sql``;
  const rows = await q.execute<StoredResource>(sql`SELECT ${COLUMNS} FROM resources WHERE resource_type = ${resourceType} AND id = ${id}${lock}`);
  return rows[0];
}

/**
 * The (type, id) keys as two array parameters joined with unnest: a row-value IN list of one
 * parameter pair per key grows the statement with the Bundle, and PGlite fails on a few
 * hundred pairs ("bad buffer ID").
 */
function keysOf(refs: { resourceType: string; id: string }[]): SQL {
  const types = sql.param(refs.map((r) => r.resourceType));
  const ids = sql.param(refs.map((r) => r.id));
  return sql`unnest(${types}::text[], ${ids}::text[]) AS k(resource_type, id)`;
}

/** Current versions of many resources at once (deleted ones excluded), in no particular order. */
export async function readCurrentMany(q: Queryable, refs: { resourceType: string; id: string }[]): Promise<StoredResource[]> {
  if (refs.length === 0) return [];
  return q.execute<StoredResource>(sql`SELECT ${COLUMNS_OF_R} FROM ${keysOf(refs)} JOIN resources r ON r.resource_type = k.resource_type AND r.id = k.id WHERE NOT r.deleted`);
}

/** Current rows (deleted ones included) locked FOR UPDATE in one statement, in key order so concurrent lockers do not deadlock. */
export async function lockCurrentMany(q: Queryable, refs: { resourceType: string; id: string }[]): Promise<StoredResource[]> {
  if (refs.length === 0) return [];
  return q.execute<StoredResource>(
    sql`SELECT ${COLUMNS_OF_R} FROM ${keysOf(refs)} JOIN resources r ON r.resource_type = k.resource_type AND r.id = k.id ORDER BY r.resource_type, r.id FOR UPDATE OF r`,
  );
}

export async function readVersion(q: Queryable, resourceType: string, id: string, versionId: number): Promise<StoredResource | undefined> {
  const rows = await q.execute<StoredResource>(
    sql`SELECT ${COLUMNS} FROM resource_history WHERE resource_type = ${resourceType} AND id = ${id} AND version_id = ${versionId}`,
  );
  return rows[0];
}

/**
 * Writes versions: the current row, the history row and the search index, in the caller's
 * transaction. Callers have already decided version numbers under a row lock. The rows travel
 * as one array per column (unnest): a thousand versions are one statement with seven
 * parameters, each resource's JSON sent once for both tables. The arrays are text[] cast in
 * SQL, which postgres.js and PGlite bind alike. The index statement is issued alongside: on
 * one transaction the two still run in order, without a round trip between them.
 */
export async function writeVersions(q: Queryable, versions: NewVersion[]): Promise<void> {
  if (versions.length === 0) return;
  const columns: string[][] = [[], [], [], [], [], [], []];
  const [types, ids, versionIds, lastUpdated, deleted, methods, contents] = columns;
  for (const v of versions) {
    types.push(v.resource.resourceType);
    ids.push(v.resource.id);
    versionIds.push(String(v.versionId));
    lastUpdated.push(v.lastUpdated);
    deleted.push(String(v.deleted));
    methods.push(v.method);
    contents.push(JSON.stringify(v.resource));
  }
  const [t, i, n, u, d, m, c] = columns.map((column) => sql`${sql.param(column)}::text[]`);
  await Promise.all([
    q.execute(sql`WITH input AS (
        SELECT resource_type, id, version_id::integer AS version_id, last_updated::timestamptz AS last_updated, deleted::boolean AS deleted, method, content
        FROM unnest(${t}, ${i}, ${n}, ${u}, ${d}, ${m}, ${c}) AS r(resource_type, id, version_id, last_updated, deleted, method, content)
      ), current_rows AS (
        INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, content)
        SELECT resource_type, id, version_id, last_updated, deleted, content FROM input
        ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, last_updated = excluded.last_updated,
          deleted = excluded.deleted, content = excluded.content
      )
      INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, content)
      SELECT resource_type, id, version_id, last_updated, deleted, method, content FROM input`),
    writeSearchIndex(
      q,
      versions.map((v) => ({ resourceType: v.resource.resourceType, id: v.resource.id, resource: v.deleted ? undefined : v.resource })),
    ),
  ]);
  // Subscription events go to the outbox in this transaction: no change without its event.
  await recordWriteEvents(q, versions);
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
  /** A further condition on the history rows: what the caller may see. */
  visible?: SQL;
}

/** History newest first, in write order. */
export async function readHistory(q: Queryable, query: HistoryQuery): Promise<HistoryRecord[]> {
  const where: SQL[] = [];
  if (query.resourceType) where.push(sql`resource_type = ${query.resourceType}`);
  if (query.id) where.push(sql`id = ${query.id}`);
  if (query.since) where.push(sql`last_updated >= ${query.since}`);
  if (query.before) where.push(sql`last_updated < ${query.before}`);
  if (query.beforeSeq !== undefined) where.push(sql`seq < ${query.beforeSeq}`);
  if (query.visible) where.push(query.visible);
  const clause = where.length ? sql`WHERE ${sql.join(where, sql` AND `)}` : sql``;
  return q.execute<HistoryRecord>(
    sql`SELECT ${COLUMNS}, seq::float8 AS seq, method FROM resource_history ${clause} ORDER BY resource_history.seq DESC LIMIT ${query.limit}`,
  );
}

/** Versions a WriteBuffer collects before it sends them, so the database works while validation goes on. */
const BUFFER_CHUNK = 200;
/** Writes between two turns of the event loop while a chunk is on its way. */
const WRITES_PER_TURN = 10;

/**
 * The writes of one transaction Bundle. The rows its entries change are locked up front in
 * one query, and new versions are buffered and sent in chunks with the multi-row INSERTs of
 * writeVersions: a thousand entries cost a handful of statements, not a thousand round trips.
 * A full chunk is sent without waiting for it, so PostgreSQL inserts one chunk while the next
 * is validated; statements on one transaction run in order. A driver needs turns of the event
 * loop to send a statement and read its answer (postgres.js also describes a statement the
 * first time a connection prepares it), so while a chunk is in flight the writer yields every
 * few writes; otherwise the database would idle until the next flush. Anything that reads the
 * database in the same transaction (search, read) flushes first, and so does the end of the
 * transaction.
 */
export class WriteBuffer {
  private readonly locked = new Map<string, StoredResource | undefined>();
  private readonly written = new Set<string>();
  private pending: NewVersion[] = [];
  private sent: Promise<void>[] = [];
  private inFlight = 0;
  private writesSinceTurn = 0;

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

  async write(version: NewVersion): Promise<void> {
    this.pending.push(version);
    this.written.add(bufferKey(version.resource.resourceType, version.resource.id));
    if (this.pending.length >= BUFFER_CHUNK) this.send();
    if (this.inFlight === 0 || ++this.writesSinceTurn < WRITES_PER_TURN) return;
    this.writesSinceTurn = 0;
    await new Promise((resolve) => setImmediate(resolve));
  }

  /** Waits until every buffered version is written; a failed write throws here. */
  async flush(): Promise<void> {
    this.send();
    const sent = this.sent;
    this.sent = [];
    await Promise.all(sent);
  }

  private send(): void {
    if (this.pending.length === 0) return;
    const write = writeVersions(this.q, this.pending);
    this.pending = [];
    this.inFlight++;
    // Observed by flush(); this only keeps a failure from counting as unhandled until then.
    write.catch(() => undefined).finally(() => this.inFlight--);
    this.sent.push(write);
  }
}

function bufferKey(resourceType: string, id: string): string {
  return `${resourceType}/${id}`;
}
