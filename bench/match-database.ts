import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import type { Config } from '../src/config.ts';
import { connectDatabase, type Database } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { systemAccess } from '../src/fhir/access.ts';
import { noAudit } from '../src/fhir/audit-sink.ts';
import { ensureOwnOrganization } from '../src/fhir/own-organization.ts';
import { createResourceValidator } from '../src/fhir/validation.ts';
import { catchUp } from '../src/matching/index-store.ts';
import { loadPopulation } from '../src/seed/load.ts';
import type { PopulationOptions } from '../src/seed/population.ts';
import { round } from './load.ts';

/*
 * bench:match's database: a synthetic population (Patient and Coverage per member, no clinical
 * data) loaded with the seed loader, and the $member-match blocking index caught up over it.
 * Loading a million members takes a while, so the database is kept between runs. Its comment
 * holds two fingerprints with the figures measured when they were made:
 * - the population's: sizes and the code that generates and stores resources (the import
 *   closure of src/seed/load.ts); a mismatch (or --fresh) drops and loads the database again;
 * - the index's: the code that builds index rows (the import closure of
 *   src/matching/index-store.ts); a mismatch (or --reindex) empties the index, queues every
 *   member and catches up again, timed, so a change to the indexer is measured on the same data.
 * Migrations are applied forward to a kept database, as a deployment's would be.
 */

const ROOT = new URL('..', import.meta.url);
const COMMENT_PREFIX = 'baton-bench-match ';

/** Every file of src reached from `entry` through relative imports: the code a fingerprint covers. */
export function importClosure(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(new URL(file, ROOT), 'utf8');
    for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+\.(?:ts|json))'/g)) {
      const target = new URL(spec, new URL(file, ROOT));
      const relative = target.pathname.slice(ROOT.pathname.length);
      if (existsSync(target)) visit(relative);
    }
  };
  visit(entry);
  return [...seen].sort();
}

function fingerprint(parts: unknown, files: string[]): string {
  const hash = createHash('sha256').update(JSON.stringify(parts));
  for (const file of files) hash.update(file).update(readFileSync(new URL(file, ROOT)));
  return hash.digest('hex').slice(0, 32);
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
  const populationPrint = fingerprint({ ...options.population, payer: options.payer }, importClosure('src/seed/load.ts'));
  const indexPrint = fingerprint({}, importClosure('src/matching/index-store.ts'));

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
      return {
        url: benchUrl,
        reusedPopulation,
        reusedIndex,
        migrate_s: migrateSeconds,
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
