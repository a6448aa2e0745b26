import { createHash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { Bundle, BundleEntry } from '@medplum/fhirtypes';
import postgres from 'postgres';
import { connectDatabase } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { httpLoad, type LoadFigures, pick, queryLoad, round } from './load.ts';
import { drainSealer } from './sealing.ts';
import { benchObservation, benchPatient, MEMBER_SYSTEM, memberId, type SeedTimes, seedPopulation } from './population.ts';
import { type BatonChild, type ChildServer, startBatonProcess, startFixedResponseServer } from './servers.ts';
import { postgresSettings } from './postgres-settings.ts';

/*
 * npm run bench:rest [-- --patients N --observations N --duration S --warmup S --connections N
 *                        --transaction-entries N --keep --fresh]
 * (or BENCH_PATIENTS, BENCH_OBSERVATIONS, BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS,
 * BENCH_TRANSACTION_ENTRIES; defaults 100,000 / 1,000,000 / 10 s / 5 s / 32 / 1,000)
 *
 * Issue 2's REST figures on PostgreSQL, in one run: seeds a population into its own database
 * `baton_bench`, measures Baton (a child process, over HTTP with autocannon) reading by id,
 * searching by identifier, creating, and committing transaction Bundles, and measures two
 * ceilings the same way: a bare node:http server returning a fixed Patient (HTTP) and the same
 * reads as raw SQL through postgres.js (database). Prints one JSON object on stdout; progress
 * goes to stderr. It never fails on a figure: it reports them, with the issue's targets. After
 * each phase it waits for the audit sealer to catch up, and reports what the phase left to seal
 * and how long that took (audit_sealing), so no phase pays for the one before it. Before the
 * first, it also waits for Baton to index the members a fresh seed queued for $member-match
 * (matching_index_at_start).
 *
 * The database: `baton_bench` on the server of DATABASE_URL (default the local `test` one,
 * used only to create and drop it). It is dropped at the end unless --keep; a kept database is
 * reused by the next run when it was seeded with the same sizes, migrations and store/search
 * code (a fingerprint kept as the database's comment), otherwise it is dropped and seeded
 * again. --fresh always seeds again. Writes of a run (creates, transactions) stay in a kept
 * database.
 */

const BENCH_DATABASE = 'baton_bench';
const ROOT = new URL('..', import.meta.url);

const { values: flags } = parseArgs({
  options: {
    patients: { type: 'string' },
    observations: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    'transaction-entries': { type: 'string' },
    keep: { type: 'boolean', default: false },
    fresh: { type: 'boolean', default: false },
  },
});

function count(flag: string | undefined, env: string, fallback: number, min: number): number {
  const text = flag ?? process.env[env] ?? String(fallback);
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${env} (or its flag) must be an integer >= ${min}; got "${text}"`);
  return n;
}

const settings = {
  patients: count(flags.patients, 'BENCH_PATIENTS', 100_000, 1),
  observations: count(flags.observations, 'BENCH_OBSERVATIONS', 1_000_000, 0),
  seconds: count(flags.duration, 'BENCH_DURATION', 10, 1),
  // Baton answers slowly for its first seconds (JIT, pool connections opened on demand).
  warmupSeconds: count(flags.warmup, 'BENCH_WARMUP', 5, 1),
  connections: count(flags.connections, 'BENCH_CONNECTIONS', 32, 1),
  transactionEntries: count(flags['transaction-entries'], 'BENCH_TRANSACTION_ENTRIES', 1000, 2),
  transactionRuns: 3,
};
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const benchUrl = new URL(adminUrl);
benchUrl.pathname = `/${BENCH_DATABASE}`;

const log = (message: string): void => void process.stderr.write(`[bench:rest] ${message}\n`);

// Child servers die with the benchmark, also when it is interrupted.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

/** What a seeded database was built from: sizes, migrations, and the code that writes rows. */
function seedFingerprint(): string {
  const hash = createHash('sha256').update(`${settings.patients}/${settings.observations}`);
  const files = (dir: string): string[] =>
    readdirSync(new URL(dir, ROOT), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => `${e.parentPath}/${e.name}`)
      .sort();
  for (const file of [...files('migrations/'), ...files('src/fhir/search/'), new URL('src/fhir/store.ts', ROOT).pathname, new URL('bench/population.ts', ROOT).pathname]) {
    hash.update(readFileSync(file));
  }
  return `baton-bench seed ${hash.digest('hex')}`;
}

interface Prepared {
  reused: boolean;
  seed?: SeedTimes & { vacuumAnalyzeSeconds: number };
}

async function prepareDatabase(): Promise<Prepared> {
  const fingerprint = seedFingerprint();
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  try {
    const [existing] = await admin<{ comment: string | null }[]>`
      SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = ${BENCH_DATABASE}`;
    if (existing && !flags.fresh && existing.comment === fingerprint) {
      log(`reusing the seeded database ${BENCH_DATABASE}`);
      return { reused: true };
    }
    if (existing) await admin.unsafe(`DROP DATABASE ${BENCH_DATABASE} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${BENCH_DATABASE}`);
    const db = await connectDatabase({ databaseUrl: benchUrl.toString(), dataDir: 'memory://', maxConnections: 4 });
    try {
      await migrateDatabase(db);
      log(`seeding ${settings.patients} Patients and ${settings.observations} Observations into ${BENCH_DATABASE}`);
      const times = await seedPopulation(db, settings, log);
      const started = performance.now();
      const bench = postgres(benchUrl.toString(), { max: 1, onnotice: () => undefined });
      await bench.unsafe('VACUUM (ANALYZE)');
      await bench.end();
      const vacuumAnalyzeSeconds = (performance.now() - started) / 1000;
      // The fingerprint is hex from our own hash: safe as a literal (COMMENT takes no parameters).
      await admin.unsafe(`COMMENT ON DATABASE ${BENCH_DATABASE} IS '${fingerprint}'`);
      return { reused: false, seed: { ...times, vacuumAnalyzeSeconds } };
    } finally {
      await db.close();
    }
  } finally {
    await admin.end();
  }
}

async function dropDatabase(): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${BENCH_DATABASE} WITH (FORCE)`);
  await admin.end();
}

/** One request made before a load run: the load is only measured when this answers as expected. */
async function preflight(what: string, request: () => Promise<Response>, check: (body: any) => boolean): Promise<string | undefined> {
  const response = await request();
  const text = await response.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (response.ok && check(body)) return undefined;
  const diagnostics = body?.issue?.[0]?.diagnostics ?? body?.issue?.[0]?.details?.text ?? text.slice(0, 200);
  const error = `${response.status}: ${diagnostics}`;
  log(`${what}: preflight failed (${error}); not measured`);
  return error;
}

/** Figures with the machine's 1-minute load average as the run ended: above the core count, other processes took CPU from this one. */
type Loaded = LoadFigures & { load_avg_1m: number };

const withLoadAverage = (figures: LoadFigures): Loaded => ({ ...figures, load_avg_1m: round(loadavg()[0]) });

interface Measured extends Partial<Loaded> {
  error?: string;
  audit_sealing?: AuditSealing;
}

/** What a phase left for the audit sealer: the events not yet sealed as it ended, and the seconds it then took to seal them with no requests running. */
interface AuditSealing {
  unsealed_events: number;
  drain_s: number;
}

/**
 * Waits until the audit trail is sealed, so that a phase's backlog is not sealed during (and
 * charged to) the next phase; reports what there was to seal. Sealing runs beside the requests,
 * on its own thread: sustained audited traffic faster than it seals leaves such a backlog.
 */
async function drainSealing(sql: postgres.Sql): Promise<AuditSealing> {
  const { pending, drain_s } = await drainSealer(sql, log);
  log(`audit sealing: ${pending} events unsealed, sealed in ${drain_s} s`);
  return { unsealed_events: pending, drain_s };
}

/**
 * Waits until Baton has indexed the members queued for $member-match (seeding queues every
 * Patient), so that no measurement shares the machine with that catch-up; then vacuums the
 * queue, as autovacuum would (off on the CI machines), since Baton polls it for emptiness.
 */
async function drainMatchingIndex(sql: postgres.Sql): Promise<{ queued_members: number; drain_s: number; left_after_10_min?: number }> {
  const started = performance.now();
  const queued = async () => (await sql<{ n: number }[]>`SELECT count(*)::float8 AS n FROM match_index_queue`)[0].n;
  const first = await queued();
  let left = first;
  while (left > 0 && performance.now() - started < 600_000) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    left = await queued();
  }
  if (first > 0) await sql.unsafe('VACUUM (ANALYZE) match_index_queue');
  const drain_s = round((performance.now() - started) / 1000, 1);
  log(`matching index: ${first} members queued, ${left > 0 ? `${left} still queued after` : 'indexed in'} ${drain_s} s`);
  return { queued_members: first, drain_s, ...(left > 0 ? { left_after_10_min: left } : {}) };
}

async function measure(what: string, check: () => Promise<string | undefined>, run: () => Promise<LoadFigures>, sql: postgres.Sql): Promise<Measured> {
  const error = await check();
  if (error) return { error };
  log(`${what}: ${settings.seconds} s at ${settings.connections} connections`);
  const figures = await run();
  log(`${what}: ${figures.rps}/s, p50 ${figures.p50_ms} ms, p99 ${figures.p99_ms} ms, failed ${figures.failed}`);
  const loaded = withLoadAverage(figures);
  return { ...loaded, audit_sealing: await drainSealing(sql) };
}

function transactionBundle(entries: number, patientIds: string[]): Bundle {
  const patientUrn = `urn:uuid:${randomUUID()}`;
  const patient = { ...benchPatient(0), identifier: [{ system: MEMBER_SYSTEM, value: `T-${randomUUID()}` }] };
  const entry: BundleEntry[] = [{ fullUrl: patientUrn, resource: patient, request: { method: 'POST', url: 'Patient' } }];
  for (let i = 1; i < entries; i++) {
    // Half the Observations point at the Patient created in the same Bundle (urn:uuid rewriting).
    const subject = i % 2 === 0 ? patientUrn : `Patient/${pick(patientIds)}`;
    entry.push({ fullUrl: `urn:uuid:${randomUUID()}`, resource: benchObservation(i, subject), request: { method: 'POST', url: 'Observation' } });
  }
  return { resourceType: 'Bundle', type: 'transaction', entry };
}

async function postTransaction(baton: BatonChild, bundle: Bundle): Promise<{ seconds: number; error?: string }> {
  const started = performance.now();
  const response = await fetch(baton.url, { method: 'POST', headers: { 'content-type': 'application/fhir+json', authorization: await baton.authorization() }, body: JSON.stringify(bundle) });
  const body = (await response.json().catch(() => undefined)) as any;
  const seconds = (performance.now() - started) / 1000;
  const entries = bundle.entry?.length ?? 0;
  if (response.ok && body?.type === 'transaction-response' && body.entry?.length === entries) return { seconds };
  return { seconds, error: `${response.status}: ${body?.issue?.[0]?.diagnostics ?? body?.issue?.[0]?.details?.text ?? 'not a transaction-response of every entry'}` };
}

function withHeader<T extends { headers?: Record<string, string> }>(request: T, authorization: string): T {
  return { ...request, headers: { ...request.headers, authorization } };
}

async function main(): Promise<void> {
  const startedAt = performance.now();
  const loadAtStart = round(loadavg()[0]);
  const prepared = await prepareDatabase();
  const sql = postgres(benchUrl.toString(), { max: settings.connections, onnotice: () => undefined });
  const running: ChildServer[] = [];
  try {
    const [{ server_version: version }] = await sql<{ server_version: string }[]>`SHOW server_version`;
    const serverSettings = await postgresSettings(sql);
    const patientIds = (await sql<{ id: string }[]>`
      SELECT id FROM resources WHERE resource_type = 'Patient' AND NOT deleted ORDER BY random() LIMIT 10000`).map((r) => r.id);
    const [{ content: fixedPatient }] = await sql<{ content: string }[]>`
      SELECT content FROM resources WHERE resource_type = 'Patient' AND id = ${patientIds[0]}`;
    const randomMember = (): string => memberId(Math.floor(Math.random() * settings.patients));

    log('database ceiling: raw SQL reads through postgres.js');
    const readSql = () => sql`SELECT content FROM resources WHERE resource_type = 'Patient' AND id = ${pick(patientIds)}`;
    await queryLoad(readSql, settings.connections, settings.warmupSeconds);
    const dbCeiling = withLoadAverage(await queryLoad(readSql, settings.connections, settings.seconds));
    log(`database ceiling: ${dbCeiling.rps}/s, p50 ${dbCeiling.p50_ms} ms, p99 ${dbCeiling.p99_ms} ms`);

    log('HTTP ceiling: bare node:http server with a fixed Patient');
    const fixed = await startFixedResponseServer(fixedPatient);
    running.push(fixed);
    const fixedLoad = (seconds: number) => httpLoad({ url: fixed.url, connections: settings.connections, seconds, next: () => ({ path: `/fhir/Patient/${pick(patientIds)}` }) });
    await fixedLoad(settings.warmupSeconds);
    const httpCeiling = withLoadAverage(await fixedLoad(settings.seconds));
    log(`HTTP ceiling: ${httpCeiling.rps}/s, p50 ${httpCeiling.p50_ms} ms, p99 ${httpCeiling.p99_ms} ms`);
    await fixed.stop();
    running.pop();

    log('starting Baton');
    const baton = await startBatonProcess(benchUrl.toString());
    running.push(baton);
    // What an earlier run left unsealed in a kept database is sealed before anything is measured,
    // and the members a fresh seed queued for the $member-match index are indexed.
    await drainSealing(sql);
    const matchingIndex = await drainMatchingIndex(sql);
    const origin = new URL(baton.url).origin;
    const load = async (seconds: number, next: Parameters<typeof httpLoad>[0]['next']) => {
      const authorization = await baton.authorization();
      return httpLoad({ url: origin, connections: settings.connections, seconds, next: () => withHeader(next(), authorization) });
    };
    const get = async (url: string, init: RequestInit = {}) => fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: await baton.authorization() } });

    const readPath = () => ({ path: `/fhir/Patient/${pick(patientIds)}` });
    const read = await measure(
      'read',
      () => preflight('read', () => get(`${baton.url}/Patient/${patientIds[0]}`), (body) => body?.id === patientIds[0]),
      async () => {
        await load(settings.warmupSeconds, readPath);
        return load(settings.seconds, readPath);
      },
      sql,
    );

    const searchPath = () => ({ path: `/fhir/Patient?${new URLSearchParams({ identifier: `${MEMBER_SYSTEM}|${randomMember()}` })}` });
    const search = await measure(
      'search by identifier',
      () =>
        preflight(
          'search by identifier',
          () => get(`${baton.url}/Patient?${new URLSearchParams({ identifier: `${MEMBER_SYSTEM}|${memberId(0)}` })}`),
          (body) => body?.type === 'searchset' && body.entry?.filter((e: any) => e.search?.mode !== 'outcome').length === 1,
        ),
      async () => {
        await load(settings.warmupSeconds, searchPath);
        return load(settings.seconds, searchPath);
      },
      sql,
    );

    const createRequest = () => ({
      method: 'POST',
      path: '/fhir/Observation',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify(benchObservation(Math.floor(Math.random() * 1e6), `Patient/${pick(patientIds)}`)),
    });
    const create = await measure(
      'create',
      () => preflight('create', () => get(`${baton.url}/Observation`, createRequest()), (body) => typeof body?.id === 'string'),
      async () => {
        await load(settings.warmupSeconds, createRequest);
        return load(settings.seconds, createRequest);
      },
      sql,
    );

    log(`transaction: ${settings.transactionRuns} Bundles of ${settings.transactionEntries} entries`);
    const transactionRuns: number[] = [];
    let transactionError = (await postTransaction(baton, transactionBundle(10, patientIds))).error;
    for (let i = 0; i < settings.transactionRuns && !transactionError; i++) {
      const run = await postTransaction(baton, transactionBundle(settings.transactionEntries, patientIds));
      transactionError = run.error;
      if (!run.error) transactionRuns.push(round(run.seconds, 3));
    }
    if (transactionError) log(`transaction failed: ${transactionError}`);
    const transactionSealing = await drainSealing(sql);
    await baton.stop();
    running.pop();

    const medianSeconds = transactionRuns.length ? [...transactionRuns].sort((a, b) => a - b)[Math.floor(transactionRuns.length / 2)] : undefined;
    const transactionRate = medianSeconds === undefined ? undefined : round(settings.transactionEntries / medianSeconds);
    const lower = httpCeiling.rps <= dbCeiling.rps ? 'http' : 'db';
    const ceiling = Math.min(httpCeiling.rps, dbCeiling.rps);
    const ratio = (rps: number | undefined) => (rps === undefined ? undefined : round(rps / ceiling, 3));
    const clean = (m: Measured) => m.error === undefined && m.failed === 0;

    const seed = prepared.seed;
    const seeded = settings.patients + settings.observations;
    const report = {
      benchmark: 'bench:rest',
      config: {
        patients: settings.patients,
        observations: settings.observations,
        duration_s: settings.seconds,
        warmup_s: settings.warmupSeconds,
        connections: settings.connections,
        transaction_entries: settings.transactionEntries,
        database: `${BENCH_DATABASE} on ${benchUrl.host} (PostgreSQL ${version})`,
        postgres_settings: serverSettings,
        node: process.version,
        cpus: cpus().length,
        load_avg_1m_at_start: loadAtStart,
      },
      seed: seed
        ? {
            reused: false,
            patients_s: round(seed.patientsSeconds),
            observations_s: round(seed.observationsSeconds),
            resources_per_s: round(seeded / (seed.patientsSeconds + seed.observationsSeconds)),
            vacuum_analyze_s: round(seed.vacuumAnalyzeSeconds),
            via: 'store.writeVersions in-process, 5,000 resources per transaction, 3 transactions at once',
          }
        : { reused: true },
      ceilings: { http: httpCeiling, db: dbCeiling, lower, lower_rps: ceiling },
      matching_index_at_start: matchingIndex,
      baton: {
        read: { ...read, ratio: ratio(read.rps) },
        search_identifier: { ...search, ratio: ratio(search.rps) },
        create: { ...create, ratio: ratio(create.rps) },
        transaction: {
          entries: settings.transactionEntries,
          runs_s: transactionRuns,
          median_s: medianSeconds,
          resources_per_s: transactionRate,
          ratio: ratio(transactionRate),
          ...(transactionError ? { error: transactionError } : {}),
          audit_sealing: transactionSealing,
        },
      },
      targets: [
        { name: 'read_ratio', target: '>= 0.5 of the lower ceiling', value: ratio(read.rps), pass: clean(read) && (ratio(read.rps) ?? 0) >= 0.5 },
        { name: 'search_identifier_p99_ms', target: '<= 20', value: search.p99_ms, pass: clean(search) && (search.p99_ms ?? Infinity) <= 20 },
        { name: 'create_per_s', target: '>= 500', value: create.rps, pass: clean(create) && (create.rps ?? 0) >= 500 },
        { name: 'transaction_resources_per_s', target: '>= 3000', value: transactionRate, pass: !transactionError && (transactionRate ?? 0) >= 3000 },
      ],
      total_s: round((performance.now() - startedAt) / 1000, 1),
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    for (const server of running) await server.stop();
    await sql.end();
    if (!flags.keep) {
      log(`dropping ${BENCH_DATABASE}`);
      await dropDatabase();
    }
  }
}

await main();
