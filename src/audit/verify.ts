import type { KeyObject } from 'node:crypto';
import type { AuditEvent } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import { compactVerify, decodeProtectedHeader } from 'jose';
import type { Queryable } from '../db/connection.ts';
import { AUDIT_SIGNING_ALGORITHM, type AuditTrustedKeys, loadAuditTrustedKeys } from './audit-key.ts';
import { GENESIS_CHAIN_HASH, chainHash, contentHash } from './chain.ts';
import { ROW_DIGESTS, rowDigests } from './event-index.ts';
import { eventIndexEntry } from './event-keys.ts';
import { CHECKPOINT_TYPE, type CheckpointPayload } from './sealer.ts';

/**
 * Verification of the audit trail (issue 4): recomputes every content hash from audit_events
 * and the chain over positions, checks that each sealed event is still there, unchanged, and
 * indexed for search exactly as it reads (so no event is hidden from auditors' searches nor
 * found by a search it does not match), that no event lies below the sealed watermark without a
 * chain row (one inserted behind the sealer's back), and that every checkpoint carries a valid
 * signature of a trusted audit key over the chain hash at its position. It reads in pages of
 * positions, so the trail's size does not matter, and stops at the first position that does
 * not verify. Positions moved to archive files (src/audit/archive.ts) are verified from those
 * files; the trail in the database starts after the last archived segment, from the chain hash
 * its checkpoint signs.
 */

export interface VerifyRange {
  /** First position to check (default 1, and never below the end of the archived trail + 1); the chain hash at from - 1 is taken as given. */
  from?: number;
  /** Last position to check (default: the end of the chain). */
  to?: number;
}

export interface VerifyResult {
  verified: boolean;
  /** Positions checked and found valid. */
  checkedEvents: number;
  /** The last checkpoint found valid. */
  lastCheckpoint?: { position: number; time: string };
  firstInvalidPosition?: number;
  reason?: string;
}

export class VerifyRangeError extends Error {}

/** from and to as given on a command line or in a query string: positive integers, from ≤ to. */
export function parseVerifyRange(from: string | undefined, to: string | undefined): VerifyRange {
  const position = (text: string | undefined, name: string) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!/^[1-9][0-9]*$/.test(text) || !Number.isSafeInteger(n)) throw new VerifyRangeError(`${name} must be a positive integer (a chain position)`);
    return n;
  };
  const range = { from: position(from, 'from'), to: position(to, 'to') };
  if (range.from !== undefined && range.to !== undefined && range.from > range.to) throw new VerifyRangeError('from must not be greater than to');
  return range;
}

/** Positions per page. */
const PAGE = 1000;

/** A verified chain position: where the next one must follow from. */
interface Link {
  position: number;
  chainHash: string;
  /** The sealed event's (txid, seq); absent before position 1. */
  txid?: bigint;
  seq?: number;
}

interface Failure {
  position: number;
  reason: string;
}

interface PageRow {
  position: number;
  event_seq: number;
  event_txid: string;
  content_hash: string;
  chain_hash: string;
  /** The event as audit_events holds it now (null when it is gone). */
  seq: number | null;
  txid: string | null;
  event_id: string | null;
  recorded_ms: number | null;
  content: string | null;
  /** Its row in the search index (null when it is gone): event, instant and strings (JSON [code, value, exact] triples). */
  index_event_seq: number | null;
  index_event_id: string | null;
  index_recorded_ms: number | null;
  index_strings: string | null;
}

interface CheckpointRow {
  position: number;
  chain_hash: string;
  time_ms: number;
  jws: string;
}

export async function verifyAuditTrail(db: Queryable, options: VerifyRange & { auditKey?: KeyObject } = {}): Promise<VerifyResult> {
  const trusted = await loadAuditTrustedKeys(db, options.auditKey);
  const [{ end }] = await db.execute<{ end: number | null }>(sql`SELECT max(position)::float8 AS "end" FROM audit_chain`);
  const chainEnd = end ?? 0;
  const archived = await archivedEnd(db);
  const from = Math.max(options.from ?? 1, (archived?.position ?? 0) + 1);
  const to = Math.min(options.to ?? chainEnd, chainEnd);
  const checkpoints: CheckpointsMet = {};
  const failure = (from <= to ? await walkChain(db, trusted, from, to, checkpoints, archived) : undefined) ?? (await endOfChain(db, options.to, chainEnd));
  const lastCheckpoint = checkpoints.last ? { lastCheckpoint: checkpoints.last } : {};
  if (!failure) return { verified: true, checkedEvents: Math.max(0, to - from + 1), ...lastCheckpoint };
  return { verified: false, checkedEvents: Math.max(0, failure.position - from), ...lastCheckpoint, firstInvalidPosition: failure.position, reason: failure.reason };
}

interface CheckpointsMet {
  /** The last valid checkpoint met so far. */
  last?: { position: number; time: string };
}

/** Where the archived trail ends (src/audit/archive.ts): the last archive segment's end, its chain hash and sealed event. */
export async function archivedEnd(db: Queryable): Promise<Required<Link> | undefined> {
  const [segment] = await db.execute<{ position: number; chain_hash: string; txid: string; seq: number }>(sql`
    SELECT to_position::float8 AS position, chain_hash, last_event_txid::text AS txid, last_event_seq::float8 AS seq
    FROM audit_archive_segments ORDER BY to_position DESC LIMIT 1`);
  return segment && { position: segment.position, chainHash: segment.chain_hash, txid: BigInt(segment.txid), seq: segment.seq };
}

/**
 * The chain hash where the archived trail ends is taken from the segments table only as far as
 * the checkpoint kept at that position signs it.
 */
async function checkArchivedEnd(db: Queryable, trusted: AuditTrustedKeys, archived: Required<Link>, met: CheckpointsMet): Promise<Failure | undefined> {
  const [checkpoint] = await db.execute<CheckpointRow>(sql`
    SELECT position::float8 AS position, chain_hash, (extract(epoch FROM time) * 1000)::float8 AS time_ms, jws
    FROM audit_checkpoints WHERE position = ${archived.position}`);
  const problem = checkpoint
    ? await checkCheckpoint(checkpoint, trusted, archived.chainHash)
    : `the checkpoint at position ${archived.position}, where the archived trail ends, is missing`;
  if (typeof problem === 'string') return { position: archived.position, reason: problem };
  met.last = { position: archived.position, time: problem.time };
  return undefined;
}

/** Checks positions from..to page by page, up to the first failure. */
async function walkChain(
  db: Queryable,
  trusted: AuditTrustedKeys,
  from: number,
  to: number,
  met: CheckpointsMet,
  archived: Required<Link> | undefined,
): Promise<Failure | undefined> {
  let previous: Link = { position: 0, chainHash: GENESIS_CHAIN_HASH };
  if (archived && from === archived.position + 1) {
    const failure = await checkArchivedEnd(db, trusted, archived, met);
    if (failure) return failure;
    previous = archived;
  } else if (from > 1) {
    const [start] = await db.execute<{ chain_hash: string; event_txid: string; event_seq: number }>(
      sql`SELECT chain_hash, event_txid::text AS event_txid, event_seq::float8 AS event_seq FROM audit_chain WHERE position = ${from - 1}`,
    );
    if (!start) return { position: from - 1, reason: `chain position ${from - 1} is missing` };
    previous = { position: from - 1, chainHash: start.chain_hash, txid: BigInt(start.event_txid), seq: start.event_seq };
  }
  while (previous.position < to) {
    const rows = await readPage(db, previous.position, to);
    if (rows.length === 0) return { position: previous.position + 1, reason: `chain position ${previous.position + 1} is missing` };
    const wrongIndex = await indexMismatches(db, rows);
    let failure: Failure | undefined;
    let valid = previous;
    const chainHashes = new Map<number, string>();
    for (const row of rows) {
      failure = checkPosition(valid, row, wrongIndex);
      if (failure) break;
      valid = { position: row.position, chainHash: row.chain_hash, txid: BigInt(row.event_txid), seq: row.event_seq };
      chainHashes.set(row.position, row.chain_hash);
    }
    failure = earliest(failure, await findUnsealedEvent(db, previous, valid, rows));
    const checkpoints = await db.execute<CheckpointRow>(sql`
      SELECT position::float8 AS position, chain_hash, (extract(epoch FROM time) * 1000)::float8 AS time_ms, jws
      FROM audit_checkpoints WHERE position > ${previous.position} AND position <= ${valid.position} ORDER BY audit_checkpoints.position`);
    for (const checkpoint of checkpoints) {
      if (failure && checkpoint.position >= failure.position) break;
      const problem = await checkCheckpoint(checkpoint, trusted, chainHashes.get(checkpoint.position));
      if (typeof problem === 'string') {
        failure = { position: checkpoint.position, reason: problem };
        break;
      }
      met.last = { position: checkpoint.position, time: problem.time };
    }
    if (failure) return failure;
    previous = valid;
  }
  return undefined;
}

/** Chain rows removed from the end leave their checkpoints behind; checked when the range reaches the end. */
async function endOfChain(db: Queryable, to: number | undefined, chainEnd: number): Promise<Failure | undefined> {
  if (to !== undefined && to < chainEnd) return undefined;
  const [orphan] = await db.execute<{ position: number }>(sql`
    SELECT position::float8 AS position FROM audit_checkpoints cp
    WHERE position > ${chainEnd} AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.position = cp.position) ORDER BY cp.position LIMIT 1`);
  if (!orphan) return undefined;
  return { position: chainEnd + 1, reason: `a checkpoint signs position ${orphan.position} but the chain ends at position ${chainEnd}: chain rows were removed` };
}

/**
 * One page of chain rows with their events and index rows. Each lookup is a LATERAL
 * subquery on a primary key (LIMIT 1 keeps the planner from flattening it), so every row costs
 * index probes whatever the statistics say: on tables never analyzed (PGlite has no autovacuum)
 * plain joins were planned as a nested loop over all of resource_history, quadratic in the trail.
 */
function readPage(db: Queryable, after: number, to: number): Promise<PageRow[]> {
  return db.execute<PageRow>(sql`
    SELECT c.position::float8 AS position, c.event_seq::float8 AS event_seq, c.event_txid::text AS event_txid, c.content_hash, c.chain_hash,
      e.seq::float8 AS seq, e.txid::text AS txid, e.event_id, (extract(epoch FROM e.recorded) * 1000)::float8 AS recorded_ms, e.content,
      x.event_seq::float8 AS index_event_seq, x.event_id AS index_event_id, (extract(epoch FROM x.recorded) * 1000)::float8 AS index_recorded_ms,
      (SELECT json_agg(json_build_array(s.code, s.value, s.exact))::text FROM audit_index_strings s WHERE s.position = c.position) AS index_strings
    FROM audit_chain c
    LEFT JOIN LATERAL (SELECT seq, txid, event_id, recorded, content FROM audit_events WHERE seq = c.event_seq LIMIT 1) e ON TRUE
    LEFT JOIN LATERAL (SELECT event_seq, event_id, recorded, keys FROM audit_index WHERE position = c.position LIMIT 1) x ON TRUE
    WHERE c.position > ${after} AND c.position <= ${to}
    ORDER BY c.position LIMIT ${PAGE}`);
}

/** What is wrong with `row` as the position after `previous`, if anything. */
function checkPosition(previous: Link, row: PageRow, wrongIndex: ReadonlySet<number>): Failure | undefined {
  const position = previous.position + 1;
  const fail = (reason: string): Failure => ({ position, reason });
  if (row.position !== position) return fail(`chain position ${position} is missing`);
  if (previous.txid !== undefined && !follows(previous, BigInt(row.event_txid), row.event_seq)) {
    return fail(`chain position ${position} is out of sealing order (txid, seq)`);
  }
  const event = `the event sealed at position ${position} (seq ${row.event_seq})`;
  if (row.seq === null || row.content === null || row.event_id === null || row.recorded_ms === null) return fail(`${event} has been deleted`);
  if (row.txid !== row.event_txid) return fail(`${event} now carries another txid`);
  const content = parseJson(row.content);
  if (content === undefined || contentHash(content) !== row.content_hash) return fail(`${event} has changed since it was sealed`);
  if (chainHash(previous.chainHash, row.content_hash) !== row.chain_hash) return fail(`the chain hash at position ${position} does not follow from position ${position - 1}`);
  if (row.index_event_id === null) return fail(`the search index has lost the AuditEvent of position ${position}`);
  if (row.index_event_seq !== row.seq || row.index_event_id !== row.event_id || row.index_recorded_ms !== row.recorded_ms || wrongIndex.has(position)) {
    return fail(`the search index of position ${position} differs from the sealed event`);
  }
  return undefined;
}

/**
 * Positions of the page whose index does not hold exactly what its sealed event has: no more key
 * or string (found by a search it does not match), no fewer (hidden from one). Each event's entry
 * is computed once and its keys digested as the sealer digests them; strings are compared here.
 * Events that no longer parse are left to checkPosition.
 */
async function indexMismatches(db: Queryable, rows: PageRow[]): Promise<Set<number>> {
  const wrong = new Set<number>();
  const positions: string[] = [];
  const keys: string[] = [];
  for (const row of rows) {
    const content = row.content === null ? undefined : parseJson(row.content);
    if (!content || row.event_id === null) continue;
    const entry = eventIndexEntry({ ...content, id: row.event_id });
    positions.push(String(row.position));
    keys.push(rowDigests(entry.keys));
    const held = (JSON.parse(row.index_strings ?? '[]') as string[][]).map((s) => JSON.stringify(s)).sort();
    const wanted = entry.strings.map((s) => JSON.stringify([s.code, s.value, s.exact])).sort();
    if (held.length !== wanted.length || held.some((s, i) => s !== wanted[i])) wrong.add(row.position);
  }
  if (positions.length === 0) return wrong;
  const differing = await db.execute<{ position: number }>(sql`
    SELECT e.position::float8 AS position
    FROM (SELECT position::bigint AS position, ${ROW_DIGESTS} AS digests FROM unnest(${sql.param(positions)}::text[], ${sql.param(keys)}::text[]) AS e(position, keys)) e
    JOIN audit_index x ON x.position = e.position
    WHERE NOT (x.keys @> e.digests AND x.keys <@ e.digests)`);
  for (const { position } of differing) wrong.add(position);
  return wrong;
}

function follows(previous: Link, txid: bigint, seq: number): boolean {
  return txid > (previous.txid as bigint) || (txid === previous.txid && seq > (previous.seq as number));
}

/** Stored JSON text as an AuditEvent; undefined when it no longer parses (no seal can match it). */
function parseJson(content: string): AuditEvent | undefined {
  try {
    return JSON.parse(content) as AuditEvent;
  } catch {
    return undefined;
  }
}

/**
 * An event between two verified positions in (txid, seq) order that the chain does not hold: the
 * sealer cannot have passed it by (it seals in that order, only what no running transaction can
 * still precede), so it was inserted afterwards, e.g. with a forged txid. Counting first keeps
 * the usual case to one index range scan.
 */
async function findUnsealedEvent(db: Queryable, previous: Link, last: Link, rows: PageRow[]): Promise<Failure | undefined> {
  if (last.position === previous.position) return undefined;
  const lower = previous.txid === undefined ? sql`TRUE` : sql`(txid, seq) > (${String(previous.txid)}::xid8, ${previous.seq}::bigint)`;
  const range: SQL = sql`${lower} AND (txid, seq) <= (${String(last.txid)}::xid8, ${last.seq}::bigint)`;
  const [{ n }] = await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM audit_events WHERE ${range}`);
  if (n === last.position - previous.position) return undefined;
  const [unsealed] = await db.execute<{ seq: number; txid: string }>(sql`
    SELECT seq::float8 AS seq, txid::text AS txid FROM audit_events e
    WHERE ${range} AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_seq = e.seq AND c.position > ${previous.position} AND c.position <= ${last.position})
    ORDER BY e.txid, e.seq LIMIT 1`);
  if (!unsealed) return undefined;
  const txid = BigInt(unsealed.txid);
  const next = rows.find((row) => BigInt(row.event_txid) > txid || (BigInt(row.event_txid) === txid && row.event_seq > unsealed.seq)) as PageRow;
  return {
    position: next.position,
    reason: `event seq ${unsealed.seq} (txid ${unsealed.txid}) lies before position ${next.position} in sealing order but is not in the chain`,
  };
}

/** The checkpoint's signed payload when it verifies, else what is wrong with it. */
async function checkCheckpoint(checkpoint: CheckpointRow, trusted: AuditTrustedKeys, chainHashThere: string | undefined): Promise<CheckpointPayload | string> {
  const at = `the checkpoint at position ${checkpoint.position}`;
  const payload = await verifyCheckpointJws(checkpoint.jws, trusted, at);
  if (typeof payload === 'string') return payload;
  if (payload.position !== checkpoint.position || payload.chain_hash !== checkpoint.chain_hash || Date.parse(payload.time) !== Math.round(checkpoint.time_ms)) {
    return `${at} differs from what its signature covers`;
  }
  if (payload.chain_hash !== chainHashThere) return `the chain hash at position ${checkpoint.position} differs from the one its checkpoint signed`;
  return payload;
}

/**
 * What a checkpoint JWS signs, when it is typed as a checkpoint and signed by a trusted audit key;
 * else what is wrong with it (`at` names the checkpoint in the answer).
 */
export async function verifyCheckpointJws(jws: string, trusted: AuditTrustedKeys, at: string): Promise<CheckpointPayload | string> {
  let kid: unknown;
  let typ: unknown;
  try {
    ({ kid, typ } = decodeProtectedHeader(jws));
  } catch {
    return `${at} is not a JWS`;
  }
  const key = typeof kid === 'string' ? trusted.get(kid) : undefined;
  if (!key) return `${at} is signed by a key that is not a trusted audit key`;
  if (typ !== CHECKPOINT_TYPE) return `${at} is not typed as an audit checkpoint`;
  try {
    return JSON.parse(new TextDecoder().decode((await compactVerify(jws, key, { algorithms: [AUDIT_SIGNING_ALGORITHM] })).payload)) as CheckpointPayload;
  } catch {
    return `the signature of ${at} does not verify`;
  }
}

function earliest(a: Failure | undefined, b: Failure | undefined): Failure | undefined {
  if (!a || !b) return a ?? b;
  return b.position < a.position ? b : a;
}
