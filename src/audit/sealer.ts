import type { AuditEvent } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import { CompactSign } from 'jose';
import type { AuditConfig } from '../config.ts';
import type { Database, Queryable } from '../db/connection.ts';
import type { Logger } from '../logger.ts';
import { AUDIT_SIGNING_ALGORITHM, type AuditSigningKey, loadAuditSigningKey } from './audit-key.ts';
import { runInBackground } from '../background.ts';
import { GENESIS_CHAIN_HASH, chainHash, contentHash } from './chain.ts';
import { indexUnindexedPositions, insertIndexRows } from './event-index.ts';
import { eventIndexEntry } from './event-keys.ts';

/**
 * The single sealer of the audit trail (issue 4): it appends audit_events to the hash chain in
 * (txid, seq) order, indexes each sealed AuditEvent for auditors' FHIR search (event-index.ts)
 * and signs checkpoints. Events are taken only from transactions older than the
 * oldest one still running: those have all committed or aborted, so no event can later appear
 * below what was sealed, and the order is gap-free without a global lock on the write path.
 */

export interface SealerDeps {
  db: Database;
  audit: AuditConfig;
}

/** The JOSE header `typ` of a checkpoint, so the audit key's signature on anything else never passes for one. */
export const CHECKPOINT_TYPE = 'baton-audit-checkpoint+jws';

/** What a checkpoint signs. */
export interface CheckpointPayload {
  position: number;
  /** Hex chain hash at `position`. */
  chain_hash: string;
  /** ISO instant the checkpoint was made. */
  time: string;
}

/** Waits for the sealers' lock, held until the transaction ends. */
async function takeSealerLock(tx: Queryable): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(${SEALER_LOCK})`);
}

/** Events sealed per transaction at most. */
const BATCH = 1000;
/** Sealers across all processes sharing the database take turns on this lock. */
const SEALER_LOCK = sql`hashtext('baton.audit_sealer')`;
const PASS_INTERVAL_MS = 250;

/**
 * The transaction id below which every transaction that could still add to audit_events has
 * ended: the oldest transaction in progress, not counting those running in other databases of
 * the server (they cannot write this database's audit_events), else the snapshot's xmax. A
 * transaction of another database that ended between the snapshot and the look at
 * pg_stat_activity still counts, which only delays sealing by one pass. Without that exclusion,
 * one long transaction anywhere on the server would hold sealing back.
 */
const SEALING_HORIZON = sql`(SELECT coalesce(
    (SELECT min(x) FROM pg_snapshot_xip(s.snap) AS x WHERE (x::text::bigint % 4294967296) NOT IN (
      SELECT a.backend_xid::text::bigint FROM pg_stat_activity a WHERE a.backend_xid IS NOT NULL AND a.datname IS DISTINCT FROM current_database())),
    pg_snapshot_xmax(s.snap))
  FROM (SELECT pg_current_snapshot() AS snap) s)`;

/** Seals until nothing is pending (waiting for a sealer of another process to finish its pass). */
export async function sealPending(deps: SealerDeps): Promise<{ sealed: number }> {
  const key = await loadAuditSigningKey(deps.db, deps.audit.key);
  await indexUnindexedPositions(deps.db, takeSealerLock);
  let sealed = 0;
  for (;;) {
    const pass = await sealAuditBatch(deps.db, key, deps.audit, 'wait');
    sealed += pass.sealed;
    if (pass.sealed < BATCH) return { sealed };
  }
}

/**
 * Seals every ~250 ms in the background. A failing pass is logged by error class and SQLSTATE
 * only (a driver's message may quote AuditEvent content) and retried at the next tick; stop()
 * waits for the pass in flight.
 */
export function startAuditSealer(deps: SealerDeps, logger: Logger): { stop(): Promise<void> } {
  let key: Promise<AuditSigningKey> | undefined;

  const signingKey = (): Promise<AuditSigningKey> => {
    key ??= loadAuditSigningKey(deps.db, deps.audit.key).then(
      (loaded) => {
        if (loaded.source === 'database') {
          logger.warn({ kid: loaded.kid }, 'audit checkpoints are signed with a key kept in the database: they do not protect the trail against someone who can write the database; set BATON_AUDIT_KEY');
        }
        return loaded;
      },
      (error: unknown) => {
        key = undefined;
        throw error;
      },
    );
    return key;
  };

  let indexed = false;
  return runInBackground(
    async (stopping) => {
      if (!indexed) {
        await indexUnindexedPositions(deps.db, takeSealerLock);
        indexed = true;
      }
      const signing = await signingKey();
      // A backlog is sealed batch after batch, each in a transaction of its own.
      let sealed: number;
      do {
        ({ sealed } = await sealAuditBatch(deps.db, signing, deps.audit, 'skip-if-busy'));
      } while (!stopping() && sealed === BATCH);
    },
    PASS_INTERVAL_MS,
    { logger, what: 'audit sealing pass' },
  );
}

interface ChainHead {
  position: number;
  chain_hash: string;
  event_txid: string;
  event_seq: number;
}

interface PendingEvent {
  seq: number;
  txid: string;
  event_id: string;
  recorded_ms: number;
  content: string;
}

/**
 * One pass in one transaction: the next batch of events after the chain head, their chain rows,
 * their search index rows and the checkpoints due. 'skip-if-busy' returns at once when another
 * sealer holds the lock; 'wait' waits for it.
 */
export async function sealAuditBatch(
  db: Database,
  key: AuditSigningKey,
  policy: Pick<AuditConfig, 'checkpointEvery' | 'checkpointSeconds'>,
  whenBusy: 'wait' | 'skip-if-busy',
): Promise<{ sealed: number }> {
  return db.transaction(async (tx) => {
    if (whenBusy === 'wait') {
      await takeSealerLock(tx);
    } else {
      const [lock] = await tx.execute<{ locked: boolean }>(sql`SELECT pg_try_advisory_xact_lock(${SEALER_LOCK}) AS locked`);
      if (!lock.locked) return { sealed: 0 };
    }
    const head = await chainHead(tx);
    const events = await tx.execute<PendingEvent>(sql`
      SELECT seq::float8 AS seq, txid::text AS txid, event_id, (extract(epoch FROM recorded) * 1000)::float8 AS recorded_ms, content
      FROM audit_events
      WHERE ${afterWatermark(head)} txid < ${SEALING_HORIZON}
      -- The columns, not the text aliases of the select list: as text, txid 10000 sorts before 9999.
      ORDER BY audit_events.txid, audit_events.seq LIMIT ${BATCH}`);
    const digested = await inSlices(events, (event) => {
      const parsed = JSON.parse(event.content) as AuditEvent;
      return { hash: contentHash(parsed), entry: eventIndexEntry({ ...parsed, id: event.event_id }) };
    });
    const rows = chainRows(head, events, digested.map((d) => d.hash));
    if (rows.length > 0) {
      await insertChainRows(tx, rows);
      await insertIndexRows(
        tx,
        events.map((event, i) => ({ position: rows[i].position, eventSeq: event.seq, eventId: event.event_id, recorded: new Date(event.recorded_ms).toISOString(), ...digested[i].entry })),
      );
    }
    await writeCheckpoints(tx, key, policy, head, rows);
    return { sealed: rows.length };
  });
}

/**
 * How far sealing is behind: the events recorded but not yet chained (the first `cap` of them in
 * sealing order), and the age in seconds of the oldest of those (0 when none waits).
 */
export async function sealingLag(q: Queryable, cap = 10_000): Promise<{ events: number; seconds: number }> {
  const head = await chainHead(q);
  // In sealing order, which the (txid, seq) index walks: without it the planner, with a LIMIT, may scan the table.
  const [lag] = await q.execute<{ events: number; seconds: number }>(sql`
    WITH pending AS MATERIALIZED (
      SELECT recorded FROM audit_events WHERE ${afterWatermark(head)} true
      ORDER BY audit_events.txid, audit_events.seq LIMIT ${cap})
    SELECT count(*)::int AS events, coalesce(extract(epoch FROM now() - min(recorded)), 0)::float8 AS seconds FROM pending`);
  return { events: lag.events, seconds: Math.max(0, lag.seconds) };
}

/** The chain's last position, undefined on an empty chain. */
async function chainHead(q: Queryable): Promise<ChainHead | undefined> {
  // ORDER BY names the column: a bare `position` is the float8 alias, which no index orders
  // (a sort of the whole chain on every pass: 1.2-2.4 s at 10M events).
  const [head] = await q.execute<ChainHead>(
    sql`SELECT position::float8 AS position, chain_hash, event_txid::text AS event_txid, event_seq::float8 AS event_seq FROM audit_chain ORDER BY audit_chain.position DESC LIMIT 1`,
  );
  return head;
}

interface ChainRow {
  position: number;
  eventSeq: number;
  eventTxid: string;
  contentHash: string;
  chainHash: string;
}

/** Events hashed and their keys extracted between two turns of the event loop. */
const SLICE = 50;

/**
 * `each` over `items`, letting requests run between slices: a batch's hashing and key
 * extraction (~0.3 ms per event) run on the process that serves requests, and in one block
 * they held every response up to 300 ms (reads' p99 was ~200 ms against a p50 of 13).
 */
async function inSlices<T, R>(items: readonly T[], each: (item: T) => R): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += SLICE) {
    if (i > 0) await new Promise((resolve) => setImmediate(resolve));
    for (const item of items.slice(i, i + SLICE)) results.push(each(item));
  }
  return results;
}

function chainRows(head: ChainHead | undefined, events: PendingEvent[], hashes: string[]): ChainRow[] {
  let position = head?.position ?? 0;
  let previous = head?.chain_hash ?? GENESIS_CHAIN_HASH;
  return events.map((event, i) => {
    const hash = hashes[i];
    previous = chainHash(previous, hash);
    return { position: ++position, eventSeq: event.seq, eventTxid: event.txid, contentHash: hash, chainHash: previous };
  });
}

/** (txid, seq) past the chain head's event; nothing on an empty chain. */
function afterWatermark(head: ChainHead | undefined): SQL {
  return head ? sql`(txid, seq) > (${head.event_txid}::xid8, ${head.event_seq}::bigint) AND` : sql``;
}

async function insertChainRows(q: Queryable, rows: ChainRow[]): Promise<void> {
  const column = (values: (string | number)[]) => sql`${sql.param(values.map(String))}::text[]`;
  await q.execute(sql`
    INSERT INTO audit_chain (position, event_seq, event_txid, content_hash, chain_hash)
    SELECT position::bigint, event_seq::bigint, event_txid::xid8, content_hash, chain_hash
    FROM unnest(${column(rows.map((r) => r.position))}, ${column(rows.map((r) => r.eventSeq))}, ${column(rows.map((r) => r.eventTxid))},
      ${column(rows.map((r) => r.contentHash))}, ${column(rows.map((r) => r.chainHash))}) AS r(position, event_seq, event_txid, content_hash, chain_hash)`);
}

/**
 * A checkpoint every `checkpointEvery` positions, and one at the head once `checkpointSeconds`
 * have passed since the last checkpoint with positions sealed after it.
 */
async function writeCheckpoints(
  q: Queryable,
  key: AuditSigningKey,
  policy: Pick<AuditConfig, 'checkpointEvery' | 'checkpointSeconds'>,
  head: ChainHead | undefined,
  rows: ChainRow[],
): Promise<void> {
  const [last] = await q.execute<{ position: number; time_ms: number }>(
    sql`SELECT position::float8 AS position, (extract(epoch FROM time) * 1000)::float8 AS time_ms FROM audit_checkpoints ORDER BY audit_checkpoints.position DESC LIMIT 1`,
  );
  const now = Date.now();
  const due: { position: number; chain_hash: string }[] = [];
  // After a change of checkpointEvery the next count-based checkpoint is among the rows at hand.
  for (const row of rows) {
    const since = due.at(-1)?.position ?? last?.position ?? 0;
    if (row.position - since >= policy.checkpointEvery) due.push({ position: row.position, chain_hash: row.chainHash });
  }
  const newest = rows.at(-1);
  const tip = newest ? { position: newest.position, chain_hash: newest.chainHash } : head;
  const lastTime = due.length > 0 ? now : (last?.time_ms ?? Number.NEGATIVE_INFINITY);
  const lastPosition = due.at(-1)?.position ?? last?.position ?? 0;
  if (tip && tip.position > lastPosition && now - lastTime >= policy.checkpointSeconds * 1000) due.push({ position: tip.position, chain_hash: tip.chain_hash });
  if (due.length === 0) return;

  const time = new Date(now).toISOString();
  const signed = await Promise.all(due.map((checkpoint) => signCheckpoint(key, { ...checkpoint, time })));
  const column = (values: string[]) => sql`${sql.param(values)}::text[]`;
  await q.execute(sql`
    INSERT INTO audit_checkpoints (position, chain_hash, time, jws)
    SELECT position::bigint, chain_hash, ${time}::timestamptz, jws
    FROM unnest(${column(due.map((c) => String(c.position)))}, ${column(due.map((c) => c.chain_hash))}, ${column(signed)}) AS c(position, chain_hash, jws)`);
}

async function signCheckpoint(key: AuditSigningKey, payload: CheckpointPayload): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: AUDIT_SIGNING_ALGORITHM, kid: key.kid, typ: CHECKPOINT_TYPE })
    .sign(key.privateKey);
}
