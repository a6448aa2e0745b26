import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import type { Coverage, Patient, Resource } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import type { Config } from '../src/config.ts';
import { connectDatabase, type Database } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { systemAccess } from '../src/fhir/access.ts';
import { noAudit } from '../src/fhir/audit-sink.ts';
import { ensureOwnOrganization } from '../src/fhir/own-organization.ts';
import { createResourceValidator } from '../src/fhir/validation.ts';
import { BLOCKING_KEY_VERSION, candidateBlockingKeys } from '../src/matching/blocking-keys.ts';
import { candidateFromMember } from '../src/matching/from-fhir.ts';
import { catchUp, keyHash } from '../src/matching/index-store.ts';
import { normalizeCandidate } from '../src/matching/normalize.ts';
import { loadPopulation } from '../src/seed/load.ts';
import { generatePopulation, type PopulationOptions } from '../src/seed/population.ts';
import { round } from './load.ts';

/*
 * bench:match's database: a synthetic population (Patient and Coverage per member, no clinical
 * data) loaded with the seed loader, and the $member-match blocking index caught up over it.
 * Loading a million members takes a while, so the database is kept between runs. Its comment
 * holds two fingerprints with the figures measured when they were made, each taken from output
 * rather than code (the checkout is shared: an unrelated edit must not cost a reload):
 * - the population's: its options and the resources the generator makes for its first
 *   households; a mismatch (or --fresh) drops and loads the database again;
 * - the index's: the index rows (record and hashed keys) those members get, and the source of
 *   src/matching/index-store.ts; a mismatch (or --reindex) empties the index, queues every
 *   member and catches up again, timed, so a change to the indexer is measured on the same data.
 * Migrations are applied forward to a kept database, as a deployment's would be.
 */

const ROOT = new URL('..', import.meta.url);
const COMMENT_PREFIX = 'baton-bench-match ';

/** Households whose resources stand for the whole population in the fingerprints. */
const SAMPLE_HOUSEHOLDS = 200;

function sampleResources(options: PopulationOptions): Resource[] {
  const resources: Resource[] = [];
  let households = 0;
  for (const chunk of generatePopulation(options)) {
    resources.push(...chunk.resources);
    if (chunk.household && ++households >= SAMPLE_HOUSEHOLDS) break;
  }
  return resources;
}

const digest = (...parts: string[]): string => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\u0000');
  return hash.digest('hex').slice(0, 32);
};

function populationFingerprint(options: PopulationOptions, payer: Config['payer'], sample: Resource[]): string {
  return digest(JSON.stringify({ options, payer }), JSON.stringify(sample));
}

/** The index rows the sample's members get, as index-store.ts builds them, and that file itself (its SQL). */
function indexFingerprint(sample: Resource[]): string {
  const coverages = new Map<string, Coverage[]>();
  for (const resource of sample) {
    if (resource.resourceType !== 'Coverage') continue;
    const member = resource.beneficiary?.reference?.replace(/^Patient\//, '') ?? '';
    coverages.set(member, [...(coverages.get(member) ?? []), resource]);
  }
  const rows = sample
    .filter((resource): resource is Patient => resource.resourceType === 'Patient')
    .map((patient) => {
      const candidate = normalizeCandidate(candidateFromMember(patient, coverages.get(patient.id as string) ?? []));
      return [JSON.stringify(candidate), candidateBlockingKeys(candidate).map(keyHash).sort().join(',')];
    });
  return digest(String(BLOCKING_KEY_VERSION), JSON.stringify(rows), readFileSync(new URL('src/matching/index-store.ts', ROOT), 'utf8'));
}

export interface LoadReport {
  members: number;
  resources: number;
  load_s: number;
  members_per_s: number;
  resources_per_s: number;
  vacuum_analyze_s: number;
  load_avg_1m_at_end: number;
}

export interface IndexReport {
  members: number;
  catch_up_s: number;
  members_per_s: number;
  /** Rows of the index once caught up. */
  key_rows: number;
  term_count_rows: number;
  vacuum_analyze_s: number;
  load_avg_1m_at_end: number;
}

interface Stored {
  population: string;
  load: LoadReport;
  index?: string;
  indexed?: IndexReport;
}

export interface PreparedDatabase {
  url: string;
  reusedPopulation: boolean;
  reusedIndex: boolean;
  migrate_s: number;
  /** VACUUM (ANALYZE) before measuring, and the server's autovacuum setting. */
  vacuum_analyze_s: number;
  autovacuum: string;
  load: LoadReport;
  index: IndexReport;
  size_gb: Record<string, number>;
}

export interface PrepareOptions {
  adminUrl: string;
  database: string;
  population: PopulationOptions;
  payer: Config['payer'];
  fresh: boolean;
  reindex: boolean;
  log: (message: string) => void;
}

const load1m = (): number => round(loadavg()[0]);

async function vacuumAnalyze(url: string, tables?: string[]): Promise<number> {
  const started = performance.now();
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  await sql.unsafe(`VACUUM (ANALYZE)${tables ? ` ${tables.join(', ')}` : ''}`);
  await sql.end();
  return round((performance.now() - started) / 1000, 1);
}

export async function prepareDatabase(options: PrepareOptions): Promise<PreparedDatabase> {
  const { adminUrl, database, log } = options;
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const benchUrl = url.toString();
  const sample = sampleResources(options.population);
  const populationPrint = populationFingerprint(options.population, options.payer, sample);
  const indexPrint = indexFingerprint(sample);

  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  const writeComment = (stored: Stored) =>
    // Our own JSON of hashes and numbers; quotes doubled since COMMENT takes no parameters.
    admin.unsafe(`COMMENT ON DATABASE ${database} IS '${(COMMENT_PREFIX + JSON.stringify(stored)).replaceAll("'", "''")}'`);
  try {
    const [existing] = await admin<{ comment: string | null }[]>`
      SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = ${database}`;
    let stored = existing?.comment?.startsWith(COMMENT_PREFIX) ? (JSON.parse(existing.comment.slice(COMMENT_PREFIX.length)) as Stored) : undefined;
    const reusedPopulation = stored?.population === populationPrint && !options.fresh;
    // Index building runs several transactions at once; the load a few more.
    const db = await (async (): Promise<Database> => {
      if (reusedPopulation) return connectDatabase({ databaseUrl: benchUrl, dataDir: 'memory://', maxConnections: 4 });
      if (existing) await admin.unsafe(`DROP DATABASE ${database} WITH (FORCE)`);
      await admin.unsafe(`CREATE DATABASE ${database}`);
      return connectDatabase({ databaseUrl: benchUrl, dataDir: 'memory://', maxConnections: 4 });
    })();
    try {
      let started = performance.now();
      await migrateDatabase(db);
      const migrateSeconds = round((performance.now() - started) / 1000, 1);

      if (!reusedPopulation) {
        log(`loading ${options.population.members} members into ${database} (Patient and Coverage each, no clinical data)`);
        // Coverage.payor names the payer's own Organization, as `npm run seed` does.
        await ensureOwnOrganization(
          { db, q: db, inTransaction: false, baseUrl: 'http://bench.baton.test/fhir', validator: createResourceValidator([]), access: systemAccess, audit: noAudit },
          options.payer,
        );
        let reported = 0;
        const summary = await loadPopulation(db, options.population, {
          progress: ({ members, seconds }) => {
            if (seconds - reported < 30 && members < options.population.members) return;
            reported = seconds;
            log(`loaded ${members}/${options.population.members} members in ${seconds.toFixed(0)} s (load average ${load1m()})`);
          },
        });
        log('VACUUM (ANALYZE)');
        const vacuum = await vacuumAnalyze(benchUrl);
        stored = {
          population: populationPrint,
          load: {
            members: summary.members,
            resources: summary.total,
            load_s: summary.seconds,
            members_per_s: summary.membersPerSecond,
            resources_per_s: summary.resourcesPerSecond,
            vacuum_analyze_s: vacuum,
            load_avg_1m_at_end: load1m(),
          },
        };
        await writeComment(stored);
      }
      const current = stored as Stored;

      const reusedIndex = reusedPopulation && current.index === indexPrint && current.indexed !== undefined && !options.reindex;
      if (!reusedIndex) {
        if (reusedPopulation) {
          // Rebuilt from the stored resources, as a fresh load leaves it: every member queued.
          log('emptying the matching index and queueing every member');
          await db.transaction(async (q) => {
            await q.execute(sqlText('TRUNCATE match_index_keys, match_index_records, match_term_counts'));
            await q.execute(sqlText("INSERT INTO match_index_queue (patient_id) SELECT id FROM resources WHERE resource_type = 'Patient' AND NOT deleted ON CONFLICT DO NOTHING"));
          });
        }
        const [{ queued }] = await db.execute<{ queued: number }>(sqlText('SELECT count(*)::integer AS queued FROM match_index_queue'));
        log(`catching up the matching index: ${queued} members queued`);
        started = performance.now();
        const indexed = await catchUpWithProgress(db, queued, log);
        const seconds = (performance.now() - started) / 1000;
        log(`indexed ${indexed} members in ${seconds.toFixed(1)} s; VACUUM (ANALYZE) of the index`);
        const vacuum = await vacuumAnalyze(benchUrl, ['match_index_keys', 'match_index_records', 'match_term_counts', 'match_index_queue']);
        const [{ keys }] = await db.execute<{ keys: number }>(sqlText('SELECT count(*)::integer AS keys FROM match_index_keys'));
        const [{ terms }] = await db.execute<{ terms: number }>(sqlText('SELECT count(*)::integer AS terms FROM match_term_counts'));
        current.index = indexPrint;
        current.indexed = {
          members: indexed,
          catch_up_s: round(seconds, 1),
          members_per_s: Math.round(indexed / seconds),
          key_rows: keys,
          term_count_rows: terms,
          vacuum_analyze_s: vacuum,
          load_avg_1m_at_end: load1m(),
        };
        await writeComment(current);
      }
      // A database in service is vacuumed and analyzed by autovacuum as it goes (this server may
      // have it off: the figures report it). Earlier runs' writes left dead rows (the index queue
      // holds one per match, and every match calls catchUp) and stale statistics (with those of
      // before the first run, the lookup of a member's Consents in link.ts walked every Consent,
      // 76 ms at 15,600, instead of using the target index).
      started = performance.now();
      const maintenance = postgres(benchUrl, { max: 1, onnotice: () => undefined });
      await maintenance.unsafe('VACUUM (ANALYZE)');
      const [{ autovacuum }] = await maintenance<{ autovacuum: string }[]>`SELECT current_setting('autovacuum') AS autovacuum`;
      await maintenance.end();
      const vacuumSeconds = round((performance.now() - started) / 1000, 1);
      return {
        url: benchUrl,
        reusedPopulation,
        reusedIndex,
        migrate_s: migrateSeconds,
        vacuum_analyze_s: vacuumSeconds,
        autovacuum,
        load: current.load,
        index: current.indexed as IndexReport,
        size_gb: await databaseSizes(db),
      };
    } finally {
      await db.close();
    }
  } finally {
    await admin.end();
  }
}

/** catchUp as the server runs it (one call drains the queue), with the queue's length logged every 30 s. */
async function catchUpWithProgress(db: Database, queued: number, log: (message: string) => void): Promise<number> {
  const started = performance.now();
  const timer = setInterval(() => {
    void db.execute<{ left: number }>(sqlText('SELECT count(*)::integer AS left FROM match_index_queue')).then(([{ left }]) => {
      log(`indexed ${queued - left}/${queued} members in ${((performance.now() - started) / 1000).toFixed(0)} s (load average ${load1m()})`);
    });
  }, 30_000);
  try {
    return await catchUp(db);
  } finally {
    clearInterval(timer);
  }
}

const TABLES = ['resources', 'resource_history', 'sp_token', 'sp_string', 'sp_date', 'sp_reference', 'match_index_keys', 'match_index_records', 'match_term_counts'];

async function databaseSizes(db: Database): Promise<Record<string, number>> {
  const gb = (bytes: number) => round(bytes / 1024 ** 3, 2);
  const [{ total }] = await db.execute<{ total: number }>(sqlText('SELECT pg_database_size(current_database())::float8 AS total'));
  const rows = await db.execute<{ name: string; total: number }>(
    sqlText(`SELECT relname AS name, pg_total_relation_size(oid)::float8 AS total FROM pg_class WHERE relkind = 'r' AND relname IN (${TABLES.map((t) => `'${t}'`).join(', ')})`),
  );
  return { total: gb(total), ...Object.fromEntries(rows.map((row) => [row.name, gb(row.total)])) };
}

/** A fixed statement of this file (no values): drizzle's raw SQL. */
function sqlText(text: string) {
  return sql.raw(text);
}
