import type { AuditEvent } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';

/**
 * Appends AuditEvents to audit_events on `q`: one statement however many there are. The contents
 * travel as one JSON array whose elements PostgreSQL keeps verbatim (a json element cast to text
 * keeps its text); as a text[] the driver escaped every quote of every event, a tenth of a read's
 * CPU. Ids and instants come as arrays of their own: `->>` would refuse an event whose text
 * escapes U+0000, which a json value admits.
 */
export async function insertAuditEvents(q: Queryable, events: readonly AuditEvent[]): Promise<void> {
  if (events.length === 0) return;
  const ids = events.map((e) => e.id as string);
  const recorded = events.map((e) => e.recorded);
  const contents = `[${events.map((e) => JSON.stringify(e)).join(',')}]`;
  await q.execute(sql`INSERT INTO audit_events (event_id, recorded, content)
    SELECT id, recorded::timestamptz, content::text
    FROM ROWS FROM (unnest(${sql.param(ids)}::text[]), unnest(${sql.param(recorded)}::text[]), json_array_elements(${contents}::json)) AS e(id, recorded, content)`);
}

/** Events per INSERT at most; more wait for the next one. */
const MAX_BATCH = 1000;

interface Waiting {
  events: readonly AuditEvent[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * The durable path for AuditEvents that are not part of a write (reads, searches, failures,
 * token requests): group commit. Each caller waits until its events are in audit_events, so a
 * response is only sent once its audit record is stored, and nothing is lost to a crash or a
 * shutdown; the events of concurrent requests share one INSERT. One INSERT is in flight at a
 * time; events arriving meanwhile form the next.
 */
export class AuditWriter {
  private waiting: Waiting[] = [];
  private draining = false;

  constructor(private readonly db: Database) {}

  record(events: readonly AuditEvent[]): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiting.push({ events, resolve, reject });
      if (!this.draining) {
        this.draining = true;
        // One turn of the event loop lets the requests finishing together share the INSERT.
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch: Waiting[] = [];
      let size = 0;
      while (this.waiting.length > 0 && (batch.length === 0 || size + this.waiting[0].events.length <= MAX_BATCH)) {
        const next = this.waiting.shift() as Waiting;
        batch.push(next);
        size += next.events.length;
      }
      try {
        await insertAuditEvents(
          this.db,
          batch.flatMap((w) => w.events),
        );
        for (const w of batch) w.resolve();
      } catch (error) {
        for (const w of batch) w.reject(error);
      }
    }
    this.draining = false;
  }
}
