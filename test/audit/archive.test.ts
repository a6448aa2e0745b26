import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { AuditEvent } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type ArchiverDeps, AuditArchiveError, archiveExpiredAudit, archiveWhenDue, startAuditArchiver } from '../../src/audit/archive.ts';
import { type ArchiveManifest, archiveFiles, verifyArchive } from '../../src/audit/archive-file.ts';
import { loadAuditTrustedKeys } from '../../src/audit/audit-key.ts';
import { GENESIS_CHAIN_HASH } from '../../src/audit/chain.ts';
import { sealPending } from '../../src/audit/sealer.ts';
import { type AuditConfig, loadConfig } from '../../src/config.ts';
import { verifyAuditTrail } from '../../src/audit/verify.ts';
import { type Database, connectDatabase } from '../../src/db/connection.ts';
import { migrateDatabase } from '../../src/db/migrate.ts';
import { AUDIT_APPEND_ONLY_SQLSTATE } from '../../src/fhir/database-errors.ts';
import { createLogger } from '../../src/logger.ts';
import { type TestBaton, body, freshDatabase, startBaton } from '../support/baton.ts';
import { AUDIT, auditEvent, recordEvents } from './sealed-trail.ts';

/** The SQLSTATE with which the archive segments table refuses a segment that is not the next piece of the chain. */
const SEGMENT_REFUSED = 'ZA002';
const DAY = 86_400_000;
const ROLLBACK = new Error('rollback');

/** Events recorded in 2019, far past any retention. */
function oldEvent(i: number): AuditEvent & { id: string } {
  return { ...auditEvent(`member-${i % 3}`), recorded: new Date(Date.UTC(2019, 0, 1, 0, i)).toISOString() };
}

/**
 * Seals everything recorded so far. On a PostgreSQL server shared with other work, a transaction
 * of theirs older than ours holds the sealer back (it seals only below the oldest one running).
 */
async function sealAll(db: Database, audit: AuditConfig = AUDIT): Promise<void> {
  const unsealed = sql`SELECT 1 FROM audit_events e WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_seq = e.seq)`;
  await vi.waitFor(
    async () => {
      await sealPending({ db, audit });
      expect(await countWhere(db, unsealed)).toBe(0);
    },
    { timeout: 30_000, interval: 50 },
  );
}

/** The messages of an error and its causes (drizzle wraps the driver's error). */
function errorText(error: unknown): string {
  const messages: string[] = [];
  for (let e = error as { message?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) messages.push(String(e.message));
  return messages.join(' / ');
}

/** The SQLSTATE of a driver error (drizzle wraps it). */
function sqlStateOf(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) if (typeof e.code === 'string') return e.code;
  return undefined;
}

/** Runs the statements in one transaction that is always rolled back; the SQLSTATE of the first that fails, or undefined. */
async function failureOf(db: Database, ...statements: SQL[]): Promise<string | undefined> {
  let failure: string | undefined;
  await db
    .transaction(async (tx) => {
      for (const statement of statements) await tx.execute(statement);
      throw ROLLBACK;
    })
    .catch((error: unknown) => {
      if (error !== ROLLBACK) failure = sqlStateOf(error) ?? String(error);
    });
  return failure;
}

const ARCHIVING_ON = sql`SELECT set_config('baton.audit_archiving', 'on', true)`;

/** A segment from..to as the archiver records it, its hashes and event taken from the chain. */
function insertSegment(from: number, to: number, chainHashAt = to): SQL {
  return sql`
    INSERT INTO audit_archive_segments (to_position, from_position, previous_chain_hash, chain_hash, last_event_txid, last_event_seq, file, sha256)
    SELECT ${to}, ${from}, coalesce((SELECT chain_hash FROM audit_archive_segments ORDER BY to_position DESC LIMIT 1), ${GENESIS_CHAIN_HASH}),
      (SELECT chain_hash FROM audit_chain WHERE position = ${chainHashAt}), c.event_txid, c.event_seq, 'audit-x.ndjson', ${'0'.repeat(64)}
    FROM audit_chain c WHERE c.position = ${to}`;
}

async function countWhere(db: Database, query: SQL): Promise<number> {
  const [row] = await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM (${query}) q`);
  return row.n;
}

/** How many rows of these events each table holds. */
async function rowsOf(db: Database, ids: string[]): Promise<Record<string, number>> {
  const list = sql`${sql.param(ids)}::text[]`;
  const seqs = sql`SELECT seq FROM audit_events WHERE event_id = ANY(${list})`;
  return {
    audit_events: await countWhere(db, seqs),
    audit_chain: await countWhere(db, sql`SELECT 1 FROM audit_chain WHERE event_seq IN (${seqs})`),
    audit_index: await countWhere(db, sql`SELECT 1 FROM audit_index WHERE event_id = ANY(${list})`),
    audit_index_strings: await countWhere(db, sql`SELECT 1 FROM audit_index_strings WHERE position IN (SELECT position FROM audit_index WHERE event_id = ANY(${list}))`),
    orphan_strings: await countWhere(db, sql`SELECT 1 FROM audit_index_strings s WHERE NOT EXISTS (SELECT 1 FROM audit_index x WHERE x.position = s.position)`),
  };
}

const none = { audit_events: 0, audit_chain: 0, audit_index: 0, audit_index_strings: 0, orphan_strings: 0 };

async function chainHashAt(db: Database, table: 'audit_chain' | 'audit_checkpoints', position: number): Promise<string> {
  const [row] = await db.execute<{ chain_hash: string }>(sql`SELECT chain_hash FROM ${sql.identifier(table)} WHERE position = ${position}`);
  return row.chain_hash;
}

async function head(db: Database): Promise<number> {
  const [row] = await db.execute<{ head: number }>(sql`SELECT max(position)::int AS head FROM audit_chain`);
  return row.head;
}

describe('retention configuration', () => {
  it('keeps six years by default and archives under BATON_DATA_DIR, and rejects what is not a number of days', () => {
    expect(loadConfig({ BATON_DATA_DIR: '/var/baton' }).auditRetention).toEqual({ days: 2192, archiveDir: '/var/baton/audit-archive' });
    expect(loadConfig({ BATON_AUDIT_RETENTION_DAYS: '30', BATON_AUDIT_ARCHIVE_DIR: '/mnt/audit' }).auditRetention).toEqual({ days: 30, archiveDir: '/mnt/audit' });
    for (const days of ['-1', '1.5', 'six years', '40000']) expect(() => loadConfig({ BATON_AUDIT_RETENTION_DAYS: days })).toThrow(/BATON_AUDIT_RETENTION_DAYS must be an integer/);
  });
});

describe('archiving the audit trail past retention', () => {
  /** Positions 1..25 in this order; position 15 was recorded a month ahead (a clock running fast). */
  const events = Array.from({ length: 25 }, (_, i) => (i === 14 ? { ...oldEvent(i), recorded: new Date(Date.now() + 30 * DAY).toISOString() } : oldEvent(i)));
  const ids = events.map((e) => e.id);
  let baton: TestBaton;
  let dir: string;
  let deps: ArchiverDeps;

  beforeAll(async () => {
    baton = await startBaton();
    dir = await mkdtemp(join(tmpdir(), 'baton-audit-archive-'));
    deps = { db: baton.db, audit: AUDIT, retention: { days: 0, archiveDir: dir } };
    await recordEvents(baton.db, events);
    await sealAll(baton.db);
  });
  afterAll(async () => {
    await baton?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('archives exactly the checkpointed segment whose checkpoint and events are all past retention, into files that verify', async () => {
    // Checkpoints at 10 and 20; position 15 is not past retention yet, so the segment ends at 10.
    const run = await archiveExpiredAudit(deps);
    const files = archiveFiles(dir, 1, 10);
    expect(run).toEqual({ segments: [{ from: 1, to: 10, events: 10, files: [files.ndjson, files.checkpoint, files.manifest] }], events: 10, files: [files.ndjson, files.checkpoint, files.manifest] });
    expect((await readdir(dir)).sort()).toEqual(['audit-1-10.checkpoint.jws', 'audit-1-10.manifest.json', 'audit-1-10.ndjson']);

    const lines = (await readFile(files.ndjson, 'utf8')).trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(lines.map((line) => Object.keys(line))).toEqual(Array(10).fill(['position', 'event_seq', 'content_hash', 'chain_hash', 'event']));
    expect(lines.map((line) => line.position)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(lines.map((line) => line.event)).toEqual(events.slice(0, 10));
    const [stored] = await baton.db.execute<{ jws: string; chain_hash: string }>(sql`SELECT jws, chain_hash FROM audit_checkpoints WHERE position = 10`);
    expect(await readFile(files.checkpoint, 'utf8')).toBe(stored.jws);
    const manifest = JSON.parse(await readFile(files.manifest, 'utf8')) as ArchiveManifest;
    expect(manifest).toEqual({
      from: 1,
      to: 10,
      previous_chain_hash: GENESIS_CHAIN_HASH,
      chain_hash: stored.chain_hash,
      events: 10,
      ndjson: { file: 'audit-1-10.ndjson', bytes: (await readFile(files.ndjson)).length, sha256: createHash('sha256').update(await readFile(files.ndjson)).digest('hex') },
      checkpoint: { file: 'audit-1-10.checkpoint.jws', position: 10, time: expect.any(String) },
    });
    expect(await verifyArchive(files.ndjson, await loadAuditTrustedKeys(baton.db, undefined))).toEqual({
      verified: true,
      file: 'audit-1-10.ndjson',
      from: 1,
      to: 10,
      checkedEvents: 10,
      checkpoint: { position: 10, time: manifest.checkpoint.time },
    });
  });

  it('removes the archived events from the trail and its search index, keeps every checkpoint, and records the segment', async () => {
    expect(await rowsOf(baton.db, ids.slice(0, 10))).toEqual(none);
    expect(await rowsOf(baton.db, ids.slice(10))).toEqual({ ...none, audit_events: 15, audit_chain: 15, audit_index: 15, audit_index_strings: 15 });
    expect(await countWhere(baton.db, sql`SELECT 1 FROM audit_chain WHERE position <= 10`)).toBe(0);
    expect(await baton.db.execute(sql`SELECT position::int AS position FROM audit_checkpoints ORDER BY position`)).toEqual([{ position: 10 }, { position: 20 }]);
    const segments = await baton.db.execute(sql`SELECT from_position::int AS "from", to_position::int AS "to", chain_hash, file, sha256 FROM audit_archive_segments`);
    const manifest = JSON.parse(await readFile(archiveFiles(dir, 1, 10).manifest, 'utf8')) as ArchiveManifest;
    expect(segments).toEqual([{ from: 1, to: 10, chain_hash: manifest.chain_hash, file: 'audit-1-10.ndjson', sha256: manifest.ndjson.sha256 }]);
  });

  it('leaves FHIR search and read without the archived AuditEvents', async () => {
    const auditor = await baton.token({ clientId: 'auditor-1', scopes: ['system/AuditEvent.rs'] });
    const bundle = await body(await baton.request('/fhir/AuditEvent?patient=Patient/member-0&_count=100', { token: auditor }));
    const found = (bundle.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id);
    const memberZero = (from: number, to: number) => ids.slice(from, to).filter((_, i) => (from + i) % 3 === 0);
    expect(found).toEqual(expect.arrayContaining(memberZero(10, 25)));
    expect(found.filter((id: string) => memberZero(0, 10).includes(id))).toEqual([]);
    expect((await baton.request(`/fhir/AuditEvent/${ids[0]}`, { token: auditor })).status).toBe(404);
    expect((await baton.request(`/fhir/AuditEvent/${ids[10]}`, { token: auditor })).status).toBe(200);
  });

  it('verifies the trail left in the database from the archived end, whose chain hash the checkpoint there must sign', async () => {
    expect(await verifyAuditTrail(baton.db)).toEqual({ verified: true, checkedEvents: 15, lastCheckpoint: { position: 20, time: expect.any(String) } });
    expect(await verifyAuditTrail(baton.db, { from: 3 })).toMatchObject({ verified: true, checkedEvents: 15 });
    expect(await verifyAuditTrail(baton.db, { from: 12, to: 14 })).toMatchObject({ verified: true, checkedEvents: 3 });

    let tampered;
    await baton.db
      .transaction(async (tx) => {
        await tx.execute(sql`SET LOCAL session_replication_role = replica`);
        await tx.execute(sql`UPDATE audit_archive_segments SET chain_hash = ${'a'.repeat(64)}`);
        tampered = await verifyAuditTrail(tx);
        throw ROLLBACK;
      })
      .catch((error: unknown) => {
        if (error !== ROLLBACK) throw error;
      });
    expect(tampered).toMatchObject({ verified: false, checkedEvents: 0, firstInvalidPosition: 10, reason: 'the chain hash at position 10 differs from the one its checkpoint signed' });
  });

  it('archives nothing new on a second run', async () => {
    expect(await archiveExpiredAudit(deps)).toEqual({ segments: [], events: 0, files: [] });
    expect(await countWhere(baton.db, sql`SELECT 1 FROM audit_archive_segments`)).toBe(1);
  });

  it('leaves every row in place when it fails after writing the files, and completes on the next run', async () => {
    const later = { now: Date.now() + 60 * DAY };
    await baton.db.execute(sql.raw(`CREATE FUNCTION test_simulated_crash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'simulated crash'; END $$`));
    await baton.db.execute(sql.raw('CREATE TRIGGER zz_simulated_crash BEFORE DELETE ON audit_chain FOR EACH STATEMENT EXECUTE FUNCTION test_simulated_crash()'));
    expect(errorText(await archiveExpiredAudit(deps, later).catch((error: unknown) => error))).toContain('simulated crash');
    const files = archiveFiles(dir, 11, 20);
    const written = await readFile(files.ndjson);
    expect(await rowsOf(baton.db, ids.slice(10, 20))).toMatchObject({ audit_events: 10, audit_chain: 10, audit_index: 10, audit_index_strings: 10 });
    expect(await countWhere(baton.db, sql`SELECT 1 FROM audit_archive_segments`)).toBe(1);
    expect(await verifyAuditTrail(baton.db)).toMatchObject({ verified: true, checkedEvents: 15 });

    await baton.db.execute(sql.raw('DROP TRIGGER zz_simulated_crash ON audit_chain'));
    const run = await archiveExpiredAudit(deps, later);
    expect(run.segments).toEqual([{ from: 11, to: 20, events: 10, files: [files.ndjson, files.checkpoint, files.manifest] }]);
    expect(await readFile(files.ndjson)).toEqual(written);
    expect(await rowsOf(baton.db, ids.slice(10, 20))).toEqual(none);
    const manifest = JSON.parse(await readFile(files.manifest, 'utf8')) as ArchiveManifest;
    expect(manifest.previous_chain_hash).toBe(await chainHashAt(baton.db, 'audit_checkpoints', 10));
    expect(await verifyAuditTrail(baton.db)).toEqual({ verified: true, checkedEvents: 5, lastCheckpoint: { position: 20, time: expect.any(String) } });
  });

  it('never archives the chain head, which the sealer continues from', async () => {
    // A checkpoint at the head, past retention: still not archived, until the chain has grown past it.
    await sealAll(baton.db);
    await sealPending({ db: baton.db, audit: { ...AUDIT, checkpointEvery: 1_000_000, checkpointSeconds: 0 } });
    const tip = await head(baton.db);
    expect(await chainHashAt(baton.db, 'audit_checkpoints', tip)).toBe(await chainHashAt(baton.db, 'audit_chain', tip));
    const later = { now: Date.now() + 60 * DAY };
    expect((await archiveExpiredAudit(deps, later)).segments).toEqual([]);

    await recordEvents(baton.db, [oldEvent(100)]);
    await sealAll(baton.db);
    expect((await archiveExpiredAudit(deps, later)).segments).toMatchObject([{ from: 21, to: tip }]);
    expect(await verifyAuditTrail(baton.db)).toEqual({ verified: true, checkedEvents: 1, lastCheckpoint: { position: tip, time: expect.any(String) } });
    await recordEvents(baton.db, [oldEvent(101)]);
    await sealAll(baton.db);
    expect(await head(baton.db)).toBe(tip + 2);
    expect(await verifyAuditTrail(baton.db)).toMatchObject({ verified: true, checkedEvents: 2 });
  });

  describe('the bypass of the append-only triggers', () => {
    /** Archived through `archived`; a checkpoint at archived + 10 below the head. */
    let archived: number;
    beforeAll(async () => {
      [{ archived }] = await baton.db.execute<{ archived: number }>(sql`SELECT max(to_position)::int AS archived FROM audit_archive_segments`);
      await recordEvents(baton.db, Array.from({ length: 12 }, (_, i) => oldEvent(200 + i)));
      await sealAll(baton.db);
      expect(await chainHashAt(baton.db, 'audit_checkpoints', archived + 10)).toBe(await chainHashAt(baton.db, 'audit_chain', archived + 10));
      expect(await head(baton.db)).toBeGreaterThan(archived + 10);
    });
    const chainRow = (position: number) => sql`DELETE FROM audit_chain WHERE position = ${position}`;
    const eventRow = (position: number) => sql`DELETE FROM audit_events WHERE seq = (SELECT event_seq FROM audit_chain WHERE position = ${position})`;
    const indexRow = (position: number) => sql`DELETE FROM audit_index WHERE position = ${position}`;
    const indexStrings = (position: number) => sql`DELETE FROM audit_index_strings WHERE position = ${position}`;

    it('deletes rows of the segment recorded in the same transaction with the setting on', async () => {
      const segment = insertSegment(archived + 1, archived + 10);
      expect(await failureOf(baton.db, ARCHIVING_ON, segment, indexStrings(archived + 5), indexRow(archived + 5), eventRow(archived + 5), chainRow(archived + 5))).toBeUndefined();
    });

    it.each<[string, (a: number) => SQL[]]>([
      ['a DELETE without the setting', (a) => [insertSegment(a + 1, a + 10), chainRow(a + 5)]],
      ['a DELETE of an event without the setting', (a) => [insertSegment(a + 1, a + 10), eventRow(a + 5)]],
      ['a DELETE without a segment recorded in the transaction', (a) => [ARCHIVING_ON, chainRow(a + 5)]],
      ['a DELETE of a chain row above the segment', (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), chainRow(a + 11)]],
      ['a DELETE of an event above the segment', (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), eventRow(a + 11)]],
      ["a DELETE of an event's index row above the segment", (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), indexRow(a + 11)]],
      ["a DELETE of an event's index strings above the segment", (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), indexStrings(a + 11)]],
      ['a DELETE of an index row without the setting', (a) => [insertSegment(a + 1, a + 10), indexRow(a + 5)]],
      ['a DELETE of a checkpoint', (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), sql`DELETE FROM audit_checkpoints WHERE position = ${a + 10}`]],
      ['a DELETE of an archive segment', (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), sql`DELETE FROM audit_archive_segments`]],
      ['an UPDATE inside the segment', (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), sql`UPDATE audit_chain SET chain_hash = 'x' WHERE position = ${a + 5}`]],
      ['an UPDATE of an archive segment', (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), sql`UPDATE audit_archive_segments SET sha256 = 'x'`]],
      ['a TRUNCATE', (a) => [ARCHIVING_ON, insertSegment(a + 1, a + 10), sql`TRUNCATE audit_chain`]],
    ])('refuses %s with ZA001, even while archiving', async (_name, statements) => {
      expect(await failureOf(baton.db, ...statements(archived))).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    });

    it.each<[string, (a: number) => SQL]>([
      ['that does not start where the last one ended', (a) => insertSegment(a + 2, a + 10)],
      ['that does not end at a checkpoint', (a) => insertSegment(a + 1, a + 9)],
      ['whose chain hash is not the one its checkpoint signs', (a) => insertSegment(a + 1, a + 10, a + 9)],
    ])('refuses to record a segment %s', async (_name, segment) => {
      expect(await failureOf(baton.db, segment(archived))).toBe(SEGMENT_REFUSED);
    });

    it('refuses to record a segment that takes the chain head, even at a checkpoint', async () => {
      await sealAll(baton.db);
    await sealPending({ db: baton.db, audit: { ...AUDIT, checkpointEvery: 1_000_000, checkpointSeconds: 0 } });
      expect(await failureOf(baton.db, insertSegment(archived + 1, await head(baton.db)))).toBe(SEGMENT_REFUSED);
    });

    it('leaves the trail intact after all of these', async () => {
      expect(await verifyAuditTrail(baton.db)).toMatchObject({ verified: true });
    });
  });
});

describe('npm run audit:archive, npm run audit:verify -- --archive, and the archiver in the server', () => {
  const run = promisify(execFile);
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let dataDir: string;
  let archiveDir: string;

  /** The embedded database admits one process at a time: each step opens and closes it. */
  async function withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T> {
    const db = await connectDatabase({ databaseUrl: database.databaseUrl, dataDir, maxConnections: 2 });
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  }

  async function cli(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    return run(process.execPath, ['--import', 'tsx', script, ...args], {
      env: { ...process.env, DATABASE_URL: database.databaseUrl ?? '', BATON_DATA_DIR: dataDir, BATON_AUDIT_ARCHIVE_DIR: archiveDir, BATON_AUDIT_RETENTION_DAYS: '0', ...env },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
    );
  }

  const recordAndSeal = (n: number) =>
    withDatabase(async (db) => {
      await recordEvents(db, Array.from({ length: n }, (_, i) => oldEvent(i)));
      await sealAll(db);
    });

  beforeAll(async () => {
    database = await freshDatabase();
    dataDir = await mkdtemp(join(tmpdir(), 'baton-audit-archive-cli-'));
    archiveDir = join(dataDir, 'archive');
    await withDatabase((db) => migrateDatabase(db));
    await recordAndSeal(12);
  });
  afterAll(async () => {
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('archives from the server about once a day: at start, unless a segment was archived in the last 23 hours', async () => {
    await withDatabase(async (db) => {
      const deps = { db, audit: AUDIT, retention: { days: 0, archiveDir } };
      const archiver = startAuditArchiver(deps, createLogger('silent'));
      await vi.waitFor(async () => expect(await countWhere(db, sql`SELECT 1 FROM audit_archive_segments`)).toBe(1), { timeout: 20_000, interval: 100 });
      await archiver.stop();
      await recordEvents(db, Array.from({ length: 12 }, (_, i) => oldEvent(i)));
      await sealAll(db);
      expect(await archiveWhenDue(deps)).toBeUndefined();
      expect(await db.execute(sql`SELECT from_position::int AS "from", to_position::int AS "to" FROM audit_archive_segments`)).toEqual([{ from: 1, to: 10 }]);
    });
  });

  it('npm run audit:archive archives what is due now and prints the segments, events and files as JSON', async () => {
    const archived = await cli('src/audit/archive-cli.ts', []);
    expect(archived.code).toBe(0);
    const files = archiveFiles(archiveDir, 11, 20);
    expect(JSON.parse(archived.stdout)).toEqual({ segments: [{ from: 11, to: 20, events: 10, files: [files.ndjson, files.checkpoint, files.manifest] }], events: 10, files: [files.ndjson, files.checkpoint, files.manifest] });
    expect(JSON.parse((await cli('src/audit/archive-cli.ts', [])).stdout)).toEqual({ segments: [], events: 0, files: [] });
    const [badRetention, unknownOption] = await Promise.all([
      cli('src/audit/archive-cli.ts', [], { BATON_AUDIT_RETENTION_DAYS: 'forever' }),
      cli('src/audit/archive-cli.ts', ['--now']),
    ]);
    expect(badRetention).toMatchObject({ code: 2, stderr: expect.stringContaining('BATON_AUDIT_RETENTION_DAYS') });
    expect(unknownOption).toMatchObject({ code: 2, stderr: expect.stringContaining('--now') });
    expect(JSON.parse((await cli('src/audit/verify-cli.ts', [])).stdout)).toMatchObject({ verified: true, checkedEvents: 4 });
  });

  it('npm run audit:verify -- --archive verifies an archive file offline and detects one tampered with', async () => {
    const good = await cli('src/audit/verify-cli.ts', ['--archive', archiveFiles(archiveDir, 1, 10).ndjson]);
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout)).toEqual({ verified: true, file: 'audit-1-10.ndjson', from: 1, to: 10, checkedEvents: 10, checkpoint: { position: 10, time: expect.any(String) } });

    const copy = await copyOfSegment(1, 10);
    const lines = (await readFile(copy.ndjson, 'utf8')).split('\n');
    lines[2] = lines[2].replace('"outcome":"0"', '"outcome":"4"');
    await writeFile(copy.ndjson, lines.join('\n'));
    const tampered = await cli('src/audit/verify-cli.ts', ['--archive', copy.ndjson]);
    expect(tampered.code).toBe(1);
    expect(JSON.parse(tampered.stdout)).toMatchObject({ verified: false, firstInvalidPosition: 1, reason: 'the NDJSON file differs from the SHA-256 its manifest records' });

    const [misnamed, withRange, absent] = await Promise.all([
      cli('src/audit/verify-cli.ts', ['--archive', join(archiveDir, 'events.ndjson')]),
      cli('src/audit/verify-cli.ts', ['--archive', copy.ndjson, '--from', '2']),
      cli('src/audit/verify-cli.ts', ['--archive', join(archiveDir, 'audit-30-40.ndjson')]),
    ]);
    expect(misnamed).toMatchObject({ code: 2, stderr: expect.stringContaining('audit-<from>-<to>.ndjson') });
    expect(withRange).toMatchObject({ code: 2, stderr: expect.stringContaining('--from') });
    expect(absent).toMatchObject({ code: 2, stderr: expect.stringContaining('cannot read') });
  });

  /** The segment's files copied to a directory of their own, for tampering. */
  async function copyOfSegment(from: number, to: number) {
    const copyDir = await mkdtemp(join(dataDir, 'copy-'));
    const source = archiveFiles(archiveDir, from, to);
    const copy = archiveFiles(copyDir, from, to);
    for (const key of ['ndjson', 'checkpoint', 'manifest'] as const) await copyFile(source[key], copy[key]);
    return copy;
  }

  /** Rewrites the NDJSON file and then its manifest's hash and size, as someone covering their tracks would. */
  async function rewriteLines(path: string, manifestPath: string, change: (lines: string[]) => string[]): Promise<void> {
    const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');
    const text = `${change(lines).join('\n')}\n`;
    await writeFile(path, text);
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as ArchiveManifest;
    manifest.ndjson = { ...manifest.ndjson, bytes: Buffer.byteLength(text), sha256: createHash('sha256').update(text).digest('hex') };
    await writeFile(manifestPath, JSON.stringify(manifest));
  }

  it.each<[string, (copy: ReturnType<typeof archiveFiles>) => Promise<void>, number, RegExp]>([
    ['an event changed, the manifest rehashed', (c) => rewriteLines(c.ndjson, c.manifest, (l) => l.map((x, i) => (i === 2 ? x.replace('"outcome":"0"', '"outcome":"4"') : x))), 3, /event at position 3 differs from its content hash/],
    ['two lines swapped', (c) => rewriteLines(c.ndjson, c.manifest, (l) => [l[0], l[2], l[1], ...l.slice(3)]), 2, /line 2 is not position 2/],
    ['the last line cut', (c) => rewriteLines(c.ndjson, c.manifest, (l) => l.slice(0, -1)), 10, /file ends before position 10/],
    [
      'a line dropped, the rest renumbered and rechained',
      (c) =>
        rewriteLines(c.ndjson, c.manifest, (l) => {
          const parsed = l.map((x) => JSON.parse(x));
          const kept = [...parsed.slice(0, 4), ...parsed.slice(5)].map((x, i) => ({ ...x, position: i + 1 }));
          return kept.map((x) => JSON.stringify(x));
        }),
      5,
      /chain hash at position 5 does not follow from position 4/,
    ],
    ['the checkpoint forged', async (c) => writeFile(c.checkpoint, `${(await readFile(c.checkpoint, 'utf8')).slice(0, -4)}AAAA`), 10, /signature of the checkpoint at position 10 does not verify/],
    ['the checkpoint removed', (c) => rm(c.checkpoint), 10, /checkpoint at position 10 \(audit-1-10.checkpoint.jws\) is missing/],
    ['the manifest removed', (c) => rm(c.manifest), 1, /manifest audit-1-10.manifest.json is missing/],
    [
      'the previous chain hash altered',
      async (c) => {
        const manifest = JSON.parse(await readFile(c.manifest, 'utf8')) as ArchiveManifest;
        await writeFile(c.manifest, JSON.stringify({ ...manifest, previous_chain_hash: 'b'.repeat(64) }));
      },
      1,
      /chain hash before position 1 must be 64 zeros/,
    ],
  ])('detects %s', async (_name, tampering, position, reason) => {
    const copy = await copyOfSegment(1, 10);
    await tampering(copy);
    const trusted = await withDatabase((db) => loadAuditTrustedKeys(db, undefined));
    const result = await verifyArchive(copy.ndjson, trusted);
    expect(result).toMatchObject({ verified: false, file: basename(copy.ndjson), firstInvalidPosition: position, reason: expect.stringMatching(reason) });
  });

  it('refuses to archive a trail that does not verify, deleting nothing', async () => {
    await recordAndSeal(12);
    await withDatabase(async (db) => {
      await db.transaction(async (tx) => {
        await tx.execute(sql`SET LOCAL session_replication_role = replica`);
        await tx.execute(sql`UPDATE audit_events SET content = replace(content, '"outcome":"0"', '"outcome":"4"') WHERE seq = (SELECT event_seq FROM audit_chain WHERE position = 23)`);
      });
      const before = await countWhere(db, sql`SELECT 1 FROM audit_chain`);
      const attempt = archiveExpiredAudit({ db, audit: AUDIT, retention: { days: 0, archiveDir } });
      await expect(attempt).rejects.toThrow(AuditArchiveError);
      await expect(attempt).rejects.toThrow('the archive of positions 21-30 does not verify at position 23: the event at position 23 differs from its content hash; nothing was deleted');
      expect(await countWhere(db, sql`SELECT 1 FROM audit_chain`)).toBe(before);
      expect(await countWhere(db, sql`SELECT 1 FROM audit_archive_segments`)).toBe(2);
    });
    expect((await readdir(archiveDir)).filter((name) => name.startsWith('audit-21-30'))).toEqual([]);
  });
});
