import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Bundle, BundleEntry, Resource, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Counter, LabelValues } from 'prom-client';
import { createApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { connectDatabase, type Database } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { createValidator } from '../src/fhir/profiles.ts';
import { createLogger } from '../src/logger.ts';
import { createMetrics, type Metrics } from '../src/ops/metrics.ts';
import { endpointResource } from '../src/workflow/directory.ts';
import { PartnerBreakers } from '../src/workflow/partner/breakers.ts';
import { OutboundClientKeys } from '../src/workflow/partner/client-keys.ts';
import { partnerClients } from '../src/workflow/partners.ts';
import type { RetryPolicy } from '../src/workflow/retry-policy.ts';
import { publishRuleSet } from '../src/workflow/routing-store.ts';
import { startWorkflowWorker } from '../src/workflow/worker.ts';
import { freshDatabase, tokenMinter } from '../test/support/baton.ts';
import { type FakeMember, startFakePartner } from '../test/support/fake-partner.ts';
import { CLIENT_ID, dataRequest, KEY_ID, PRIOR_PAYER } from '../test/workflow/workflow-support.ts';
import { count } from './arguments.ts';

/**
 * The requester workflow end to end (issue 7): N members at the new payer, N data-request Tasks
 * POSTed at once through the API, and one or two workflow workers (startWorkflowWorker, as the
 * server runs it; two = two processes sharing the queue: on PostgreSQL each has its own
 * connection pool, on PGlite they share the one connection) running them against a fake
 * partner on loopback that knows the N members and answers a seeded share of its requests 503.
 * Reports the completion time (first POST → last request ended), Tasks fulfilled / failed /
 * dead-lettered / unfinished, retries, duplicates (local resources per partner resource, stage
 * transitions per Task), step durations by step, and the job queue's own time per step: the
 * claim (one query per batch of up to `concurrency` jobs, shared by the steps it claimed) and
 * the record (the transaction writing the Task version, its AuditEvent and the job's next step),
 * taken from the very samples the worker feeds to baton_workflow_queue_seconds and
 * baton_workflow_step_duration_seconds. Setup (members, directory, routing) is not timed.
 * PostgreSQL when DATABASE_URL is set (a database of its own, dropped after), else PGlite.
 *
 *   npm run bench:workflow -- [--requests 1000] [--failure-rate 0.05] [--concurrency 16] [--workers 1|2]
 *     [--max-attempts 3] [--poll-ms 1000] [--time-limit 900] [--seed 1]
 */
const { values: flags } = parseArgs({
  options: {
    requests: { type: 'string' },
    'failure-rate': { type: 'string' },
    concurrency: { type: 'string' },
    workers: { type: 'string' },
    'max-attempts': { type: 'string' },
    'poll-ms': { type: 'string' },
    'time-limit': { type: 'string' },
    seed: { type: 'string' },
  },
});
const requests = count(flags.requests, undefined, 1000, 1, 'requests');
const failureRate = Number(flags['failure-rate'] ?? '0.05');
if (!(failureRate >= 0 && failureRate < 1)) throw new Error(`--failure-rate must be a number in [0, 1); got "${flags['failure-rate']}"`);
const config = loadConfig({});
const concurrency = count(flags.concurrency, undefined, config.workflow.concurrency, 1, 'concurrency');
const workers = count(flags.workers, undefined, 1, 1, 'workers');
if (workers > 2) throw new Error('--workers is 1 or 2');
const maxAttempts = count(flags['max-attempts'], undefined, 3, 1, 'max-attempts');
// The server's worker runs every second when idle (src/server.ts); a busy worker claims again at once.
const pollMs = count(flags['poll-ms'], undefined, 1000, 1, 'poll-ms');
const timeLimitSeconds = count(flags['time-limit'], undefined, 900, 1, 'time-limit');
const seed = count(flags.seed, undefined, 1, 0, 'seed');

/** Backoff in tens of milliseconds, so a run takes minutes; attempts as given (3: a step failing three times running is dead-lettered). */
const RETRY: Partial<RetryPolicy> = {
  maxAttempts,
  budgetMs: 120_000,
  baseMs: 50,
  capMs: 1000,
  byCode: { throttled: { baseMs: 50, capMs: 1000 }, 'circuit-open': { baseMs: 50, capMs: 1000 } },
};
const BASE = 'http://127.0.0.1/fhir';
const FINAL = ['fulfilled', 'failed', 'dead-lettered', 'manual-review', 'cancelled'];

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] : 0);
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;
const mean = (values: number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0);
const spread = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { n: sorted.length, p50_ms: round(percentile(sorted, 50), 3), p95_ms: round(percentile(sorted, 95), 3), mean_ms: round(mean(sorted), 3) };
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Step failures are logged at warn, one line each; only errors here, so stdout stays the JSON.
const logger = createLogger('error');
const { databaseUrl, drop } = await freshDatabase();
const db = await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections: concurrency + 8 });
await migrateDatabase(db);
const validator = await createValidator([], logger);
const app = createApp({ config: { baseUrl: BASE, maxBodyBytes: 64 * 1024 * 1024 }, db, logger, validator });
const authorization = `Bearer ${await tokenMinter(db, BASE)()}`;
const call = (path: string, method: string, json?: unknown) =>
  app.request(path, { method, headers: { authorization, 'content-type': 'application/fhir+json' }, ...(json ? { body: JSON.stringify(json) } : {}) });

// The partner knows every member: family name, birth date and card are unique to each.
const members: FakeMember[] = Array.from({ length: requests }, (_, i) => ({
  id: `bench-${i}`,
  family: `Benchmember${i}`,
  given: 'Alex',
  birthDate: `${1940 + (i % 60)}-${String(1 + (i % 12)).padStart(2, '0')}-${String(1 + (i % 28)).padStart(2, '0')}`,
  gender: i % 2 ? 'male' : 'female',
  memberId: `B${100_000 + i}-01`,
}));
const keys = new OutboundClientKeys(db);
await keys.get(KEY_ID);
const partner = await startFakePartner({ client: { clientId: CLIENT_ID, jwks: await keys.jwks() }, members, transientFailures: { rate: failureRate, seed } });

async function put(resource: Resource): Promise<void> {
  const response = await call(`/fhir/${resource.resourceType}/${resource.id}`, 'PUT', resource);
  if (response.status >= 300) throw new Error(`PUT ${resource.resourceType}: HTTP ${response.status} ${await response.text()}`);
}
await put({ resourceType: 'Organization', id: 'prior-payer', name: 'Prior Health Plan', identifier: [PRIOR_PAYER], active: true });
await put(
  endpointResource({
    id: 'prior-payer-fhir',
    baseUrl: partner.baseUrl,
    tokenUrl: partner.tokenUrl,
    clientId: CLIENT_ID,
    keyId: KEY_ID,
    // Loose: PGlite runs on the event loop, and a long query must not turn a partner's answer into a timeout.
    timeoutMs: 10_000,
    capabilities: ['single-member'],
    retryPolicy: RETRY,
    organization: 'Organization/prior-payer',
  }),
);
await publishRuleSet(db, { rules: [{ id: 'prior-payer', when: { payer: [`${PRIOR_PAYER.system}|${PRIOR_PAYER.value}`] }, endpoint: 'Endpoint/prior-payer-fhir' }] }, 'bench', 'bench routing', 100);

// The members here: Patient, the old card naming the prior payer, an active Consent. 50 members
// (150 PUTs) a transaction: on PGlite a transaction of some 280 PUTs fails ("bad buffer ID" in
// the one statement that reads and locks all their current rows).
for (let start = 0; start < requests; start += 50) {
  const entry: BundleEntry[] = [];
  for (let i = start; i < Math.min(requests, start + 50); i++) {
    const m = members[i];
    const patient = { resourceType: 'Patient', id: `member-${i}`, name: [{ family: m.family, given: [m.given] }], birthDate: m.birthDate, gender: m.gender, address: [{ state: 'MA' }] };
    const coverage = {
      resourceType: 'Coverage',
      id: `prior-${i}`,
      status: 'active',
      identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] }, system: 'urn:prior-payer:member-id', value: m.memberId }],
      beneficiary: { reference: `Patient/member-${i}` },
      payor: [{ identifier: PRIOR_PAYER, display: 'Prior Health Plan' }],
    };
    const consent = {
      resourceType: 'Consent',
      id: `consent-${i}`,
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '64292-6' }] }],
      patient: { reference: `Patient/member-${i}` },
      policy: [{ uri: 'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular' }],
      provision: { type: 'permit', period: { start: '2026-01-01', end: '2027-12-31' } },
    };
    for (const resource of [patient, coverage, consent]) entry.push({ resource: resource as BundleEntry['resource'], request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } });
  }
  const response = await call('/fhir', 'POST', { resourceType: 'Bundle', type: 'transaction', entry } satisfies Bundle);
  if (response.status !== 200) throw new Error(`members ${start}: HTTP ${response.status} ${await response.text()}`);
}

/**
 * A worker's own metrics, whose observations are also kept as samples: exact percentiles rather
 * than bucket estimates. A claim opens a batch; the steps observed until the next claim are the
 * ones it claimed (a worker never runs two passes at once), so a claim's time can be shared out.
 */
interface Samples {
  batches: { claimMs: number; steps: number }[];
  recordMs: number[];
  steps: { step: string; result: string; ms: number }[];
}
function sampledMetrics(): { metrics: Metrics; samples: Samples } {
  const metrics = createMetrics();
  const samples: Samples = { batches: [], recordMs: [], steps: [] };
  const queue = metrics.workflowQueueSeconds;
  const observeQueue = queue.observe.bind(queue);
  queue.observe = ((labels: LabelValues<'phase'>, seconds: number) => {
    if (labels.phase === 'claim') samples.batches.push({ claimMs: seconds * 1000, steps: 0 });
    else samples.recordMs.push(seconds * 1000);
    observeQueue(labels, seconds);
  }) as typeof queue.observe;
  const steps = metrics.workflowSteps;
  const observeStep = steps.observe.bind(steps);
  steps.observe = ((labels: LabelValues<'step' | 'result'>, seconds: number) => {
    samples.steps.push({ step: String(labels.step), result: String(labels.result), ms: seconds * 1000 });
    const batch = samples.batches.at(-1);
    if (batch) batch.steps += 1;
    observeStep(labels, seconds);
  }) as typeof steps.observe;
  return { metrics, samples };
}

/** The second worker is a second process: its own pool (PostgreSQL), keys cache, breakers and metrics. */
const pools: Database[] = [db];
for (let n = 1; n < workers; n++) pools.push(databaseUrl ? await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections: concurrency + 4 }) : db);
const instruments = pools.map(() => sampledMetrics());

const loadBefore = loadavg()[0];
let loadMax = loadBefore;
const loadTimer = setInterval(() => (loadMax = Math.max(loadMax, loadavg()[0])), 1000);
// The workers, the API and the partner share this process's event loop: its delay is time every step and record waits.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
const lag = (nanoseconds: number) => Math.max(0, nanoseconds / 1e6 - 10);
const cpuBefore = process.cpuUsage();
const firstPostMs = Date.now();
const started = performance.now();
const running = pools.map((pool, n) =>
  startWorkflowWorker(
    {
      db: pool,
      baseUrl: BASE,
      validator,
      logger,
      metrics: instruments[n].metrics,
      config: { ...config.workflow, concurrency },
      partnerClient: partnerClients({ keys: new OutboundClientKeys(pool), breakers: new PartnerBreakers(), logger }),
    },
    pollMs,
  ),
);

// N member requests at once, as an enrollment system posting a day's new members would.
const postLatencies: number[] = [];
const taskIds = await Promise.all(
  members.map(async (_, i) => {
    const sent = performance.now();
    const response = await call('/fhir/Task', 'POST', dataRequest(`member-${i}`, `Coverage/prior-${i}`, `Consent/consent-${i}`, `bench-${i}`));
    postLatencies.push(performance.now() - sent);
    if (response.status !== 201) throw new Error(`Task ${i}: HTTP ${response.status} ${await response.text()}`);
    return ((await response.json()) as Task).id as string;
  }),
);
const intakeSeconds = (performance.now() - started) / 1000;
// The intake's lag apart: N in-process requests at once are one burst, not the worker's doing.
// (A stall is sampled when the loop turns again, so let it turn first.)
await sleep(50);
const intakeLagMaxNs = loopDelay.max;
loopDelay.reset();

const open = async () => (await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM workflow_jobs WHERE status IN ('queued', 'running')`))[0].n;
let timedOut = false;
while ((await open()) > 0) {
  if (performance.now() - started > timeLimitSeconds * 1000) {
    timedOut = true;
    break;
  }
  await sleep(250);
}
await Promise.all(running.map((r) => r.stop()));
clearInterval(loadTimer);
loopDelay.disable();
const cpu = process.cpuUsage(cpuBefore);
const wallSeconds = (performance.now() - started) / 1000;

// When the last request ended, by the database's clock (the same machine's).
const [ended] = await db.execute<{ lastMs: number | null }>(
  sql`SELECT (extract(epoch FROM max(updated)) * 1000)::float8 AS "lastMs" FROM workflow_jobs WHERE status NOT IN ('queued', 'running')`,
);
const completionSeconds = ended.lastMs === null ? wallSeconds : (Number(ended.lastMs) - firstPostMs) / 1000;

// Each Task's stage timeline from its versions: a transition is a version whose stage differs from the one before.
const versions = await db.execute<{ id: string; stage: string | null }>(
  sql`SELECT id, content::jsonb #>> '{businessStatus,coding,0,code}' AS stage FROM resource_history WHERE resource_type = 'Task' ORDER BY id, version_id`,
);
const stageCounts: Record<string, number> = {};
let duplicateTransitions = 0;
let tasksWithDuplicateTransitions = 0;
const lastStage = new Map<string, string>();
{
  let current = '';
  let seen = new Set<string>();
  let previous: string | null = null;
  let duplicated = false;
  for (const { id, stage } of versions) {
    if (id !== current) {
      if (duplicated) tasksWithDuplicateTransitions += 1;
      current = id;
      seen = new Set();
      previous = null;
      duplicated = false;
    }
    if (stage !== null && stage !== previous) {
      if (seen.has(stage)) {
        duplicateTransitions += 1;
        duplicated = true;
      }
      seen.add(stage);
    }
    previous = stage;
    if (stage !== null) lastStage.set(id, stage);
  }
  if (duplicated) tasksWithDuplicateTransitions += 1;
}
for (const id of taskIds) {
  const stage = lastStage.get(id) ?? 'unknown';
  stageCounts[stage] = (stageCounts[stage] ?? 0) + 1;
}

// Imports: one local resource per partner resource (meta.source names it), whatever the retries.
const [imports] = await db.execute<{ resources: number; sources: number; duplicated: number }>(sql`
  SELECT count(*)::int AS resources, count(DISTINCT source)::int AS sources, (count(*) - count(DISTINCT source))::int AS duplicated
  FROM (SELECT content::jsonb #>> '{meta,source}' AS source FROM resources WHERE NOT deleted AND content::jsonb #>> '{meta,source}' LIKE ${`${partner.baseUrl}/%`}) imported`);
// A retried import reads pages it already imported: they must leave the stored resources as they were, not write them again.
const [rewritten] = await db.execute<{ n: number }>(
  sql`SELECT count(*)::int AS n FROM resource_history WHERE version_id > 1 AND content::jsonb #>> '{meta,source}' LIKE ${`${partner.baseUrl}/%`}`,
);
const [quarantined] = await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM workflow_quarantine`);
const jobStatus = Object.fromEntries(
  (await db.execute<{ status: string; n: number }>(sql`SELECT status, count(*)::int AS n FROM workflow_jobs GROUP BY status ORDER BY status`)).map((r) => [r.status, Number(r.n)]),
);
const deadLetterCodes = Object.fromEntries(
  (await db.execute<{ code: string; n: number }>(sql`SELECT last_error ->> 'code' AS code, count(*)::int AS n FROM workflow_jobs WHERE status IN ('dead-lettered', 'failed') GROUP BY 1`)).map((r) => [
    r.code,
    Number(r.n),
  ]),
);

const counterTotal = async (counter: Counter<string>) => {
  const byLabel: Record<string, number> = {};
  for (const value of (await counter.get()).values) {
    const label = String(Object.values(value.labels)[0]);
    byLabel[label] = (byLabel[label] ?? 0) + value.value;
  }
  return byLabel;
};
const merge = (parts: Record<string, number>[]) => parts.reduce<Record<string, number>>((all, part) => {
  for (const [key, value] of Object.entries(part)) all[key] = (all[key] ?? 0) + value;
  return all;
}, {});
const retries = merge(await Promise.all(instruments.map((i) => counterTotal(i.metrics.workflowRetries))));
const slaBreaches = merge(await Promise.all(instruments.map((i) => counterTotal(i.metrics.workflowSlaBreaches))));

// The queue's own time: claims that found work, shared among the steps they claimed; empty claims are the idle polls.
const batches = instruments.flatMap((i) => i.samples.batches);
const working = batches.filter((b) => b.steps > 0);
const claimPerStep = working.flatMap((b) => Array.from({ length: b.steps }, () => b.claimMs / b.steps));
const recordMs = instruments.flatMap((i) => i.samples.recordMs);
const steps = instruments.flatMap((i) => i.samples.steps);
const stepMs = steps.map((s) => s.ms);
const byStep: Record<string, unknown> = {};
for (const name of ['validate', 'route', 'match', 'request', 'poll', 'import']) {
  const of = steps.filter((s) => s.step === name);
  if (of.length === 0) continue;
  byStep[name] = { ...spread(of.map((s) => s.ms)), failed: of.filter((s) => s.result === 'error').length };
}
const overheadMeanMs = mean(claimPerStep) + mean(recordMs);
const calls = partner.calls.filter((c) => c.route !== 'token');

console.log(
  JSON.stringify(
    {
      database: db.kind,
      requests,
      failure_rate: failureRate,
      failure_seed: seed,
      workers,
      concurrency_per_worker: concurrency,
      worker_poll_ms: pollMs,
      retry_policy: RETRY,
      sla_seconds: config.workflow.sla,
      intake: { seconds: round(intakeSeconds), post_latency: spread(postLatencies), event_loop_lag_max_ms: round(lag(intakeLagMaxNs)) },
      completion_seconds: round(completionSeconds),
      throughput_requests_per_s: round(requests / completionSeconds, 1),
      timed_out: timedOut,
      tasks: {
        fulfilled: stageCounts.fulfilled ?? 0,
        failed: stageCounts.failed ?? 0,
        dead_lettered: stageCounts['dead-lettered'] ?? 0,
        manual_review: stageCounts['manual-review'] ?? 0,
        not_finished: taskIds.filter((id) => !FINAL.includes(lastStage.get(id) ?? '')).length,
        by_stage: stageCounts,
        jobs_by_status: jobStatus,
        ended_by_error_code: deadLetterCodes,
      },
      retries: { total: Object.values(retries).reduce((a, b) => a + b, 0), by_code: retries },
      partner: {
        calls: calls.length,
        injected_503: calls.filter((c) => c.fault === 'transient').length,
        idempotent_replays: calls.filter((c) => c.replayed).length,
        token_requests: partner.count('token'),
      },
      duplicates: {
        imported_resources: Number(imports.resources),
        distinct_partner_resources: Number(imports.sources),
        duplicate_imports: Number(imports.duplicated),
        imported_versions_rewritten: Number(rewritten.n),
        quarantined: Number(quarantined.n),
        duplicate_stage_transitions: duplicateTransitions,
        tasks_with_duplicate_transitions: tasksWithDuplicateTransitions,
      },
      sla_breaches: slaBreaches,
      steps: { all: spread(stepMs), by_step: byStep },
      queue_overhead: {
        source: 'the samples the workers observe into baton_workflow_queue_seconds (claim per batch, record per successful step)',
        claims_with_work: working.length,
        steps_per_claim: round(claimPerStep.length / Math.max(1, working.length)),
        claim_per_batch: spread(working.map((b) => b.claimMs)),
        claim_per_step: spread(claimPerStep),
        record_per_step: spread(recordMs),
        per_step_mean_ms: round(overheadMeanMs, 3),
        share_of_mean_step_time: round(overheadMeanMs / Math.max(1e-9, mean(stepMs)), 3),
        idle_claims: { n: batches.length - working.length, mean_ms: round(mean(batches.filter((b) => b.steps === 0).map((b) => b.claimMs)), 3) },
      },
      wall_seconds: round(wallSeconds),
      process: {
        cpu_seconds: round((cpu.user + cpu.system) / 1e6),
        cpu_ms_per_request: round((cpu.user + cpu.system) / 1000 / requests, 1),
        // The histogram's samples include its 10 ms sampling interval: the lag is what comes on top.
        event_loop_lag_after_intake_ms: { p50: round(lag(loopDelay.percentile(50))), p99: round(lag(loopDelay.percentile(99))), max: round(lag(loopDelay.max)) },
      },
      load_average: { before: round(loadBefore), max: round(loadMax), after: round(loadavg()[0]) },
    },
    null,
    2,
  ),
);
await partner.close();
for (const pool of new Set(pools)) await pool.close();
await drop();
