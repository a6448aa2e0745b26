import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { AuditEvent, Bundle } from '@medplum/fhirtypes';
import postgres from 'postgres';
import { connectDatabase } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { AUDITED_SERVER, CLIENT_SYSTEM, castOf, loadTrail, SPAN } from './audit-population.ts';
import { httpLoad, type LoadFigures, pick, round } from './load.ts';
import { drainSealer, pendingEvents } from './sealing.ts';
import { benchObservation, seedPopulation } from './population.ts';
import { type BatonChild, type ChildServer, startBatonProcess, startPortPrintingChild, withTokens } from './servers.ts';
import { count } from './arguments.ts';
import { postgresSettings } from './postgres-settings.ts';

/*
 * npm run bench:audit [-- --events N --patients N --clients N --members N --duration S --warmup S
 *                         --connections N --query-connections N --rounds N --chunk N --parallel N
 *                         --threads N
 *                         --keep --fresh]
 * (or BENCH_AUDIT_EVENTS, default 10,000,000; the rest default to 50,000 patients, 200 clients,
 * 10,000 members, 10 s, 5 s, 32 connections, 4 query connections, 2 rounds, chunks of 2,000
 * events, 3 chunks in flight, 2 threads generating them)
 *
 * Issue 4's auditor-search and auditing-cost figures on PostgreSQL, in one run:
 * - loads N AuditEvents (bench/audit-population.ts: two years of partner traffic built with the
 *   production BALP builder) as the writer and the sealer leave them (audit_events, the hash
 *   chain, the search index), then VACUUM ANALYZE; reports the load time and rate and the
 *   database size;
 * - p50/p99 over HTTP (autocannon against `src/server.ts` as a child process, an auditor token
 *   holding system/AuditEvent.rs) of one member's events over a year, one client's failures in a
 *   day, and everything under one token; each answer of a sample is checked first;
 * - create and read throughput with auditing on (events, group-commit writer and sealer), off
 *   (bench/audit-server.ts, AppDeps.auditing false) and recording only (the sealer held off),
 *   in alternating rounds; after every audited run the sealer's backlog is drained (and timed)
 *   before the next run starts, so that sealing is charged to the runs that caused it.
 * Prints one JSON object on stdout; progress goes to stderr. It never fails on a figure.
 *
 * The database: `baton_bench_audit` on the server of DATABASE_URL (default the local `test`
 * one). Dropped at the end unless --keep; a kept database is reused (migrated forward) when it
 * was loaded with the same sizes and the same row-shaping code (a fingerprint in the database's
 * comment, with the load's figures), otherwise loaded again; --fresh always loads.
 */

const BENCH_DATABASE = 'baton_bench_audit';
const ROOT = new URL('..', import.meta.url);
const AUDITOR_SCOPES = ['system/AuditEvent.rs'];

const { values: flags } = parseArgs({
  options: {
    events: { type: 'string' },
    patients: { type: 'string' },
    clients: { type: 'string' },
    members: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    'query-connections': { type: 'string' },
    rounds: { type: 'string' },
    chunk: { type: 'string' },
    parallel: { type: 'string' },
    threads: { type: 'string' },
    keep: { type: 'boolean', default: false },
    fresh: { type: 'boolean', default: false },
  },
});

const settings = {
  events: count(flags.events, 'BENCH_AUDIT_EVENTS', 10_000_000, 1000, 'events'),
  patients: count(flags.patients, undefined, 50_000, 1, 'patients'),
  clients: count(flags.clients, undefined, 200, 1, 'clients'),
  /** Patients in the store for the throughput runs: creates reference them, reads read them. */
  members: count(flags.members, undefined, 10_000, 1, 'members'),
  seconds: count(flags.duration, undefined, 10, 1, 'duration'),
  warmupSeconds: count(flags.warmup, undefined, 5, 1, 'warmup'),
  connections: count(flags.connections, undefined, 32, 1, 'connections'),
  queryConnections: count(flags['query-connections'], undefined, 4, 1, 'query-connections'),
  rounds: count(flags.rounds, undefined, 2, 1, 'rounds'),
  chunk: count(flags.chunk, undefined, 2000, 100, 'chunk'),
  parallel: count(flags.parallel, undefined, 3, 1, 'parallel'),
  threads: count(flags.threads, undefined, 2, 1, 'threads'),
};
const population = { events: settings.events, patients: settings.patients, clients: settings.clients };
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const benchUrl = new URL(adminUrl);
benchUrl.pathname = `/${BENCH_DATABASE}`;

const log = (message: string): void => void process.stderr.write(`[bench:audit] ${message}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

const load1m = (): number => round(loadavg()[0]);

/**
 * What a loaded database was built from: sizes, and the code that shapes and writes its rows.
 * Migrations are not part of it: a kept database is migrated forward before it is used, as a
 * deployment's would be. Neither is the query side of search (sql.ts, parse.ts …), which
 * changes no stored row, so a query change is measured on the same data.
 */
const ROW_SHAPING = [
  'src/audit/chain.ts',
  'src/audit/event-keys.ts',
  'src/audit/event-index.ts',
  'src/fhir/search/extract.ts',
  'src/fhir/search/fhirpath.ts',
  'src/fhir/search/parameters.ts',
  'src/fhir/search/values.ts',
  'src/fhir/search/index-writer.ts',
  'src/audit/balp.ts',
  'bench/audit-population.ts',
  'bench/audit-load-worker.ts',
  'bench/population.ts',
];

function seedFingerprint(): string {
  const hash = createHash('sha256').update(JSON.stringify({ ...population, members: settings.members }));
  for (const file of ROW_SHAPING) hash.update(readFileSync(new URL(file, ROOT)));
  return `baton-bench-audit seed ${hash.digest('hex')}`;
}

interface Milestone {
  events: number;
  elapsed_s: number;
  /** Events per second since the previous milestone. */
  rate: number;
}

interface LoadReport {
  events: number;
  load_s: number;
  events_per_s: number;
  milestones: Milestone[];
  members_s: number;
  vacuum_analyze_s: number;
  load_avg_1m_at_end: number;
}

async function prepareDatabase(): Promise<{ reused: boolean; migrate_s?: number; load: LoadReport }> {
  const fingerprint = seedFingerprint();
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  try {
    const [existing] = await admin<{ comment: string | null }[]>`
      SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = ${BENCH_DATABASE}`;
    if (existing && !flags.fresh && existing.comment?.startsWith(`${fingerprint} `)) {
      log(`reusing the loaded database ${BENCH_DATABASE}; applying new migrations`);
      // Two connections: migrateDatabase holds its lock on one while the migrator runs on another.
      const db = await connectDatabase({ databaseUrl: benchUrl.toString(), dataDir: 'memory://', maxConnections: 2 });
      const started = performance.now();
      await migrateDatabase(db).finally(() => db.close());
      return { reused: true, migrate_s: round((performance.now() - started) / 1000, 1), load: JSON.parse(existing.comment.slice(fingerprint.length + 1)) as LoadReport };
    }
    if (existing) await admin.unsafe(`DROP DATABASE ${BENCH_DATABASE} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${BENCH_DATABASE}`);
    const db = await connectDatabase({ databaseUrl: benchUrl.toString(), dataDir: 'memory://', maxConnections: settings.parallel });
    try {
      await migrateDatabase(db);
      let started = performance.now();
      await seedPopulation(db, { patients: settings.members, observations: 0 }, () => undefined);
      const membersSeconds = (performance.now() - started) / 1000;

      log(`loading ${settings.events} AuditEvents into ${BENCH_DATABASE} (${settings.parallel} transactions of ${settings.chunk} in flight, ${settings.threads} threads generating)`);
      const milestones: Milestone[] = [];
      const step = Math.max(settings.chunk, Math.round(settings.events / 20));
      let last = { events: 0, at: 0 };
      started = performance.now();
      await loadTrail(db, population, { chunk: settings.chunk, parallel: settings.parallel, threads: settings.threads }, (done) => {
        if (done - last.events < step && done !== settings.events) return;
        const at = (performance.now() - started) / 1000;
        const milestone = { events: done, elapsed_s: round(at, 1), rate: round((done - last.events) / (at - last.at), 0) };
        milestones.push(milestone);
        last = { events: done, at };
        const eta = (settings.events - done) / milestone.rate;
        log(`loaded ${done}/${settings.events} in ${milestone.elapsed_s} s (${milestone.rate}/s lately; ~${Math.round(eta)} s to go; load average ${load1m()})`);
      });
      const loadSeconds = (performance.now() - started) / 1000;

      log('VACUUM (ANALYZE)');
      started = performance.now();
      const bench = postgres(benchUrl.toString(), { max: 1, onnotice: () => undefined });
      await bench.unsafe('VACUUM (ANALYZE)');
      await bench.end();
      const load: LoadReport = {
        events: settings.events,
        load_s: round(loadSeconds, 1),
        events_per_s: round(settings.events / loadSeconds, 0),
        milestones,
        members_s: round(membersSeconds, 1),
        vacuum_analyze_s: round((performance.now() - started) / 1000, 1),
        load_avg_1m_at_end: load1m(),
      };
      // Our own hash and numbers: no quote to escape, but double any as COMMENT takes no parameters.
      await admin.unsafe(`COMMENT ON DATABASE ${BENCH_DATABASE} IS '${`${fingerprint} ${JSON.stringify(load)}`.replaceAll("'", "''")}'`);
      return { reused: false, load };
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

const TABLES = ['audit_events', 'audit_chain', 'audit_index', 'audit_index_strings', 'audit_checkpoints', 'resources', 'resource_history'];

async function databaseSize(sql: postgres.Sql): Promise<Record<string, unknown>> {
  const [{ total }] = await sql<{ total: number }[]>`SELECT pg_database_size(current_database())::float8 AS total`;
  const tables = await sql<{ name: string; total: number; heap: number }[]>`
    SELECT relname AS name, pg_total_relation_size(oid)::float8 AS total, pg_table_size(oid)::float8 AS heap
    FROM pg_class WHERE relname = ANY(${TABLES}) AND relkind = 'r'`;
  const gb = (bytes: number) => round(bytes / 1024 ** 3, 2);
  return {
    total_gb: gb(total),
    bytes_per_event: Math.round(total / settings.events),
    extrapolated_10M_gb: gb((total / settings.events) * 10_000_000),
    tables_gb: Object.fromEntries(TABLES.map((name) => tables.find((t) => t.name === name)).filter((t) => t !== undefined).map((t) => [t.name, { total: gb(t.total), heap_and_toast: gb(t.heap) }])),
  };
}

/** One auditor query shape: its requests, and what every entry of an answer must satisfy. */
interface QueryShape {
  name: string;
  description: string;
  next: () => { path: string; check: (event: AuditEvent) => string | undefined };
}

const fhirDate = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
const DAY = 86_400_000;

function isSortedNewestFirst(events: AuditEvent[]): boolean {
  return events.every((e, i) => i === 0 || (events[i - 1].recorded as string) >= (e.recorded as string));
}

function queryShapes(jtis: string[]): QueryShape[] {
  const cast = castOf(population);
  const within = (event: AuditEvent, from: number, to: number) => Date.parse(event.recorded as string) >= from && Date.parse(event.recorded as string) < to;
  return [
    {
      name: 'patient_year',
      description: "one member's events over a year: patient, date ge/lt, _sort=-date, _count=50",
      next: () => {
        const patient = pick(cast.patients);
        const year = pick(SPAN.years);
        const params = new URLSearchParams([
          ['patient', `Patient/${patient}`],
          ['date', `ge${year}-01-01`],
          ['date', `lt${year + 1}-01-01`],
          ['_sort', '-date'],
          ['_count', '50'],
        ]);
        const [from, to] = [Date.UTC(year, 0, 1), Date.UTC(year + 1, 0, 1)];
        return {
          path: `/fhir/AuditEvent?${params}`,
          check: (e) =>
            !e.entity?.some((x) => x.what?.reference === `Patient/${patient}`) ? 'not about the member' : !within(e, from, to) ? 'recorded outside the year' : undefined,
        };
      },
    },
    {
      name: 'client_failures_day',
      description: "one client's failures in a day: agent:identifier=<issuer>|<client_id>, outcome=4,8,12, date ge/lt, _sort=-date",
      next: () => {
        const client = pick(cast.clients);
        const day = SPAN.from + Math.floor(Math.random() * ((SPAN.to - SPAN.from) / DAY)) * DAY;
        const params = new URLSearchParams([
          ['agent:identifier', `${CLIENT_SYSTEM}|${client}`],
          ['outcome', '4,8,12'],
          ['date', `ge${fhirDate(day)}`],
          ['date', `lt${fhirDate(day + DAY)}`],
          ['_sort', '-date'],
        ]);
        return {
          path: `/fhir/AuditEvent?${params}`,
          check: (e) =>
            !e.agent?.some((a) => a.who?.identifier?.system === CLIENT_SYSTEM && a.who.identifier.value === client)
              ? 'not by the client'
              : e.outcome === '0'
                ? 'not a failure'
                : !within(e, day, day + DAY)
                  ? 'recorded outside the day'
                  : undefined,
        };
      },
    },
    {
      name: 'token',
      description: 'everything under one token: policy=urn:ietf:params:oauth:jti:<jti>, _sort=-date',
      next: () => {
        const policy = pick(jtis);
        const params = new URLSearchParams([
          ['policy', policy],
          ['_sort', '-date'],
        ]);
        return { path: `/fhir/AuditEvent?${params}`, check: (e) => (!e.agent?.some((a) => a.policy?.includes(policy)) ? 'not under the token' : undefined) };
      },
    },
  ];
}

interface QueryReport extends Partial<LoadFigures> {
  description: string;
  example: string;
  /** Answers checked before the load: every entry matches, newest first. */
  checked: number;
  matches_per_answer: { mean: number; max: number; empty: number };
  load_avg_1m?: number;
  error?: string;
}

async function measureQuery(baton: BatonChild, shape: QueryShape, samples: number): Promise<QueryReport> {
  const authorization = await baton.authorization(AUDITOR_SCOPES);
  const origin = new URL(baton.url).origin;
  const counts: number[] = [];
  let example = '';
  for (let i = 0; i < samples; i++) {
    const { path, check } = shape.next();
    example ||= path;
    const response = await fetch(`${origin}${path}`, { headers: { authorization } });
    const bundle = (await response.json().catch(() => undefined)) as (Bundle & { issue?: { diagnostics?: string }[] }) | undefined;
    const error = !response.ok
      ? `${response.status}: ${bundle?.issue?.[0]?.diagnostics ?? 'no OperationOutcome'} (${path})`
      : bundle?.type !== 'searchset'
        ? `not a searchset (${path})`
        : undefined;
    const events = (bundle?.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource as AuditEvent);
    const wrong = events.map(check).find((problem) => problem !== undefined) ?? (isSortedNewestFirst(events) ? undefined : 'not newest first');
    if (error || wrong) {
      log(`${shape.name}: ${error ?? `an answer is wrong: ${wrong} (${path})`}; not measured`);
      return { description: shape.description, example, checked: i, matches_per_answer: { mean: 0, max: 0, empty: 0 }, error: error ?? wrong };
    }
    counts.push(events.length);
  }
  const matches = { mean: round(counts.reduce((a, b) => a + b, 0) / counts.length, 1), max: Math.max(...counts), empty: counts.filter((n) => n === 0).length };
  log(`${shape.name}: ${samples} answers checked (${matches.mean} matches on average); ${settings.seconds} s at ${settings.queryConnections} connections`);
  const run = (seconds: number) => httpLoad({ url: origin, connections: settings.queryConnections, seconds, next: () => ({ path: shape.next().path, headers: { authorization } }) });
  await run(settings.warmupSeconds);
  const figures = await run(settings.seconds);
  log(`${shape.name}: ${figures.rps}/s, p50 ${figures.p50_ms} ms, p99 ${figures.p99_ms} ms, failed ${figures.failed}`);
  return { description: shape.description, example, checked: samples, matches_per_answer: matches, ...figures, load_avg_1m: load1m() };
}

/**
 * off: no auditing; on: auditing with its sealer; writer: auditing while the sealer is held off
 * (the bench takes the sealer's lock), so the events are recorded and left for the sealer: the
 * cost of recording alone. writer runs on the `on` server.
 */
type Mode = 'off' | 'on' | 'writer';
const MODES: Mode[] = ['off', 'writer', 'on'];

/** The advisory lock sealers take turns on (src/audit/sealer.ts): held, every sealer skips its passes. */
const SEALER_LOCK = 'baton.audit_sealer';

/**
 * Events neither sealed nor pending: left behind the chain head, they would never be sealed.
 * Counts the whole trail (a full scan: minutes of I/O at 10M events, which evicted the cache and
 * starved the sealer when it was polled), so it is counted once, after every measurement.
 */
async function eventsLeftBehind(sql: postgres.Sql): Promise<number> {
  const [{ left }] = await sql<{ left: number }[]>`SELECT ((SELECT count(*) FROM audit_events) - (SELECT count(*) FROM audit_chain))::float8 AS left`;
  return left - (await pendingEvents(sql));
}

interface Run extends LoadFigures {
  mode: Mode;
  round: number;
  load_avg_1m: number;
  /** With auditing on (or writer): events waiting for the sealer when the run ended, and how long they took to seal. */
  sealer?: Awaited<ReturnType<typeof drainSealer>>;
}

async function measureThroughput(sql: postgres.Sql): Promise<Record<string, unknown>> {
  const patientIds = (await sql<{ id: string }[]>`SELECT id FROM resources WHERE resource_type = 'Patient' AND NOT deleted`).map((r) => r.id);
  const running: ChildServer[] = [];
  const lock = postgres(benchUrl.toString(), { max: 1, onnotice: () => undefined });
  try {
    const servers = {} as Record<'off' | 'on', BatonChild>;
    for (const mode of ['off', 'on'] as const) {
      const child = await startPortPrintingChild('bench/audit-server.ts', { BENCH_DATABASE_URL: benchUrl.toString(), BENCH_AUDITING: mode });
      servers[mode] = await withTokens({ url: `${child.url}/fhir`, stop: () => child.stop() }, benchUrl.toString());
      running.push(servers[mode]);
    }
    const loads = {
      create: () => ({
        method: 'POST',
        path: '/fhir/Observation',
        headers: { 'content-type': 'application/fhir+json' },
        body: JSON.stringify(benchObservation(Math.floor(Math.random() * 1e6), `Patient/${pick(patientIds)}`)),
      }),
      read: () => ({ path: `/fhir/Patient/${pick(patientIds)}`, headers: {} }),
    };
    const run = async (mode: Mode, kind: keyof typeof loads, seconds: number): Promise<LoadFigures> => {
      const server = servers[mode === 'off' ? 'off' : 'on'];
      const authorization = await server.authorization();
      const load = () =>
        httpLoad({
          url: new URL(server.url).origin,
          connections: settings.connections,
          seconds,
          next: () => {
            const request = loads[kind]();
            return { ...request, headers: { ...request.headers, authorization } };
          },
        });
      if (mode !== 'writer') return load();
      await lock`SELECT pg_advisory_lock(hashtext(${SEALER_LOCK}))`;
      try {
        return await load();
      } finally {
        await lock`SELECT pg_advisory_unlock(hashtext(${SEALER_LOCK}))`;
      }
    };

    // Events the latency runs recorded (auditor searches are audited) are sealed before anything is measured.
    log('throughput: sealing what earlier runs recorded');
    const before = await drainSealer(sql, log);
    for (const mode of ['off', 'on'] as const) {
      for (const kind of ['create', 'read'] as const) {
        log(`throughput: warming up ${kind} with auditing ${mode}`);
        await run(mode, kind, settings.warmupSeconds);
      }
    }
    await drainSealer(sql, log);

    const runs: Record<'create' | 'read', Run[]> = { create: [], read: [] };
    for (let round = 1; round <= settings.rounds; round++) {
      for (const mode of round % 2 === 1 ? MODES : [...MODES].reverse()) {
        for (const kind of ['create', 'read'] as const) {
          const figures = await run(mode, kind, settings.seconds);
          const loadAverage = load1m();
          const sealer = mode === 'off' ? undefined : await drainSealer(sql, log);
          const sealed = sealer ? `; sealer backlog ${sealer.pending}, sealed in ${sealer.drain_s} s` : '';
          log(`round ${round} ${kind} auditing ${mode}: ${figures.rps}/s, p99 ${figures.p99_ms} ms, failed ${figures.failed}${sealed}`);
          runs[kind].push({ mode, round, ...figures, load_avg_1m: loadAverage, ...(sealer ? { sealer } : {}) });
        }
      }
    }
    const leftBehind = await eventsLeftBehind(sql);
    return {
      sealed_before_s: before.drain_s,
      ...Object.fromEntries((['create', 'read'] as const).map((kind) => [kind, summarize(runs[kind])])),
      // Events recorded but behind the chain head: the sealer will never seal them (0 when it works).
      sealer_left_behind: leftBehind,
    };
  } finally {
    for (const server of running.reverse()) await server.stop();
    await lock.end();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  return Number.isInteger(middle) ? (sorted[middle - 1] + sorted[middle]) / 2 : sorted[Math.floor(middle)];
}

function summarize(runs: Run[]): Record<string, unknown> {
  const rounds = [...new Set(runs.map((r) => r.round))];
  const rpsOf = (mode: Mode, n: number) => runs.find((r) => r.mode === mode && r.round === n)?.rps ?? Number.NaN;
  const rps = (mode: Mode) => round(median(runs.filter((r) => r.mode === mode).map((r) => r.rps)));
  const ratios = (mode: Mode) => ({ per_round: rounds.map((n) => round(rpsOf(mode, n) / rpsOf('off', n), 3)), median_over_median: round(rps(mode) / rps('off'), 3) });
  // With auditing on, what the sealer keeps up with: the requests of a run over the run and the time its events took to seal after it.
  const sealedRps = round(median(runs.filter((r) => r.mode === 'on').map((r) => (r.rps * settings.seconds) / (settings.seconds + (r.sealer?.drain_s ?? 0)))));
  return {
    off_rps: rps('off'),
    on_rps: rps('on'),
    writer_rps: rps('writer'),
    on_over_off: ratios('on'),
    writer_over_off: ratios('writer'),
    on_sealed_rps: sealedRps,
    on_sealed_over_off: round(sealedRps / rps('off'), 3),
    runs,
  };
}

async function main(): Promise<void> {
  const startedAt = performance.now();
  const loadAtStart = load1m();
  const prepared = await prepareDatabase();
  const sql = postgres(benchUrl.toString(), { max: 2, onnotice: () => undefined });
  const running: ChildServer[] = [];
  try {
    const [{ server_version: version }] = await sql<{ server_version: string }[]>`SHOW server_version`;
    const serverSettings = await postgresSettings(sql);
    const size = await databaseSize(sql);
    log(`database: ${JSON.stringify(size)}`);
    const jtis = (
      await sql<{ value: string }[]>`
        SELECT DISTINCT a.policy AS value FROM audit_events e TABLESAMPLE SYSTEM (0.1), jsonb_array_elements((e.content::jsonb)->'agent') g, jsonb_array_elements_text(g->'policy') a(policy) LIMIT 5000`
    ).map((r) => r.value);

    log('starting Baton');
    const baton = await startBatonProcess(benchUrl.toString());
    running.push(baton);
    // Events recorded since the trail was loaded (an earlier run's) are sealed before anything is measured.
    log(`queries: sealing what earlier runs recorded (${await pendingEvents(sql)} events)`);
    await drainSealer(sql, log);
    const queries: Record<string, QueryReport> = {};
    for (const shape of queryShapes(jtis)) queries[shape.name] = await measureQuery(baton, shape, 50);
    await baton.stop();
    running.pop();

    const throughput = await measureThroughput(sql);

    const load = prepared.load;
    // The rate over the last quarter of the load, assumed to hold: it falls as the indexes outgrow memory, so this is a lower bound.
    const quarter = load.milestones.find((m) => m.events >= load.events * 0.75) ?? { events: 0, elapsed_s: 0 };
    const lastRate = quarter.events < load.events ? (load.events - quarter.events) / (load.load_s - quarter.elapsed_s) : load.events_per_s;
    const clean = (q: QueryReport) => q.error === undefined && q.failed === 0;
    const ratio = (kind: 'create' | 'read') => (throughput[kind] as { on_over_off: { median_over_median: number } }).on_over_off.median_over_median;
    const report = {
      benchmark: 'bench:audit',
      config: {
        ...settings,
        span: `${new Date(SPAN.from).toISOString()} to ${new Date(SPAN.to).toISOString()}`,
        audited_server: AUDITED_SERVER,
        database: `${BENCH_DATABASE} on ${benchUrl.host} (PostgreSQL ${version})`,
        postgres_settings: serverSettings,
        node: process.version,
        cpus: cpus().length,
        load_avg_1m_at_start: loadAtStart,
      },
      load: {
        reused: prepared.reused,
        ...(prepared.migrate_s === undefined ? {} : { migrate_s: prepared.migrate_s }),
        ...load,
        via: `audit_events, audit_chain and audit_index as the sealer leaves them, ${settings.chunk} AuditEvents per transaction, ${settings.parallel} transactions at once, ${settings.threads} threads generating and hashing`,
        last_quarter_events_per_s: round(lastRate, 0),
        extrapolated_10M_s: settings.events >= 10_000_000 ? load.load_s : round(load.load_s + (10_000_000 - settings.events) / lastRate, 0),
      },
      database_size: size,
      queries,
      throughput,
      targets: Object.entries(queries)
        .map(([name, q]) => ({ name: `${name}_p99_ms`, target: '<= 100', value: q.p99_ms, pass: clean(q) && (q.p99_ms ?? Infinity) <= 100 }))
        .concat([{ name: 'create_on_over_off', target: '>= 0.75', value: ratio('create'), pass: ratio('create') >= 0.75 }]),
      load_avg_1m_at_end: load1m(),
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
