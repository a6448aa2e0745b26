import type { AuditEvent } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import { eventIndexEntry } from './event-keys.ts';

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
  if (sealed.length === 0) return;
  const strings: { position: string; code: string; value: string; exact: string }[] = [];
  const keys: string[] = [];
  for (const { position, event } of sealed) {
    const entry = eventIndexEntry(event);
    keys.push(entry.keys.join(','));
    for (const s of entry.strings) strings.push({ position: String(position), ...s });
  }
  const column = (values: string[]) => sql`${sql.param(values)}::text[]`;
  await q.execute(sql`
    INSERT INTO audit_index (position, event_seq, event_id, recorded, keys)
    SELECT position::bigint, event_seq::bigint, event_id, recorded::timestamptz, string_to_array(keys, ',')::uuid[]
    FROM unnest(${column(sealed.map((s) => String(s.position)))}, ${column(sealed.map((s) => String(s.eventSeq)))}, ${column(sealed.map((s) => s.event.id))},
      ${column(sealed.map((s) => s.recorded))}, ${column(keys)}) AS e(position, event_seq, event_id, recorded, keys)`);
  if (strings.length === 0) return;
  await q.execute(sql`
    INSERT INTO audit_index_strings (position, code, value, exact)
    SELECT position::bigint, code, value, exact
    FROM unnest(${column(strings.map((s) => s.position))}, ${column(strings.map((s) => s.code))}, ${column(strings.map((s) => s.value))},
      ${column(strings.map((s) => s.exact))}) AS s(position, code, value, exact)`);
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
