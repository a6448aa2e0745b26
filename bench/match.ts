import { Agent, request as httpRequest } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import type { OperationOutcome, Parameters } from '@medplum/fhirtypes';
import { findClientIdsByName, createClient } from '../src/auth/clients.ts';
import { loadConfig } from '../src/config.ts';
import { connectDatabase, type Database } from '../src/db/connection.ts';
import { type BlockingResult, findCandidates, termFrequenciesFor } from '../src/matching/index-store.ts';
import { policyInForce } from '../src/matching/policy-store.ts';
import { resolveMember } from '../src/matching/resolve.ts';
import type { TermFrequencies } from '../src/matching/score.ts';
import { MEMBER_MATCH } from '../src/operations/member-match.ts';
import { populationOptions } from '../src/seed/population.ts';
import { NEW_PAYER_NPI } from '../test/operations/member-match-support.ts';
import { tokenMinter } from '../test/support/baton.ts';
import { round } from './load.ts';
import { cpuPerRequest, cpuSnapshot } from './match-cpu.ts';
import { prepareDatabase } from './match-database.ts';
import { type BenchRequest, buildRequests, sampleMembers } from './match-requests.ts';
import { startBatonProcess } from './servers.ts';
import { count } from './arguments.ts';
import { postgresSettings } from './postgres-settings.ts';

/*
 * npm run bench:match [-- --members N --requests N --warmup N --serial N --concurrency N --query-seed N
 *                         --sample N --max-cards N --database NAME --fresh --reindex]
 * (or BENCH_MATCH_MEMBERS; defaults 1,000,000 members, 3,000 measured requests after 300 of
 * warm-up and 200 from one client, 8 concurrent clients, a sample of ~20,000 members to build
 * requests from, BATON_MEMBER_MATCH_MAX_CARDS 1000 for the server)
 *
 * Issue 5's $member-match figures on PostgreSQL, in one run:
 * - a population of N members (Patient and Coverage, no clinical data) and the blocking index
 *   caught up over it, in a database kept between runs (bench/match-database.ts): the load and
 *   the catch-up are timed when they happen and their figures kept with the database;
 * - Baton (src/server.ts as a child process) answering POST /fhir/Patient/$member-match from
 *   a registered partner client: labelled requests (bench/match-requests.ts), each with its
 *   Consent and CoverageToLink, sent once each by `concurrency` closed-loop clients over
 *   keep-alive connections, after a warm-up on other requests and a run from one client (latency
 *   without queueing); latency per request (client side, from write to last byte), throughput,
 *   CPU per request of Baton and of the database's backends (/proc), statuses, and latency by
 *   outcome: a match writes (Patient identifier on a member's first match, Coverage, Consent,
 *   grant, decision, audit), a no-match writes only its decision and attempt row, so their
 *   difference is mostly writes;
 * - on the same requests and at the same concurrency, straight on the database: the blocking
 *   query (findCandidates) and the term-frequency query (termFrequenciesFor); and the engine
 *   (resolveMember on the candidates found) in this process, one request at a time.
 * Prints one JSON object on stdout, with the target (p95 <= 25 ms end to end) and whether it
 * was met; progress goes to stderr. It never fails on a figure.
 *
 * Requests are about members never asked about before when the query seed is new (it is drawn
 * at random unless given, and reported): a kept database collects each run's links and
 * decisions, and repeating a seed measures repeated matches (no Patient update) instead.
 */

const { values: flags } = parseArgs({
  options: {
    members: { type: 'string' },
    requests: { type: 'string' },
    warmup: { type: 'string' },
    concurrency: { type: 'string' },
    'query-seed': { type: 'string' },
    sample: { type: 'string' },
    'max-cards': { type: 'string' },
    serial: { type: 'string' },
    database: { type: 'string', default: 'baton_bench_match' },
    fresh: { type: 'boolean', default: false },
    reindex: { type: 'boolean', default: false },
  },
});

const settings = {
  members: count(flags.members, 'BENCH_MATCH_MEMBERS', 1_000_000, 100, 'members'),
  requests: count(flags.requests, undefined, 3000, 10, 'requests'),
  warmup: count(flags.warmup, undefined, 300, 0, 'warmup'),
  concurrency: count(flags.concurrency, undefined, 8, 1, 'concurrency'),
  querySeed: count(flags['query-seed'], undefined, 1 + Math.floor(Math.random() * 1_000_000_000), 0, 'query-seed'),
  sample: count(flags.sample, undefined, 20_000, 100, 'sample'),
  serial: count(flags.serial, undefined, 200, 0, 'serial'),
  // Requests are different people, yet twins and relatives share the demographics the guard keys on (3 of 3,000 were throttled at its default of 3).
  maxCards: count(flags['max-cards'], undefined, 1000, 1, 'max-cards'),
};
if (!/^[a-z_][a-z0-9_]{0,62}$/.test(flags.database)) throw new Error('--database must be a plain lower-case PostgreSQL name');
const TARGET_P95_MS = 25;
const PARTNER_NAME = 'bench:match partner';
const PARTNER_SCOPES = ['system/*.rs', MEMBER_MATCH];
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const log = (message: string): void => void process.stderr.write(`[bench:match] ${message}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
const load1m = (): number => round(loadavg()[0]);

// --- figures -------------------------------------------------------------------------------

interface Latencies {
  count: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
  mean_ms: number;
}

/** Nearest-rank percentiles of `values`, the mean and the largest. */
function distribution(values: number[]): { count: number; p50: number; p95: number; p99: number; max: number; mean: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (fraction: number) => (sorted.length === 0 ? Number.NaN : round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]));
  return { count: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1), mean: round(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)) };
}

function latencies(values: number[]): Latencies {
  const { count, p50, p95, p99, max, mean } = distribution(values);
  return { count, p50_ms: p50, p95_ms: p95, p99_ms: p99, max_ms: max, mean_ms: mean };
}

/** Runs `work` on every item once, `concurrency` at a time (closed loop); per-item ms and the rate. */
async function closedLoop<T, R>(items: T[], concurrency: number, work: (item: T) => Promise<R>): Promise<{ results: { item: T; ms: number; result: R }[]; seconds: number; per_s: number }> {
  const results: { item: T; ms: number; result: R }[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const item = items[next++];
        const t0 = performance.now();
        const result = await work(item);
        results.push({ item, ms: performance.now() - t0, result });
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { results, seconds: round(seconds), per_s: round(items.length / seconds, 1) };
}

// --- HTTP ----------------------------------------------------------------------------------

interface Answer {
  status: number;
  /** What the answer says: matched (with the member), or the 422 details code, or the status. */
  outcome: string;
  patientId?: string;
}

function post(agent: Agent, url: URL, body: string, authorization: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json', authorization, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function readAnswer(status: number, text: string): Answer {
  if (status === 200) {
    const parameters = JSON.parse(text) as Parameters;
    const reference = parameters.parameter?.find((p) => p.name === 'MemberId')?.valueReference?.reference;
    return { status, outcome: 'matched', ...(reference ? { patientId: reference.replace(/^Patient\//, '') } : {}) };
  }
  if (status === 422) {
    const outcome = JSON.parse(text) as OperationOutcome;
    const issue = outcome.issue?.[0];
    // Refusals of the operation carry a details code; input errors an issue code and the parameter's path.
    return { status, outcome: issue?.details?.coding?.[0]?.code ?? `invalid:${issue?.code ?? '?'}:${issue?.expression?.[0] ?? ''}` };
  }
  return { status, outcome: `http-${status}` };
}

function statusesOf(results: { result: Answer }[]): Record<string, number> {
  const statuses: Record<string, number> = {};
  for (const { result } of results) statuses[result.status] = (statuses[result.status] ?? 0) + 1;
  return statuses;
}

/** Latencies by what the answer said (matched, no-match, under-review…), most frequent first. */
function byOutcome(results: { ms: number; result: Answer }[]): Record<string, Latencies> {
  const grouped = new Map<string, number[]>();
  for (const { ms, result } of results) grouped.set(result.outcome, [...(grouped.get(result.outcome) ?? []), ms]);
  return Object.fromEntries([...grouped].sort((a, b) => b[1].length - a[1].length).map(([outcome, values]) => [outcome, latencies(values)]));
}

// --- the run -------------------------------------------------------------------------------

async function registerPartner(db: Database): Promise<string> {
  const [existing] = await findClientIdsByName(db, PARTNER_NAME, 'partner');
  if (existing) return existing;
  // The key is never used: tokens are minted with the server's key below, as its token endpoint would issue them.
  const jwks = { keys: [{ kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'bench' }] };
  const { client_id: clientId } = await createClient(db, { name: PARTNER_NAME, kind: 'partner', organizationIdentifiers: [NEW_PAYER_NPI], jwks, jwksUri: undefined, scopes: PARTNER_SCOPES });
  return clientId;
}

async function main(): Promise<void> {
  const startedAt = performance.now();
  const loadAtStart = load1m();
  process.env.BATON_MEMBER_MATCH_MAX_CARDS = String(settings.maxCards);
  // The child server reads the same environment: the same payer, use case and guard.
  const config = loadConfig();
  const population = populationOptions({ members: settings.members, seed: 1, idPrefix: 'bench', clinical: false });
  const prepared = await prepareDatabase({ adminUrl, database: flags.database, population, payer: config.payer, fresh: flags.fresh, reindex: flags.reindex, log });
  log(`database ready: ${JSON.stringify({ load: prepared.load, index: prepared.index, size_gb: prepared.size_gb })}`);

  // Requests about members spread over the population; warm-up requests are other people.
  const started = performance.now();
  const households = Math.ceil(settings.members / 2.3);
  const stride = Math.max(1, Math.floor(settings.members / settings.sample));
  const sample = sampleMembers(population, stride, settings.querySeed % stride);
  const requests = buildRequests(sample, { count: settings.warmup + settings.serial + settings.requests, seed: settings.querySeed, asOf: population.asOf });
  const warmup = requests.slice(0, settings.warmup);
  const serial = requests.slice(settings.warmup, settings.warmup + settings.serial);
  const measured = requests.slice(settings.warmup + settings.serial);
  log(`built ${requests.length} requests from ${sample.length} members (every ${stride}th of ~${households} households) in ${round((performance.now() - started) / 1000, 1)} s`);

  const db = await connectDatabase({ databaseUrl: prepared.url, dataDir: 'memory://', maxConnections: settings.concurrency });
  log('starting Baton');
  const baton = await startBatonProcess(prepared.url);
  let serving = true;
  try {
    const clientId = await registerPartner(db);
    const mint = tokenMinter(db, baton.url);
    let token = { header: '', minted: 0 };
    const authorization = async () => {
      // Tokens live five minutes; a fresh one every two.
      if (Date.now() - token.minted > 120_000) token = { header: `Bearer ${await mint({ clientId, kind: 'partner', scopes: PARTNER_SCOPES, organization: [NEW_PAYER_NPI] })}`, minted: Date.now() };
      return token.header;
    };
    const agent = new Agent({ keepAlive: true, maxSockets: settings.concurrency });
    const endpoint = new URL(`${baton.url}/Patient/$member-match`);
    const send = async (request: BenchRequest): Promise<Answer> => {
      const { status, text } = await post(agent, endpoint, request.body, await authorization());
      return readAnswer(status, text);
    };

    log(`warm-up: ${warmup.length} requests at ${settings.concurrency} concurrent`);
    await closedLoop(warmup, settings.concurrency, send);
    log(`one client: ${serial.length} requests`);
    let cpuBefore = cpuSnapshot(flags.database);
    const oneClient = await closedLoop(serial, 1, send);
    const oneClientCpu = cpuPerRequest(cpuBefore, cpuSnapshot(flags.database), serial.length);
    log(`measuring: ${measured.length} requests at ${settings.concurrency} concurrent (load average ${load1m()})`);
    const loadBeforeHttp = load1m();
    cpuBefore = cpuSnapshot(flags.database);
    const http = await closedLoop(measured, settings.concurrency, send);
    const httpCpu = cpuPerRequest(cpuBefore, cpuSnapshot(flags.database), measured.length);
    const loadAfterHttp = load1m();
    agent.destroy();

    const statuses = statusesOf(http.results);
    const accuracy = { matched_right: 0, matched_wrong: 0, matched_non_member: 0, missed_member: 0, refused_non_member: 0 };
    // Every false match by id and stratum (synthetic people, ids only), for the next run to look into.
    const falseMatches: { stratum: BenchRequest['stratum']; expected: string | null; matched: string | undefined }[] = [];
    for (const { item, result } of http.results) {
      if (result.outcome === 'matched') {
        if (item.patientId === result.patientId) accuracy.matched_right++;
        else {
          if (!item.patientId) accuracy.matched_non_member++;
          else accuracy.matched_wrong++;
          falseMatches.push({ stratum: item.stratum, expected: item.patientId ?? null, matched: result.patientId });
        }
      } else if (item.patientId) accuracy.missed_member++;
      else accuracy.refused_non_member++;
    }
    const end2end = latencies(http.results.map((r) => r.ms));
    log(`HTTP: ${JSON.stringify(end2end)} ${http.per_s}/s ${JSON.stringify(statuses)}`);
    await baton.stop();
    serving = false;

    // The database alone: the same queries, at the same concurrency.
    log('blocking query on the database');
    cpuBefore = cpuSnapshot(flags.database);
    const blocking = await closedLoop(measured, settings.concurrency, (request) => findCandidates(db, request.query));
    const blockingCpu = cpuPerRequest(cpuBefore, cpuSnapshot(flags.database), measured.length);
    log('term-frequency query on the database');
    cpuBefore = cpuSnapshot(flags.database);
    const frequencies = await closedLoop(measured, settings.concurrency, (request) => termFrequenciesFor(db, request.query));
    const frequencyCpu = cpuPerRequest(cpuBefore, cpuSnapshot(flags.database), measured.length);
    const candidates = new Map<BenchRequest, BlockingResult>(blocking.results.map((r) => [r.item, r.result]));
    const shares = new Map<BenchRequest, TermFrequencies>(frequencies.results.map((r) => [r.item, r.result]));

    // The engine, one request at a time in this process: normalize, compare, score and decide.
    const policy = await policyInForce(db);
    const engineMs: number[] = [];
    for (const request of measured) {
      const t0 = performance.now();
      resolveMember(request.query, (candidates.get(request) as BlockingResult).candidates, { policy, useCase: config.memberMatch.useCase, termFrequencies: shares.get(request) });
      engineMs.push(performance.now() - t0);
    }
    const blockingFigures = { ...latencies(blocking.results.map((r) => r.ms)), per_s: blocking.per_s, cpu_per_query: blockingCpu };
    const frequencyFigures = { ...latencies(frequencies.results.map((r) => r.ms)), per_s: frequencies.per_s, cpu_per_query: frequencyCpu };
    const engineFigures = latencies(engineMs);
    const sizes = (pick: (r: BlockingResult) => number) => distribution(blocking.results.map((r) => pick(r.result)));

    const outcomes = byOutcome(http.results);
    const matched = outcomes.matched as Latencies | undefined;
    const noMatch = outcomes['no-match'] as Latencies | undefined;
    const settingsSql = postgres(adminUrl, { max: 1, onnotice: () => undefined });
    const serverSettings = await postgresSettings(settingsSql).finally(() => settingsSql.end());
    const report = {
      benchmark: 'bench:match',
      target: { p95_ms: `<= ${TARGET_P95_MS}`, value: end2end.p95_ms, met: end2end.p95_ms <= TARGET_P95_MS },
      config: {
        ...settings,
        population: { members: settings.members, seed: population.seed, id_prefix: population.idPrefix, as_of: population.asOf, clinical: false },
        requests_from: `${sample.length} members of every ${stride}th household; strata of src/seed/match-queries.ts; each with CoverageToLink and a current Consent`,
        max_cards: `${config.memberMatch.maxCards} (BATON_MEMBER_MATCH_MAX_CARDS; the default 3 throttled twins and relatives asked about with other cards)`,
        database: `${flags.database} on ${new URL(adminUrl).host}`,
        postgres_settings: serverSettings,
        server: 'src/server.ts as a child process (LOG_LEVEL warn), one process',
        client: 'node:http keep-alive, latency from request write to last byte',
        node: process.version,
        cpus: cpus().length,
        load_avg_1m_at_start: loadAtStart,
      },
      database: {
        reused_population: prepared.reusedPopulation,
        reused_index: prepared.reusedIndex,
        migrate_s: prepared.migrate_s,
        vacuum_analyze_s: prepared.vacuum_analyze_s,
        autovacuum: prepared.autovacuum,
        load: prepared.load,
        index_catch_up: prepared.index,
        size_gb: prepared.size_gb,
      },
      http: {
        ...end2end,
        requests_per_s: http.per_s,
        seconds: http.seconds,
        cpu_per_request: httpCpu,
        statuses,
        by_outcome: outcomes,
        strata: Object.fromEntries([...new Set(measured.map((r) => r.stratum))].map((s) => [s, measured.filter((r) => r.stratum === s).length])),
        accuracy,
        false_matches: falseMatches,
        load_avg_1m: { before: loadBeforeHttp, after: loadAfterHttp },
      },
      one_client: {
        ...latencies(oneClient.results.map((r) => r.ms)),
        requests_per_s: oneClient.per_s,
        cpu_per_request: oneClientCpu,
        statuses: statusesOf(oneClient.results),
        by_outcome: byOutcome(oneClient.results),
      },
      database_alone: {
        blocking_query: blockingFigures,
        blocking_candidates: sizes((r) => r.candidates.length),
        blocking_keys: sizes((r) => r.keys),
        blocking_skipped_keys: sizes((r) => r.skippedKeys),
        blocking_passed_over: sizes((r) => r.passedOver),
        term_frequency_query: frequencyFigures,
        load_avg_1m_at_end: load1m(),
      },
      engine_in_process: { ...engineFigures, note: 'resolveMember on the candidates found, one request at a time in the bench process' },
      shares: {
        p50_blocking_over_http: round(blockingFigures.p50_ms / end2end.p50_ms, 3),
        p50_blocking_tf_engine_over_http: round((blockingFigures.p50_ms + frequencyFigures.p50_ms + engineFigures.p50_ms) / end2end.p50_ms, 3),
        p50_matched_minus_no_match_ms: matched && noMatch ? round(matched.p50_ms - noMatch.p50_ms) : null,
        p95_matched_minus_no_match_ms: matched && noMatch ? round(matched.p95_ms - noMatch.p95_ms) : null,
      },
      load_avg_1m_at_end: load1m(),
      total_s: round((performance.now() - startedAt) / 1000, 1),
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    if (serving) await baton.stop();
    await db.close();
  }
}

await main();
