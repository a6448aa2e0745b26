import type { AuditEvent } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import { type EventIndexEntry, eventIndexEntry, keyDigest } from './event-keys.ts';

/**
 * Writes the auditors' search index of the sealed trail (audit_index, audit_index_strings): one
 * row per chain position, in the sealer's transaction, so an event is searchable exactly when it
 * is sealed. The rows travel as arrays (unnest): a batch is two statements whatever its size.
 */
export interface SealedEvent {
  position: number;
  eventSeq: number;
  event: AuditEvent & { id: string };
  /** ISO instant, audit_events.recorded. */
  recorded: string;
}

export async function writeEventIndex(q: Queryable, sealed: readonly SealedEvent[]): Promise<void> {
  await insertIndexRows(
    q,
    sealed.map(({ position, eventSeq, event, recorded }) => ({ position, eventSeq, eventId: event.id, recorded, ...eventIndexEntry(event) })),
  );
}

/**
 * A row's key digests travel as one text, joined by commas, and become its uuid[] in SQL
 * (ROW_DIGESTS): an array per row would be a text[] of text[]s, which the driver escapes value by value.
 */
export function rowDigests(keys: readonly string[]): string {
  return keys.map(keyDigest).join(',');
}

/** audit_index.keys from a row's `keys` column as rowDigests joined them. */
export const ROW_DIGESTS = sql.raw(`string_to_array(keys, ',')::uuid[]`);

/** One index row whose entry is computed: what insertIndexRows writes. */
export type IndexRow = Omit<SealedEvent, 'event'> & { eventId: string } & EventIndexEntry;

/**
 * A column of a batch of rows: its values, or their PostgreSQL array literal (arrayLiteral), which
 * a bulk load builds on the threads that generate the rows so that its writing thread only passes
 * strings on. Either travels as one text[] parameter.
 */
export type Column = readonly string[] | string;

export interface IndexColumns {
  position: Column;
  eventSeq: Column;
  eventId: Column;
  recorded: Column;
  /** Each row's key digests (rowDigests). */
  keys: Column;
  /** Absent when no row has a string value. */
  strings?: { position: Column; code: Column; value: Column; exact: Column };
}

export function indexColumns(rows: readonly IndexRow[]): IndexColumns {
  const strings = rows.flatMap((row) => row.strings.map((s) => ({ position: String(row.position), ...s })));
  return {
    position: rows.map((r) => String(r.position)),
    eventSeq: rows.map((r) => String(r.eventSeq)),
    eventId: rows.map((r) => r.eventId),
    recorded: rows.map((r) => r.recorded),
    keys: rows.map((r) => rowDigests(r.keys)),
    ...(strings.length === 0
      ? {}
      : { strings: { position: strings.map((s) => s.position), code: strings.map((s) => s.code), value: strings.map((s) => s.value), exact: strings.map((s) => s.exact) } }),
  };
}

/** The PostgreSQL array literal of text values (every element quoted, so none reads as NULL). */
export function arrayLiteral(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(ARRAY_ESCAPED, '\\$&')}"`).join(',')}}`;
}

const ARRAY_ESCAPED = /[\\"]/g;

export async function insertIndexRows(q: Queryable, rows: readonly IndexRow[]): Promise<void> {
  if (rows.length > 0) await insertIndexColumns(q, indexColumns(rows));
}

/** Writes a batch of index rows given as columns: two statements whatever its size. */
export async function insertIndexColumns(q: Queryable, c: IndexColumns): Promise<void> {
  const column = (values: Column) => sql`${sql.param(values)}::text[]`;
  await q.execute(sql`
    INSERT INTO audit_index (position, event_seq, event_id, recorded, keys)
    SELECT position::bigint, event_seq::bigint, event_id, recorded::timestamptz, ${ROW_DIGESTS}
    FROM unnest(${column(c.position)}, ${column(c.eventSeq)}, ${column(c.eventId)}, ${column(c.recorded)}, ${column(c.keys)})
      AS e(position, event_seq, event_id, recorded, keys)`);
  if (!c.strings) return;
  await q.execute(sql`
    INSERT INTO audit_index_strings (position, code, value, exact)
    SELECT position::bigint, code, value, exact
    FROM unnest(${column(c.strings.position)}, ${column(c.strings.code)}, ${column(c.strings.value)}, ${column(c.strings.exact)}) AS s(position, code, value, exact)`);
}

/** Positions indexed per transaction while catching up. */
const CATCH_UP_BATCH = 1000;

/**
 * Indexes sealed positions the index does not hold yet: the trail sealed before the index
 * existed (migration 0025 moved AuditEvents out of the FHIR store). Nothing to do otherwise,
 * since the sealer indexes what it seals; safe to run from several processes at once (each
 * batch takes the sealer's lock).
 */
export async function indexUnindexedPositions(db: Database, lock: (q: Queryable) => Promise<void>): Promise<number> {
  let indexed = 0;
  for (;;) {
    const done = await db.transaction(async (tx) => {
      await lock(tx);
      const rows = await tx.execute<{ position: number; event_seq: number; content: string; recorded_ms: number }>(sql`
        SELECT c.position::float8 AS position, c.event_seq::float8 AS event_seq, e.content, (extract(epoch FROM e.recorded) * 1000)::float8 AS recorded_ms
        FROM audit_chain c JOIN audit_events e ON e.seq = c.event_seq
        WHERE c.position > (SELECT coalesce(max(position), 0) FROM audit_index)
        ORDER BY c.position LIMIT ${CATCH_UP_BATCH}`);
      await writeEventIndex(
        tx,
        rows.map((row) => ({
          position: row.position,
          eventSeq: row.event_seq,
          event: JSON.parse(row.content) as AuditEvent & { id: string },
          recorded: new Date(row.recorded_ms).toISOString(),
        })),
      );
      return rows.length;
    });
    indexed += done;
    if (done < CATCH_UP_BATCH) return indexed;
  }
}
