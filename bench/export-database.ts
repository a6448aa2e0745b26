import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import type { Resource } from '@medplum/fhirtypes';
import postgres from 'postgres';
import type { Config } from '../src/config.ts';
import { connectDatabase } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { systemAccess } from '../src/fhir/access.ts';
import { noAudit } from '../src/fhir/audit-sink.ts';
import { ensureOwnOrganization } from '../src/fhir/own-organization.ts';
import { createResourceValidator } from '../src/fhir/validation.ts';
import { loadPopulation } from '../src/seed/load.ts';
import { generatePopulation, type PopulationOptions } from '../src/seed/population.ts';
import { round } from './load.ts';

/*
 * bench:export's database: a synthetic population with its clinical data, loaded with the seed
 * loader and kept between runs (millions of resources take a while to load). Its comment holds
 * a fingerprint of the population's options and of the resources the generator makes for its
 * first households, taken from output rather than code (the checkout is shared: an unrelated
 * edit must not cost a reload), with the figures of the load. A mismatch (or --fresh) drops and
 * loads the database again. Migrations are applied forward to a kept database.
 */

const COMMENT_PREFIX = 'baton-bench-export ';
const SAMPLE_HOUSEHOLDS = 200;

export interface ExportLoadReport {
  members: number;
  resources: number;
  by_type: Record<string, number>;
  load_s: number;
  resources_per_s: number;
  vacuum_analyze_s: number;
  load_avg_1m_at_end: number;
}

export interface PreparedExportDatabase {
  url: string;
  reused: boolean;
  load: ExportLoadReport;
  size_gb: number;
}

export interface PrepareExportOptions {
  adminUrl: string;
  database: string;
  population: PopulationOptions;
  payer: Config['payer'];
  fresh: boolean;
  log: (message: string) => void;
}

const load1m = (): number => round(loadavg()[0]);

function fingerprint(options: PopulationOptions, payer: Config['payer']): string {
  const sample: Resource[] = [];
  let households = 0;
  for (const chunk of generatePopulation(options)) {
    sample.push(...chunk.resources);
    if (chunk.household && ++households >= SAMPLE_HOUSEHOLDS) break;
  }
  return createHash('sha256').update(JSON.stringify({ options, payer })).update('\u0000').update(JSON.stringify(sample)).digest('hex').slice(0, 32);
}

export async function prepareExportDatabase(options: PrepareExportOptions): Promise<PreparedExportDatabase> {
  const { adminUrl, database, log } = options;
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const benchUrl = url.toString();
  const print = fingerprint(options.population, options.payer);
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  try {
    const [existing] = await admin<{ comment: string | null }[]>`
      SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = ${database}`;
    const stored = existing?.comment?.startsWith(COMMENT_PREFIX) ? (JSON.parse(existing.comment.slice(COMMENT_PREFIX.length)) as { population: string; load: ExportLoadReport }) : undefined;
    const reused = stored?.population === print && !options.fresh;
    if (!reused) {
      if (existing) await admin.unsafe(`DROP DATABASE ${database} WITH (FORCE)`);
      await admin.unsafe(`CREATE DATABASE ${database}`);
    }
    const db = await connectDatabase({ databaseUrl: benchUrl, dataDir: 'memory://', maxConnections: 4 });
    let load: ExportLoadReport;
    try {
      await migrateDatabase(db);
      if (reused) {
        load = (stored as { load: ExportLoadReport }).load;
      } else {
        log(`loading ${options.population.members} members with their clinical data into ${database}`);
        await ensureOwnOrganization(
          { db, q: db, inTransaction: false, baseUrl: 'http://bench.baton.test/fhir', validator: createResourceValidator([]), access: systemAccess, audit: noAudit },
          options.payer,
        );
        let reported = 0;
        const summary = await loadPopulation(db, options.population, {
          progress: ({ members, resources, seconds }) => {
            if (seconds - reported < 30 && members < options.population.members) return;
            reported = seconds;
            log(`loaded ${members}/${options.population.members} members, ${resources} resources in ${seconds.toFixed(0)} s (load average ${load1m()})`);
          },
        });
        log('VACUUM (ANALYZE)');
        const started = performance.now();
        const vacuum = postgres(benchUrl, { max: 1, onnotice: () => undefined });
        await vacuum.unsafe('VACUUM (ANALYZE)');
        await vacuum.end();
        load = {
          members: summary.members,
          resources: summary.total,
          by_type: summary.resources,
          load_s: summary.seconds,
          resources_per_s: summary.resourcesPerSecond,
          vacuum_analyze_s: round((performance.now() - started) / 1000, 1),
          load_avg_1m_at_end: load1m(),
        };
        // Our own JSON of hashes and numbers; quotes doubled since COMMENT takes no parameters.
        await admin.unsafe(`COMMENT ON DATABASE ${database} IS '${(COMMENT_PREFIX + JSON.stringify({ population: print, load })).replaceAll("'", "''")}'`);
      }
    } finally {
      await db.close();
    }
    const [{ size }] = await admin<{ size: number }[]>`SELECT pg_database_size(${database})::float8 AS size`;
    return { url: benchUrl, reused, load, size_gb: round(size / 1024 ** 3, 2) };
  } finally {
    await admin.end();
  }
}
