import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { basename } from 'node:path';
import { sql } from 'drizzle-orm';
import type { AuditConfig, AuditRetentionConfig } from '../config.ts';
import type { Database, Queryable } from '../db/connection.ts';
import type { Logger } from '../logger.ts';
import { type ArchiveLine, type ArchiveManifest, archiveFiles, syncDirectory, verifyArchive, writeFileDurably } from './archive-file.ts';
import { type AuditTrustedKeys, loadAuditTrustedKeys } from './audit-key.ts';
import { runInBackground } from '../background.ts';
import { GENESIS_CHAIN_HASH } from './chain.ts';
import { archivedEnd } from './verify.ts';

/**
 * Retention of the audit trail (issue 4: expired events are archived with their checkpoints,
 * never silently dropped). Only whole checkpointed segments leave the database: from the end of
 * the last archived segment up to the newest checkpoint that, like every event it covers, is
 * older than the retention period. The segment is written to files (archive-file.ts), made
 * durable, read back and verified against the signed checkpoint; only then are its rows deleted,
 * in one transaction that records the segment in audit_archive_segments, the only way the
 * append-only triggers let a row go (migrations/0011_audit_archive_bypass.sql). Checkpoints stay,
 * so the trail left in the database verifies from the archived end on. The chain head is never
 * archived: the sealer continues the chain from it.
 */

export interface ArchiverDeps {
  db: Database;
  audit: Pick<AuditConfig, 'key'>;
  retention: AuditRetentionConfig;
}

export interface ArchivedSegment {
  from: number;
  to: number;
  events: number;
  /** The NDJSON, checkpoint and manifest files written. */
  files: string[];
}

export interface ArchiveRun {
  segments: ArchivedSegment[];
  events: number;
  files: string[];
}

/** The trail cannot be archived as it stands (it does not verify); nothing was deleted. */
export class AuditArchiveError extends Error {}

const DAY_MS = 86_400_000;
/** Positions per segment at most, unless the next checkpoint lies further: bounds the deleting transaction. */
const MAX_SEGMENT = 100_000;
/** Positions read per query while writing a segment. */
const PAGE = 1000;
/** Archivers of all processes sharing the database take turns deleting. */
const ARCHIVER_LOCK = sql`hashtext('baton.audit_archiver')`;

/** Archives every segment past retention, one after the other, until none is left or `shouldStop` says so. */
export async function archiveExpiredAudit(deps: ArchiverDeps, options: { now?: number; shouldStop?: () => boolean } = {}): Promise<ArchiveRun> {
  const cutoff = new Date((options.now ?? Date.now()) - deps.retention.days * DAY_MS).toISOString();
  const run: ArchiveRun = { segments: [], events: 0, files: [] };
  let trusted: AuditTrustedKeys | undefined;
  while (!options.shouldStop?.()) {
    const plan = await planSegment(deps.db, cutoff);
    if (!plan) break;
    trusted ??= await loadAuditTrustedKeys(deps.db, deps.audit.key);
    const segment = await archiveSegment(deps, trusted, plan);
    if (!segment) break;
    run.segments.push(segment);
    run.events += segment.events;
    run.files.push(...segment.files);
  }
  return run;
}

/** The segment to archive next, if one is past retention. */
interface SegmentPlan {
  from: number;
  to: number;
  previousChainHash: string;
  checkpoint: { chainHash: string; jws: string; time: string };
}

async function planSegment(db: Queryable, cutoff: string): Promise<SegmentPlan | undefined> {
  const archived = await archivedEnd(db);
  const after = archived?.position ?? 0;
  // The cheap check: nothing to do unless the first checkpoint after the archived end has expired.
  const [first] = await db.execute<{ position: number; expired: boolean }>(sql`
    SELECT position::float8 AS position, time < ${cutoff}::timestamptz AS expired FROM audit_checkpoints
    WHERE position > ${after} ORDER BY audit_checkpoints.position LIMIT 1`);
  if (!first?.expired) return undefined;
  const [{ head }] = await db.execute<{ head: number | null }>(sql`SELECT max(position)::float8 AS head FROM audit_chain`);
  const limit = Math.max(first.position, after + MAX_SEGMENT);
  let checkpoint = await newestExpiredCheckpoint(db, after, Math.min(limit, (head ?? 0) - 1), cutoff);
  if (!checkpoint) return undefined;
  // An event recorded after the cutoff (a clock ahead, say) keeps the segment below it.
  const [young] = await db.execute<{ position: number }>(sql`
    SELECT c.position::float8 AS position FROM audit_chain c
    CROSS JOIN LATERAL (SELECT recorded FROM audit_events WHERE seq = c.event_seq LIMIT 1) e
    WHERE c.position > ${after} AND c.position <= ${checkpoint.position} AND e.recorded >= ${cutoff}::timestamptz
    ORDER BY c.position LIMIT 1`);
  if (young) checkpoint = await newestExpiredCheckpoint(db, after, young.position - 1, cutoff);
  if (!checkpoint) return undefined;
  return {
    from: after + 1,
    to: checkpoint.position,
    previousChainHash: archived?.chainHash ?? GENESIS_CHAIN_HASH,
    checkpoint: { chainHash: checkpoint.chain_hash, jws: checkpoint.jws, time: new Date(checkpoint.time_ms).toISOString() },
  };
}

interface CheckpointRow {
  position: number;
  chain_hash: string;
  jws: string;
  time_ms: number;
}

async function newestExpiredCheckpoint(db: Queryable, after: number, upTo: number, cutoff: string): Promise<CheckpointRow | undefined> {
  const [checkpoint] = await db.execute<CheckpointRow>(sql`
    SELECT position::float8 AS position, chain_hash, jws, (extract(epoch FROM time) * 1000)::float8 AS time_ms FROM audit_checkpoints
    WHERE position > ${after} AND position <= ${upTo} AND time < ${cutoff}::timestamptz
    ORDER BY audit_checkpoints.position DESC LIMIT 1`);
  return checkpoint;
}

/** Writes, verifies and then deletes one segment; undefined when another archiver took it first. */
async function archiveSegment(deps: ArchiverDeps, trusted: AuditTrustedKeys, plan: SegmentPlan): Promise<ArchivedSegment | undefined> {
  const dir = deps.retention.archiveDir;
  await mkdir(dir, { recursive: true });
  const files = archiveFiles(dir, plan.from, plan.to);
  const written = await writeEvents(deps.db, files.ndjson, plan);
  await writeFileDurably(files.checkpoint, (file) => file.appendFile(plan.checkpoint.jws));
  const manifest: ArchiveManifest = {
    from: plan.from,
    to: plan.to,
    previous_chain_hash: plan.previousChainHash,
    chain_hash: plan.checkpoint.chainHash,
    events: plan.to - plan.from + 1,
    ndjson: { file: basename(files.ndjson), bytes: written.bytes, sha256: written.sha256 },
    checkpoint: { file: basename(files.checkpoint), position: plan.to, time: plan.checkpoint.time },
  };
  await writeFileDurably(files.manifest, (file) => file.appendFile(`${JSON.stringify(manifest, null, 2)}\n`));
  await syncDirectory(dir);

  // What is deleted must be readable from the disk first, not from a write cache's promise.
  const check = await verifyArchive(files.ndjson, trusted);
  if (!check.verified) {
    // Files that do not verify are no archive; the rows stay, and verifying the trail shows why.
    await Promise.all(Object.values(files).map((path) => rm(path, { force: true })));
    throw new AuditArchiveError(`the archive of positions ${plan.from}-${plan.to} does not verify at position ${check.firstInvalidPosition}: ${check.reason}; nothing was deleted`);
  }
  const deleted = await deleteArchived(deps.db, plan, written, basename(files.ndjson));
  if (!deleted) return undefined;
  return { from: plan.from, to: plan.to, events: manifest.events, files: [files.ndjson, files.checkpoint, files.manifest] };
}

interface WrittenEvents {
  sha256: string;
  bytes: number;
  /** The (txid, seq) sealed at the segment's last position. */
  lastTxid: string;
  lastSeq: number;
}

interface EventRow {
  position: number;
  event_seq: number;
  event_txid: string;
  content_hash: string;
  chain_hash: string;
  content: string | null;
}

/** The segment's positions as NDJSON lines, page by page, with the hashes the chain holds (verification recomputes them). */
async function writeEvents(db: Queryable, path: string, plan: SegmentPlan): Promise<WrittenEvents> {
  const hash = createHash('sha256');
  let bytes = 0;
  let last: EventRow | undefined;
  await writeFileDurably(path, async (file) => {
    for (let after = plan.from - 1; after < plan.to; ) {
      const rows = await db.execute<EventRow>(sql`
        SELECT c.position::float8 AS position, c.event_seq::float8 AS event_seq, c.event_txid::text AS event_txid, c.content_hash, c.chain_hash, e.content
        FROM audit_chain c LEFT JOIN LATERAL (SELECT content FROM audit_events WHERE seq = c.event_seq LIMIT 1) e ON TRUE
        WHERE c.position > ${after} AND c.position <= ${plan.to} ORDER BY c.position LIMIT ${PAGE}`);
      let text = '';
      for (const row of rows) {
        if (row.position !== after + 1) throw new AuditArchiveError(`chain position ${after + 1} is missing; nothing was deleted`);
        const line: ArchiveLine = { position: row.position, event_seq: row.event_seq, content_hash: row.content_hash, chain_hash: row.chain_hash, event: parseEvent(row) };
        text += `${JSON.stringify(line)}\n`;
        after = row.position;
        last = row;
      }
      if (rows.length === 0) throw new AuditArchiveError(`chain position ${after + 1} is missing; nothing was deleted`);
      hash.update(text);
      bytes += Buffer.byteLength(text);
      await file.appendFile(text);
    }
  });
  const { event_txid, event_seq } = last as EventRow;
  return { sha256: hash.digest('hex'), bytes, lastTxid: event_txid, lastSeq: event_seq };
}

function parseEvent(row: EventRow): ArchiveLine['event'] {
  if (row.content === null) throw new AuditArchiveError(`the event sealed at position ${row.position} has been deleted; nothing was deleted`);
  try {
    return JSON.parse(row.content) as ArchiveLine['event'];
  } catch {
    throw new AuditArchiveError(`the event sealed at position ${row.position} is no longer JSON; nothing was deleted`);
  }
}

/**
 * Records the segment and deletes its rows from the trail and its search index,
 * all or nothing. False when another archiver recorded the segment meanwhile.
 */
async function deleteArchived(db: Database, plan: SegmentPlan, written: WrittenEvents, file: string): Promise<boolean> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${ARCHIVER_LOCK})`);
    if (((await archivedEnd(tx))?.position ?? 0) !== plan.from - 1) return false;
    await tx.execute(sql`SELECT set_config('baton.audit_archiving', 'on', true)`);
    await tx.execute(sql`
      INSERT INTO audit_archive_segments (to_position, from_position, previous_chain_hash, chain_hash, last_event_txid, last_event_seq, file, sha256)
      VALUES (${plan.to}, ${plan.from}, ${plan.previousChainHash}, ${plan.checkpoint.chainHash}, ${written.lastTxid}::xid8, ${written.lastSeq}, ${file}, ${written.sha256})`);
    const events = await tx.execute<{ seq: string }>(sql`
      SELECT e.seq::text AS seq FROM audit_chain c
      CROSS JOIN LATERAL (SELECT seq FROM audit_events WHERE seq = c.event_seq LIMIT 1) e
      WHERE c.position BETWEEN ${plan.from} AND ${plan.to}`);
    const expected = plan.to - plan.from + 1;
    if (events.length !== expected) throw new AuditArchiveError(`positions ${plan.from}-${plan.to} hold ${events.length} events instead of ${expected}; nothing was deleted`);
    await tx.execute(sql`DELETE FROM audit_index_strings WHERE position BETWEEN ${plan.from} AND ${plan.to}`);
    await tx.execute(sql`DELETE FROM audit_index WHERE position BETWEEN ${plan.from} AND ${plan.to}`);
    await tx.execute(sql`DELETE FROM audit_events WHERE seq = ANY(${sql.param(events.map((e) => e.seq))}::bigint[])`);
    await tx.execute(sql`DELETE FROM audit_chain WHERE position BETWEEN ${plan.from} AND ${plan.to}`);
    return true;
  });
}

const CHECK_EVERY_MS = 3_600_000;
/** Under a day, so that a daily rhythm does not drift later by the check interval. */
const ARCHIVE_EVERY_MS = 23 * 3_600_000;

/** The server's daily run: archives unless a segment was archived (by any process) in the last 23 hours; undefined when it was. */
export async function archiveWhenDue(deps: ArchiverDeps, options: { shouldStop?: () => boolean } = {}): Promise<ArchiveRun | undefined> {
  const [{ recent }] = await deps.db.execute<{ recent: boolean }>(sql`
    SELECT EXISTS (SELECT 1 FROM audit_archive_segments WHERE archived_at > now() - make_interval(secs => ${ARCHIVE_EVERY_MS / 1000})) AS recent`);
  return recent ? undefined : archiveExpiredAudit(deps, options);
}

/**
 * Archives in the background: archiveWhenDue at start and every hour, so segments come about a
 * day apart. A failing run is logged (our own reason, or the error class and code: never event
 * content) and retried at the next check; stop() waits for the run in flight, which stops
 * between segments.
 */
export function startAuditArchiver(deps: ArchiverDeps, logger: Logger): { stop(): Promise<void> } {
  return runInBackground(
    async (stopping) => {
      const run = await archiveWhenDue(deps, { shouldStop: stopping });
      for (const segment of run?.segments ?? []) logger.info({ from: segment.from, to: segment.to, events: segment.events, file: basename(segment.files[0]) }, 'audit trail segment archived');
    },
    CHECK_EVERY_MS,
    {
      logger,
      what: 'audit archiving',
      describe: (error) => (error instanceof AuditArchiveError ? { reason: error.message } : undefined),
    },
  );
}
