import { createHash } from 'node:crypto';
import type { Coverage, Patient } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import { BLOCK_SIZE_LIMIT, BLOCKING_KEY_VERSION, candidateBlockingKeys, DECISIVE_KINDS, keyKind, queryBlockingKeys } from './blocking-keys.ts';
import { candidateFromMember } from './from-fhir.ts';
import type { NormalizedName } from './names.ts';
import { type NormalizedCandidate, normalizeCandidate, normalizeRecord } from './normalize.ts';
import type { TermFrequencies } from './score.ts';
import type { CandidateRecord, MatchQuery } from './types.ts';

/**
 * The blocking index in the database (the one I/O of src/matching): each member filed under the
 * hashed blocking keys of everything they ever were, with the member normalized as the engine
 * compares it (NormalizedCandidate; before key version 3, the CandidateRecord). A trigger on
 * resources queues members whose Patient or Coverage changed (migration 0013); catchUp
 * re-indexes them. A match reads two indexed tables: never a scan of resources.
 */

/** First 8 bytes of SHA-256 as a signed 64-bit integer (decimal text): keys hold demographics, the index does not. */
export function keyHash(key: string): string {
  return createHash('sha256').update(key).digest().readBigInt64BE(0).toString();
}

/** Normalized family names and first given names: the values term frequencies count (a member's current ones). */
function nameValues(names: readonly NormalizedName[]): { families: string[]; givens: string[] } {
  return {
    families: [...new Set(names.map((name) => name.family).filter((value): value is string => Boolean(value)))],
    givens: [...new Set(names.map((name) => name.first).filter((value): value is string => Boolean(value)))],
  };
}

const textArray = (values: readonly string[]) => sql`${sql.param(values)}::text[]`;

/**
 * Re-indexes members from their stored Patient (every version: identity drift) and the
 * Coverages naming them as beneficiary; a member whose Patient is gone leaves the index.
 */
export async function indexMembers(q: Queryable, patientIds: readonly string[]): Promise<void> {
  if (patientIds.length === 0) return;
  const ids = textArray(patientIds);
  const [versions, coverages, previous, previousKeys] = await Promise.all([
    q.execute<{ id: string; versionId: number; content: string; current: boolean }>(sql`
      SELECT h.id, h.version_id AS "versionId", h.content, (h.version_id = r.version_id) AS current
      FROM resource_history h JOIN resources r ON r.resource_type = 'Patient' AND r.id = h.id AND NOT r.deleted
      WHERE h.resource_type = 'Patient' AND h.id = ANY (${ids}) AND NOT h.deleted`),
    q.execute<{ patientId: string; content: string }>(sql`
      SELECT cr.target_id AS "patientId", c.content FROM sp_reference cr
      JOIN resources c ON c.resource_type = 'Coverage' AND c.id = cr.resource_id AND NOT c.deleted
      WHERE cr.resource_type = 'Coverage' AND cr.code = 'beneficiary' AND cr.target_type = 'Patient' AND cr.target_id = ANY (${ids})
        AND strpos(cr.reference, ':') = 0`),
    q.execute<{ id: string; record: string; keyVersion: number; families: string[]; givens: string[] }>(
      sql`SELECT patient_id AS id, record, key_version AS "keyVersion", families, givens FROM match_index_records WHERE patient_id = ANY (${ids})`,
    ),
    q.execute<{ hash: string; id: string }>(sql`SELECT key_hash::text AS hash, patient_id AS id FROM match_index_keys WHERE patient_id = ANY (${ids})`),
  ]);
  const byPatient = new Map<string, { current?: Patient; history: Patient[]; coverages: Coverage[] }>();
  const entry = (id: string) => byPatient.get(id) ?? byPatient.set(id, { history: [], coverages: [] }).get(id)!;
  for (const version of versions) {
    const patient = JSON.parse(version.content) as Patient;
    if (version.current) entry(version.id).current = patient;
    else entry(version.id).history.push(patient);
  }
  for (const coverage of coverages) if (byPatient.has(coverage.patientId)) entry(coverage.patientId).coverages.push(JSON.parse(coverage.content) as Coverage);

  const records: { id: string; record: string; families: string[]; givens: string[] }[] = [];
  const keyRows: { hash: string; id: string }[] = [];
  for (const [id, member] of byPatient) {
    if (!member.current) continue;
    const candidate = normalizeCandidate(candidateFromMember(member.current, member.coverages, { history: member.history }));
    records.push({ id, record: JSON.stringify(candidate), ...nameValues(candidate.names.filter((name) => !name.entry.historical)) });
    for (const hash of new Set(candidateBlockingKeys(candidate).map(keyHash))) keyRows.push({ hash, id });
  }

  // Term counts move by the difference between the members' old and new names.
  const deltas = new Map<string, { field: string; value: string; by: number }>();
  const add = (field: string, value: string, by: number) => {
    const key = JSON.stringify([field, value]);
    const delta = deltas.get(key) ?? deltas.set(key, { field, value, by: 0 }).get(key)!;
    delta.by += by;
  };
  for (const old of previous) {
    add('*', '', -1);
    for (const value of old.families) add('family', value, -1);
    for (const value of old.givens) add('given', value, -1);
  }
  for (const record of records) {
    add('*', '', 1);
    for (const value of record.families) add('family', value, 1);
    for (const value of record.givens) add('given', value, 1);
  }
  const changed = [...deltas.values()].filter((delta) => delta.by !== 0);

  // Only what changed is written: re-indexing a member after a match (a new card) rewrites one
  // record and adds a key or two, instead of deleting and inserting a dozen index rows.
  const keyOf = (row: { hash: string; id: string }) => `${row.hash} ${row.id}`;
  const wanted = new Set(keyRows.map(keyOf));
  const held = new Set(previousKeys.map(keyOf));
  const staleKeys = previousKeys.filter((row) => !wanted.has(keyOf(row)));
  const newKeys = keyRows.filter((row) => !held.has(keyOf(row)));
  // A record filed under an earlier key version is rewritten even when it reads the same.
  const stored = new Map(previous.filter((row) => Number(row.keyVersion) === BLOCKING_KEY_VERSION).map((row) => [row.id, row.record]));
  const changedRecords = records.filter((r) => stored.get(r.id) !== r.record);
  const indexed = new Set(records.map((r) => r.id));
  const goneRecords = previous.filter((row) => !indexed.has(row.id)).map((row) => row.id);

  // Sent together: statements of one transaction run in order on its connection, so the writes
  // cost one round trip. They touch disjoint rows, so their order does not matter.
  const writes: Promise<unknown>[] = [];
  if (staleKeys.length > 0) {
    writes.push(
      q.execute(sql`
        DELETE FROM match_index_keys WHERE (key_hash, patient_id) IN (
          SELECT hash::bigint, id FROM unnest(${textArray(staleKeys.map((k) => k.hash))}, ${textArray(staleKeys.map((k) => k.id))}) AS k(hash, id))`),
    );
  }
  if (newKeys.length > 0) {
    writes.push(
      q.execute(sql`
        INSERT INTO match_index_keys (key_hash, patient_id)
        SELECT hash::bigint, id FROM unnest(${textArray(newKeys.map((k) => k.hash))}, ${textArray(newKeys.map((k) => k.id))}) AS k(hash, id)
        ON CONFLICT DO NOTHING`),
    );
  }
  if (goneRecords.length > 0) writes.push(q.execute(sql`DELETE FROM match_index_records WHERE patient_id = ANY (${textArray(goneRecords)})`));
  if (changedRecords.length > 0) {
    writes.push(
      q.execute(sql`
        INSERT INTO match_index_records (patient_id, record, key_version, families, givens)
        SELECT id, record, ${BLOCKING_KEY_VERSION}, string_to_array(families, chr(31)), string_to_array(givens, chr(31))
        FROM unnest(${textArray(changedRecords.map((r) => r.id))}, ${textArray(changedRecords.map((r) => r.record))},
          ${textArray(changedRecords.map((r) => r.families.join('\u001f')))}, ${textArray(changedRecords.map((r) => r.givens.join('\u001f')))}) AS r(id, record, families, givens)
        ON CONFLICT (patient_id) DO UPDATE SET record = excluded.record, key_version = excluded.key_version, families = excluded.families, givens = excluded.givens, indexed = now()`),
    );
  }
  if (changed.length > 0) {
    // In one order, so concurrent indexers lock the counters alike and cannot deadlock.
    writes.push(
      q.execute(sql`
        INSERT INTO match_term_counts (field, value, members)
        SELECT field, value, by::integer
        FROM unnest(${textArray(changed.map((d) => d.field))}, ${textArray(changed.map((d) => d.value))}, ${textArray(changed.map((d) => String(d.by)))}) AS d(field, value, by)
        ORDER BY field, value
        ON CONFLICT (field, value) DO UPDATE SET members = match_term_counts.members + excluded.members`),
    );
  }
  await Promise.all(writes);
}

/** Batches indexed at once while a backlog lasts: one batch's rows are built here while another's are written. */
const CATCH_UP_WORKERS = 3;

/**
 * Re-indexes the queued members, a batch per transaction, until the queue is empty. Rows another
 * process is indexing are skipped (they are being handled); a write still in flight holds its
 * row, so it is indexed once it commits. Returns how many members were indexed.
 */
export async function catchUp(db: Database, batchSize = 500): Promise<number> {
  // Every match calls this first and the queue is nearly always empty: one read instead of a transaction.
  const [{ queued }] = await db.execute<{ queued: boolean }>(sql`SELECT EXISTS (SELECT 1 FROM match_index_queue) AS queued`);
  if (!queued) return 0;
  const first = await indexQueuedBatch(db, batchSize);
  if (first < batchSize) return first;
  // A backlog (a bulk load, a restore): batches in parallel, each taking rows the others have not locked.
  let total = first;
  const drain = async (): Promise<void> => {
    for (;;) {
      const indexed = await indexQueuedBatch(db, batchSize);
      total += indexed;
      if (indexed < batchSize) return;
    }
  };
  await Promise.all(Array.from({ length: db.kind === 'postgres' ? CATCH_UP_WORKERS : 1 }, drain));
  return total;
}

async function indexQueuedBatch(db: Database, batchSize: number): Promise<number> {
  return db.transaction(async (q) => {
    // The commit need not wait for the disk: taking the queue rows and writing their index rows
    // commit together, so a commit lost in a crash leaves the members queued, to be indexed again.
    // Sent with the statement taking the rows: one round trip.
    const [, taken] = await Promise.all([
      db.kind === 'postgres' ? q.execute(sql`SET LOCAL synchronous_commit = off`) : undefined,
      q.execute<{ patientId: string }>(sql`
        DELETE FROM match_index_queue WHERE patient_id IN (
          SELECT patient_id FROM match_index_queue ORDER BY patient_id LIMIT ${batchSize} FOR UPDATE SKIP LOCKED)
        RETURNING patient_id AS "patientId"`),
    ]);
    await indexMembers(q, taken.map((row) => row.patientId));
    return taken.length;
  });
}

export interface BlockingResult {
  candidates: NormalizedCandidate[];
  /** Keys looked up, and those skipped because their block exceeded BLOCK_SIZE_LIMIT. */
  keys: number;
  skippedKeys: number;
  /** Members that shared a key with the query but are no candidates (isCandidate): not read, not scored. */
  passedOver: number;
}

/** The candidates for the query (isCandidate, in blocking-keys.ts), in one statement. */
export async function findCandidates(q: Queryable, query: MatchQuery): Promise<BlockingResult> {
  const byHash = new Map(queryBlockingKeys(query).map((key) => [keyHash(key), keyKind(key)]));
  if (byHash.size === 0) return { candidates: [], keys: 0, skippedKeys: 0, passedOver: 0 };
  // A key's block is read through the index only as far as the size limit; a member's shared
  // kinds are counted before its record is read, so only candidates' records leave the database.
  const rows = await q.execute<{ patientId: string | null; record: string | null; keyVersion: number; skipped: number; passedOver: number }>(sql`
    WITH blocks AS (
      SELECT kind, ARRAY(SELECT k.patient_id FROM match_index_keys k WHERE k.key_hash = h::bigint LIMIT ${BLOCK_SIZE_LIMIT + 1}) AS ids
      FROM unnest(${textArray([...byHash.keys()])}, ${textArray([...byHash.values()])}) AS q(h, kind)
    ), shared AS (
      SELECT id, count(DISTINCT kind) >= 2 OR bool_or(kind = ANY (${textArray(DECISIVE_KINDS)})) AS candidate
      FROM blocks, unnest(ids) AS id WHERE cardinality(ids) <= ${BLOCK_SIZE_LIMIT} GROUP BY id
    )
    SELECT r.patient_id AS "patientId", r.record, r.key_version AS "keyVersion", 0 AS skipped, 0 AS "passedOver"
    FROM match_index_records r JOIN shared ON shared.id = r.patient_id AND shared.candidate
    UNION ALL
    SELECT NULL, NULL, 0, (SELECT count(*)::integer FROM blocks WHERE cardinality(ids) > ${BLOCK_SIZE_LIMIT}), (SELECT count(*)::integer FROM shared WHERE NOT candidate)`);
  const candidates = rows.filter((row) => row.record !== null).map((row) => storedCandidate(row.record as string, Number(row.keyVersion)));
  const totals = rows.find((row) => row.record === null);
  return { candidates, keys: byHash.size, skippedKeys: Number(totals?.skipped ?? 0), passedOver: Number(totals?.passedOver ?? 0) };
}

/** A stored record: a member filed before key version 3, and not yet re-indexed (index-upgrade.ts), holds its raw attributes. */
function storedCandidate(record: string, keyVersion: number): NormalizedCandidate {
  const parsed = JSON.parse(record) as NormalizedCandidate | CandidateRecord;
  return keyVersion < NORMALIZED_RECORDS ? normalizeCandidate(parsed as CandidateRecord) : (parsed as NormalizedCandidate);
}

const NORMALIZED_RECORDS = 3;

/** The shares of members bearing the query's names: all term-frequency scoring needs. */
export async function termFrequenciesFor(q: Queryable, query: MatchQuery): Promise<TermFrequencies> {
  const { families, givens } = nameValues(normalizeRecord(query).names);
  const rows = await q.execute<{ field: string; value: string; members: number }>(sql`
    SELECT field, value, members FROM match_term_counts
    WHERE (field = '*' AND value = '') OR (field = 'family' AND value = ANY (${textArray(families)})) OR (field = 'given' AND value = ANY (${textArray(givens)}))`);
  const total = Number(rows.find((row) => row.field === '*')?.members ?? 0);
  const shares = (field: string) => new Map(rows.filter((row) => row.field === field).map((row) => [row.value, Number(row.members) / Math.max(1, total)]));
  return { family: shares('family'), given: shares('given') };
}
