import { sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';
import { BLOCKING_KEY_VERSION } from './blocking-keys.ts';

/**
 * Members indexed under an older version of the blocking keys are queued for re-indexing (at
 * start), so a release that adds a key finds every member under it once the queue drains. Until
 * then the older keys still find them. Returns how many were queued.
 */
export async function queueStaleIndexEntries(q: Queryable): Promise<number> {
  const rows = await q.execute(sql`
    INSERT INTO match_index_queue (patient_id)
    SELECT patient_id FROM match_index_records WHERE key_version < ${BLOCKING_KEY_VERSION}
    ON CONFLICT (patient_id) DO NOTHING RETURNING patient_id`);
  return rows.length;
}
