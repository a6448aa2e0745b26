import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { loadConfig } from '../src/config.ts';
import { populationOptions } from '../src/seed/population.ts';
import { prepareExportDatabase } from './export-database.ts';
import { type BatonProcess, buildBaton, rssSampler, startBaton } from './export-servers.ts';
import { freePort } from './servers.ts';
import { round } from './load.ts';
import { withTokens } from './servers.ts';
import { count } from './arguments.ts';

/*
 * bench:export — Bulk Data $export end to end on PostgreSQL (issue 6, "Figures").
 *
 * A kept database (export-database.ts) holds --members members with their clinical data and
 * payer records (--care-years of care drawn in periods of --care-period-months: by default five
 * years in half-years, ~59 resources per member, so 100,000 members make the issue's ≥ 5M
 * resources), and a Group of the first --group-members Patients (by id). Baton runs as deployed
 * when it scales out, compiled (npm run build): one API process (BATON_EXPORT_WORKER=off: it
 * accepts kick-offs, answers status and streams files) and one worker process (plans jobs), on
 * one public base URL. For a system export and
 * the Group export, as a client would: kick-off → poll the status URL as Retry-After says →
 * download every file, --concurrency at a time, with the client's token. Measured: seconds
 * (planning and downloads apart), resources/s and MB/s end to end, the peak resident set of each
 * Baton process (sampled every 100 ms, and VmHWM), and the raw ceiling of the same rows:
 * `COPY (SELECT content …) TO STDOUT` through postgres.js (for the system export a scan of the
 * exported types as of transactionTime; for the Group export the rows the download held, joined
 * from a temporary table of their ids).
 *
 * Then the crash test: a system export whose worker process is SIGKILLed once half of the job's
 * types are planned (planning is the worker's whole part: files are streamed from the snapshot
 * by the API process), a new worker started, and the export downloaded: every resource exactly
 * once (ids counted across the files), as many as SQL counts in the snapshot as of
 * transactionTime.
 *
 * Prints one JSON object on stdout with the targets and whether each was met; progress on stderr.
 */

const { values: flags } = parseArgs({
  options: {
    members: { type: 'string' },
    'group-members': { type: 'string' },
    concurrency: { type: 'string' },
    'care-years': { type: 'string' },
    'care-period-months': { type: 'string' },
    seed: { type: 'string' },
    database: { type: 'string', default: 'baton_bench_export' },
    fresh: { type: 'boolean', default: false },
    'no-kill': { type: 'boolean', default: false },
  },
});

const settings = {
  members: count(flags.members, 'BENCH_EXPORT_MEMBERS', 100_000, 10, 'members'),
  groupMembers: count(flags['group-members'], undefined, 10_000, 1, 'group-members'),
  concurrency: count(flags.concurrency, undefined, 4, 1, 'concurrency'),
  seed: count(flags.seed, undefined, 11, 0, 'seed'),
  careYears: count(flags['care-years'], undefined, 5, 1, 'care-years'),
  carePeriodMonths: count(flags['care-period-months'], undefined, 6, 1, 'care-period-months'),
};
if (!/^[a-z_][a-z0-9_]{0,62}$/.test(flags.database)) throw new Error('--database must be a plain lower-case PostgreSQL name');
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const TARGETS = { resources_per_s: 20_000, ratio_to_copy: 0.4, rss_mb: 300, resources: 5_000_000 };
const GROUP_ID = 'bench-export-group';

const log = (message: string): void => void process.stderr.write(`[bench:export] ${message}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
const load1m = (): number => round(loadavg()[0]);
const seconds = (from: number): number => (performance.now() - from) / 1000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// --- the client ------------------------------------------------------------------------------

interface Manifest {
  transactionTime: string;
  output: { type: string; url: string; count: number }[];
  error: { type: string; url: string; count: number }[];
}

async function kickOff(base: string, path: string, authorization: string): Promise<string> {
  const response = await fetch(`${base}${path}`, { headers: { authorization, accept: 'application/fhir+json', prefer: 'respond-async' } });
  const body = await response.text();
  if (response.status !== 202) throw new Error(`kick-off ${path} answered ${response.status}: ${body.slice(0, 500)}`);
  return response.headers.get('content-location') as string;
}

/** Polls as Retry-After says until the manifest (or a failure, which ends the bench). */
async function waitForManifest(statusUrl: string, authorization: () => Promise<string>): Promise<{ manifest: Manifest; polls: number }> {
  for (let polls = 1; ; polls++) {
    const response = await fetch(statusUrl, { headers: { authorization: await authorization(), accept: 'application/json' } });
    const body = await response.text();
    if (response.status === 200) return { manifest: JSON.parse(body) as Manifest, polls };
    if (response.status !== 202 && response.status !== 429) throw new Error(`status answered ${response.status}: ${body.slice(0, 500)}`);
    await sleep(Number(response.headers.get('retry-after') ?? '1') * 1000);
  }
}

interface Downloaded {
  files: number;
  resources: number;
  bytes: number;
  /** `Type/id` of each line, when asked for. */
  refs?: string[];
  /** Files whose line count differed from the manifest's count. */
  countMismatches: number;
}

const NEWLINE = 10;
const ID_FIELD = Buffer.from('"id":"');
const QUOTE = 34;

/**
 * The id of an NDJSON line (the stored JSON starts with resourceType and id: the store writes
 * them first), copied out of the bytes: a substring of a decoded chunk would keep the whole
 * chunk alive (V8 sliced strings), and a 6M-resource export's chunks do not fit in the heap.
 */
function lineId(line: Buffer): string | undefined {
  const at = line.subarray(0, 300).indexOf(ID_FIELD);
  if (at < 0) return undefined;
  const start = at + ID_FIELD.length;
  const end = line.indexOf(QUOTE, start);
  return end < 0 ? undefined : line.toString('latin1', start, end);
}

/** Every output file, `concurrency` at a time, streamed: lines and bytes counted (and ids taken from each line's start, when asked). */
async function downloadAll(manifest: Manifest, authorization: () => Promise<string>, concurrency: number, collectRefs: boolean): Promise<Downloaded> {
  const result: Downloaded = { files: manifest.output.length, resources: 0, bytes: 0, countMismatches: 0, ...(collectRefs ? { refs: [] } : {}) };
  const queue = [...manifest.output];
  const one = async (file: Manifest['output'][number]): Promise<void> => {
    const response = await fetch(file.url, { headers: { authorization: await authorization(), accept: 'application/fhir+ndjson' } });
    if (response.status !== 200) throw new Error(`file ${file.url} answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
    let lines = 0;
    let tail = Buffer.alloc(0);
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      result.bytes += chunk.length;
      if (!collectRefs) {
        for (let i = chunk.indexOf(NEWLINE); i >= 0; i = chunk.indexOf(NEWLINE, i + 1)) lines++;
        continue;
      }
      const bytes = tail.length > 0 ? Buffer.concat([tail, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
      let start = 0;
      for (let end = bytes.indexOf(NEWLINE); end >= 0; start = end + 1, end = bytes.indexOf(NEWLINE, start)) {
        lines++;
        (result.refs as string[]).push(`${file.type}/${lineId(bytes.subarray(start, end))}`);
      }
      tail = Buffer.from(bytes.subarray(start));
    }
    if (collectRefs && tail.length > 0) throw new Error(`file ${file.url} does not end with a newline`);
    result.resources += lines;
    if (lines !== file.count) result.countMismatches++;
  };
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let file = queue.shift(); file; file = queue.shift()) await one(file);
    }),
  );
  return result;
}

// --- the database's side ---------------------------------------------------------------------

type Sql = postgres.Sql;

/** A literal of our own checked value, for COPY (which takes no parameters). */
function literal(value: string, pattern: RegExp): string {
  if (!pattern.test(value)) throw new Error(`unexpected value ${value.slice(0, 40)}`);
  return `'${value}'`;
}
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const TYPE = /^[A-Z][A-Za-z]+$/;

/** Resources of `types` in the snapshot as of `at`: the current row when written by then, else the latest version by then, not deleted. */
async function snapshotCount(sql: Sql, types: string[], at: string): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM resources r
    WHERE r.resource_type = ANY(${types}::text[]) AND (
      (r.last_updated <= ${at}::timestamptz AND NOT r.deleted)
      OR (r.last_updated > ${at}::timestamptz AND EXISTS (
        SELECT 1 FROM (SELECT h.deleted FROM resource_history h WHERE h.resource_type = r.resource_type AND h.id = r.id AND h.last_updated <= ${at}::timestamptz
          ORDER BY h.version_id DESC LIMIT 1) v WHERE NOT v.deleted)))`;
  return n;
}

interface Ceiling {
  seconds: number;
  resources: number;
  bytes: number;
  resources_per_s: number;
  mb_per_s: number;
}

/**
 * COPY (query) TO STDOUT read to the end through postgres.js: rows (lines) and bytes. On a
 * client of its own, ended after: a connection that served a COPY stream took no query after it.
 */
async function copyCeiling(sql: Sql, query: string): Promise<Ceiling> {
  const started = performance.now();
  const stream = await sql.unsafe(`COPY (${query}) TO STDOUT`).readable();
  let lines = 0;
  let bytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
  }
  const s = seconds(started);
  return { seconds: round(s, 2), resources: lines, bytes, resources_per_s: Math.round(lines / s), mb_per_s: round(bytes / 1e6 / s, 1) };
}

async function systemCeiling(url: string, types: string[], at: string): Promise<Ceiling> {
  const list = types.map((t) => literal(t, TYPE)).join(', ');
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  try {
    return await copyCeiling(sql, `SELECT content FROM resources WHERE resource_type IN (${list}) AND NOT deleted AND last_updated <= ${literal(at, INSTANT)}::timestamptz`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** The rows a download held, by id: loaded into a temporary table (not timed), then copied out joined to resources. */
async function rowsCeiling(url: string, refs: string[]): Promise<Ceiling> {
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  try {
    await sql`CREATE TEMPORARY TABLE bench_rows (resource_type text, id text, PRIMARY KEY (resource_type, id))`;
    for (let i = 0; i < refs.length; i += 50_000) {
      const slice = refs.slice(i, i + 50_000).map((ref) => ref.split('/'));
      await sql`INSERT INTO bench_rows SELECT * FROM unnest(${slice.map((r) => r[0])}::text[], ${slice.map((r) => r[1])}::text[]) ON CONFLICT DO NOTHING`;
    }
    await sql`ANALYZE bench_rows`;
    return await copyCeiling(sql, 'SELECT r.content FROM bench_rows b JOIN resources r USING (resource_type, id)');
  } finally {
    await sql.end({ timeout: 1 });
  }
}

// --- the runs --------------------------------------------------------------------------------

interface Cluster {
  api: BatonProcess;
  worker: BatonProcess;
  base: string;
  authorization: () => Promise<string>;
}

interface JobRow {
  status: string;
  types: string[] | null;
  planned: number;
  attempts: number;
}

async function jobRow(sql: Sql, statusUrl: string): Promise<JobRow | undefined> {
  const id = statusUrl.slice(statusUrl.lastIndexOf('/') + 1);
  const [row] = await sql<JobRow[]>`SELECT status, types, planned, attempts FROM export_jobs WHERE id = ${id}`;
  return row;
}

async function measureExport(cluster: Cluster, sql: Sql, url: string, path: string, kind: 'system' | 'group') {
  if (kind === 'system') {
    // The same rows read once, untimed, so Baton and the ceiling both start from a warm cache (the
    // resources table fits in memory; the ceiling, measured after Baton, would otherwise find it
    // warmed by Baton's own run, and Baton the cache as whatever ran before left it).
    const types = await sql<{ type: string }[]>`SELECT DISTINCT resource_type AS type FROM resources`;
    log(`warming the cache: ${round((await systemCeiling(url, types.map((t) => t.type), new Date().toISOString())).seconds, 1)} s`);
  }
  const processes = { api: cluster.api, worker: cluster.worker };
  const sampler = rssSampler(processes);
  const started = performance.now();
  const statusUrl = await kickOff(cluster.base, path, await cluster.authorization());
  const { manifest, polls } = await waitForManifest(statusUrl, cluster.authorization);
  const planned = seconds(started);
  const downloadStarted = performance.now();
  log(`${kind} export planned in ${round(planned, 2)} s: ${manifest.output.length} files; downloading`);
  const downloaded = await downloadAll(manifest, cluster.authorization, settings.concurrency, kind === 'group');
  const total = seconds(started);
  const download = seconds(downloadStarted);
  const peak = sampler.peak();
  sampler.stop();
  const job = (await jobRow(sql, statusUrl)) as JobRow;
  const expected = manifest.output.reduce((n, f) => n + f.count, 0);
  log(`${kind} export: ${downloaded.resources} resources, ${round(downloaded.bytes / 1e6)} MB in ${round(total, 1)} s; measuring the COPY ceiling (load average ${load1m()})`);
  const ceiling = kind === 'system' ? await systemCeiling(url, job.types ?? [], manifest.transactionTime) : await rowsCeiling(url, downloaded.refs as string[]);
  const resourcesPerSecond = Math.round(downloaded.resources / total);
  return {
    resources: downloaded.resources,
    manifest_count: expected,
    files: downloaded.files,
    file_count_mismatches: downloaded.countMismatches,
    types: job.types?.length ?? 0,
    mb: round(downloaded.bytes / 1e6, 1),
    seconds: round(total, 2),
    kickoff_to_manifest_s: round(planned, 2),
    download_s: round(download, 2),
    status_polls: polls,
    resources_per_s: resourcesPerSecond,
    mb_per_s: round(downloaded.bytes / 1e6 / total, 1),
    download_only_resources_per_s: Math.round(downloaded.resources / download),
    peak_rss_mb: peak,
    copy_ceiling: ceiling,
    ratio_to_copy: round(resourcesPerSecond / ceiling.resources_per_s, 3),
    load_avg_1m_at_end: load1m(),
  };
}

async function killTest(cluster: Cluster, sql: Sql, startWorker: () => Promise<BatonProcess>) {
  const started = performance.now();
  const statusUrl = await kickOff(cluster.base, '/$export', await cluster.authorization());
  // Halfway: half of the job's types planned (each type's files are cut in one step of the worker).
  let killedAt: { planned: number; types: number; after_s: number } | undefined;
  for (;;) {
    const job = await jobRow(sql, statusUrl);
    if (!job || job.status === 'completed' || job.status === 'failed') break;
    if (job.types && job.planned >= Math.ceil(job.types.length / 2)) {
      await cluster.worker.kill();
      killedAt = { planned: job.planned, types: job.types.length, after_s: round(seconds(started), 2) };
      log(`worker killed with ${job.planned}/${job.types.length} types planned; starting another`);
      break;
    }
    await sleep(10);
  }
  if (killedAt) cluster.worker = await startWorker();
  const { manifest } = await waitForManifest(statusUrl, cluster.authorization);
  const planned = seconds(started);
  const job = (await jobRow(sql, statusUrl)) as JobRow;
  const downloaded = await downloadAll(manifest, cluster.authorization, settings.concurrency, true);
  const refs = downloaded.refs as string[];
  const distinct = new Set(refs).size;
  const expected = await snapshotCount(sql, job.types ?? [], manifest.transactionTime);
  const exactlyOnce = distinct === refs.length && refs.length === expected;
  return {
    worker_killed: killedAt !== undefined,
    killed_at: killedAt ?? 'the job completed before half of it was planned',
    attempts: job.attempts,
    kickoff_to_manifest_s: round(planned, 2),
    total_s: round(seconds(started), 2),
    resources_downloaded: refs.length,
    distinct_resources: distinct,
    duplicates: refs.length - distinct,
    snapshot_count_sql: expected,
    file_count_mismatches: downloaded.countMismatches,
    every_resource_exactly_once: exactlyOnce,
  };
}

async function main(): Promise<void> {
  const loadAtStart = load1m();
  const config = loadConfig({ ...process.env, DATABASE_URL: adminUrl });
  const population = populationOptions({
    members: settings.members,
    seed: settings.seed,
    idPrefix: 'bx',
    payerRecords: true,
    careYears: settings.careYears,
    carePeriodMonths: settings.carePeriodMonths,
  });
  const prepared = await prepareExportDatabase({ adminUrl, database: flags.database, population, payer: config.payer, fresh: flags.fresh, log });
  log(`database ready (${prepared.reused ? 'kept' : 'loaded'}): ${prepared.load.resources} resources, ${prepared.size_gb} GB`);
  const sql = postgres(prepared.url, { max: 2, onnotice: () => undefined });

  log('building dist/ (npm run build)');
  buildBaton();
  const apiPort = await freePort();
  const base = `http://127.0.0.1:${apiPort}/fhir`;
  // One public base URL for every process, short leases so a killed worker's job is taken over soon, polls every second;
  // the processes and PostgreSQL share this machine's clock, so the skew margin a job waits before planning is small.
  const env = { BATON_BASE_URL: base, BATON_EXPORT_POLL_SECONDS: '1', BATON_EXPORT_LEASE_SECONDS: '10', BATON_EXPORT_CLOCK_SKEW_MS: '50' };
  const startWorker = async () => startBaton(prepared.url, await freePort(), { ...env, BATON_EXPORT_WORKER: 'on' });
  const api = await startBaton(prepared.url, apiPort, { ...env, BATON_EXPORT_WORKER: 'off' });
  const worker = await startWorker();
  const tokens = await withTokens({ url: base, stop: async () => undefined }, prepared.url);
  const cluster: Cluster = { api, worker, base, authorization: () => tokens.authorization(['system/*.*']) };
  const idle = { api: api.memory(), worker: worker.memory() };
  try {
    // The Group: the first Patients by id, written through the API (a new version each run, before any export's transactionTime).
    const patients = await sql<{ id: string }[]>`SELECT id FROM resources WHERE resource_type = 'Patient' AND NOT deleted ORDER BY id LIMIT ${settings.groupMembers}`;
    const group = { resourceType: 'Group', id: GROUP_ID, type: 'person', actual: true, member: patients.map((p) => ({ entity: { reference: `Patient/${p.id}` } })) };
    const put = await fetch(`${base}/Group/${GROUP_ID}`, {
      method: 'PUT',
      headers: { authorization: await cluster.authorization(), 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
      body: JSON.stringify(group),
    });
    if (put.status !== 200 && put.status !== 201) throw new Error(`PUT Group answered ${put.status}: ${(await put.text()).slice(0, 500)}`);
    await put.arrayBuffer();

    // Earlier runs' jobs (this bench's own, kept until they expire) and their dead rows weigh on a
    // Group export's inserts; PostgreSQL here runs without autovacuum.
    await sql`DELETE FROM export_jobs`;
    await sql`VACUUM (ANALYZE) export_jobs, export_items, export_patients, export_files`;
    log(`system export (load average ${load1m()})`);
    const system = await measureExport(cluster, sql, prepared.url, '/$export', 'system');
    log(`Group export of ${patients.length} members (load average ${load1m()})`);
    const groupExport = await measureExport(cluster, sql, prepared.url, `/Group/${GROUP_ID}/$export`, 'group');
    let crash;
    if (!flags['no-kill']) {
      log(`system export with the worker killed halfway (load average ${load1m()})`);
      crash = await killTest(cluster, sql, startWorker);
    }
    const rssPeak = Math.max(...[system, groupExport].flatMap((e) => Object.values(e.peak_rss_mb)));
    const output = {
      bench: 'export',
      scale: {
        members: prepared.load.members,
        resources: prepared.load.resources,
        group_members: patients.length,
        database_gb: prepared.size_gb,
        full_size: prepared.load.resources >= TARGETS.resources,
      },
      load: prepared.load,
      database_reused: prepared.reused,
      processes: 'one API process (BATON_EXPORT_WORKER=off) and one worker process, on PostgreSQL',
      concurrency: settings.concurrency,
      idle_rss_mb: { api: idle.api?.rssMb, worker: idle.worker?.rssMb },
      system_export: system,
      group_export: groupExport,
      ...(crash ? { worker_killed_halfway: crash } : {}),
      peak_rss_hwm_mb: { api: cluster.api.memory()?.hwmMb, worker: cluster.worker.memory()?.hwmMb },
      targets: TARGETS,
      met: {
        resources_per_s: system.resources_per_s >= TARGETS.resources_per_s && groupExport.resources_per_s >= TARGETS.resources_per_s,
        ratio_to_copy: system.ratio_to_copy >= TARGETS.ratio_to_copy && groupExport.ratio_to_copy >= TARGETS.ratio_to_copy,
        rss_flat: rssPeak <= TARGETS.rss_mb,
        crash_exactly_once: crash ? crash.worker_killed && crash.every_resource_exactly_once : null,
        resources_at_scale: prepared.load.resources >= TARGETS.resources,
      },
      load_avg_1m: { start: loadAtStart, end: load1m() },
    };
    process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
  } finally {
    await Promise.all([cluster.api.stop(), cluster.worker.stop()]);
    await tokens.stop();
    await sql.end();
  }
}

await main();
