import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import { Registry } from 'prom-client';
import { createApp } from '../src/app.ts';
import { SigningKeyStore } from '../src/auth/signing-keys.ts';
import { loadConfig } from '../src/config.ts';
import { connectDatabase } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { createValidator } from '../src/fhir/profiles.ts';
import { createLogger } from '../src/logger.ts';
import { startSubscriptionDelivery, subscriptionMetrics } from '../src/subscriptions/delivery.ts';
import { freshDatabase, tokenMinter } from '../test/support/baton.ts';
import { count } from './arguments.ts';

/**
 * Subscription delivery end to end, in one Baton process: N active rest-hook subscriptions to
 * the HRex Task topic, each filtered on its own Task owner, and E Task writes spread over them
 * (so each write is matched against every subscription and notifies one). A loopback HTTP
 * receiver acknowledges every notification. Reports the notification latency from the write's
 * commit (its 2xx) to the receipt of the notification carrying it, p50/p99; throughput from the
 * first write to the last receipt; the process CPU per delivered event; the same number of events
 * delivered as a backlog (delivery alone: throughput and CPU per event); and what the outbox adds
 * to a write: Task writes with no subscription at all, with N subscriptions none of which
 * matches, and Observation writes (no topic). PostgreSQL when DATABASE_URL is set, else PGlite.
 *
 *   npm run bench:subscriptions -- [--subscriptions 1000] [--events 10000] [--writers 8]
 */
const { values: flags } = parseArgs({ options: { subscriptions: { type: 'string' }, events: { type: 'string' }, writers: { type: 'string' } } });
const subscriptions = count(flags.subscriptions, undefined, 1000, 1, 'subscriptions');
const events = count(flags.events, undefined, 10_000, 1, 'events');
const writers = count(flags.writers, undefined, 8, 1, 'writers');
const BASE = 'http://127.0.0.1/fhir';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

const logger = createLogger('warn');
const { databaseUrl, drop } = await freshDatabase();
const db = await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections: 20 });
await migrateDatabase(db);
const validator = await createValidator([], logger);
const config = loadConfig({});
const app = createApp({ config: { baseUrl: BASE, maxBodyBytes: 16 * 1024 * 1024 }, db, logger, validator });
const authorization = `Bearer ${await tokenMinter(db, BASE)()}`;
const call = (path: string, method: string, json?: unknown) =>
  app.request(path, { method, headers: { authorization, 'content-type': 'application/fhir+json' }, ...(json ? { body: JSON.stringify(json) } : {}) });

/** Commit time of each Task write (its 2xx), and receipt time of its notification. */
const committed = new Map<string, number>();
const latencies: number[] = [];
let notifications = 0;
let lastReceipt = 0;
const receiver = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const now = performance.now();
    const bundle = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    notifications += 1;
    for (const entry of bundle.entry.slice(1)) {
      const at = committed.get(entry.fullUrl.slice(BASE.length + 1));
      if (at !== undefined) latencies.push(now - at);
    }
    lastReceipt = now;
    response.writeHead(200).end();
  });
});
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/notify`;

/** Writes `n` resources with `clients` concurrent clients; returns each write's latency, ms. */
async function write(n: number, resource: (i: number) => Record<string, unknown>, clients = writers): Promise<number[]> {
  const times: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = next++; i < n; i = next++) {
        const body = resource(i);
        const start = performance.now();
        const response = await call(`/fhir/${body.resourceType as string}/${body.id as string}`, 'PUT', body);
        const end = performance.now();
        if (response.status >= 300) throw new Error(`write ${i}: HTTP ${response.status} ${await response.text()}`);
        times.push(end - start);
        committed.set(`${body.resourceType as string}/${body.id as string}`, end);
        // Requests come over the network in a server: the event loop turns between them. Called
        // in process (PGlite answers without I/O), the writes would otherwise keep the worker's
        // timer from ever firing until they end.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }),
  );
  return times.sort((a, b) => a - b);
}

const task = (prefix: string, owners: number) => (i: number) => ({ resourceType: 'Task', id: `${prefix}-${i}`, status: 'requested', intent: 'order', owner: { reference: `Organization/owner-${i % owners}` } });
const summary = (times: number[]) => ({ p50_ms: round(percentile(times, 50)), p99_ms: round(percentile(times, 99)) });

const probe = Math.min(events, 1000);
const writeCost: Record<string, unknown> = {};
// What the outbox adds to a write, one client at a time (no queueing behind other writes).
writeCost.observation_no_topic = summary(await write(probe, (i) => ({ resourceType: 'Observation', id: `obs-${i}`, status: 'final', code: { text: 'bench' } }), 1));
writeCost.task_no_subscription = summary(await write(probe, task('warm', subscriptions), 1));

// N subscriptions, each to its own owner's Tasks, created through the API and handshaken.
for (let i = 0; i < subscriptions; i++) {
  const response = await call('/fhir/Subscription', 'POST', {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'bench',
    criteria: 'http://hl7.org/fhir/us/davinci-hrex/SubscriptionTopic/Task',
    _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: `Task?owner=Organization/owner-${i}` }] },
    channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json', _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] } },
  });
  if (response.status !== 201) throw new Error(`subscription ${i}: HTTP ${response.status} ${await response.text()}`);
}
const registry = new Registry();
const worker = startSubscriptionDelivery({ db, baseUrl: BASE, config: config.subscriptions, signingKeys: new SigningKeyStore(db), metrics: subscriptionMetrics(registry), logger });
const activeCount = async () => (await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM subscriptions WHERE status = 'active'`))[0].n;
const handshakeStart = performance.now();
while ((await activeCount()) < subscriptions) await new Promise((resolve) => setTimeout(resolve, 100));
const handshakeSeconds = (performance.now() - handshakeStart) / 1000;

// Task writes matched against every subscription, none of which wants them (an owner no subscription names).
writeCost.task_no_match = summary(await write(probe, (i) => ({ ...task('miss', subscriptions)(i), owner: { reference: 'Organization/nobody' } }), 1));
latencies.length = 0;
notifications = 0;

const loadBefore = loadavg()[0];
const cpuBefore = process.cpuUsage();
const start = performance.now();
const writeTimes = await write(events, task('event', subscriptions));
const writesDone = performance.now();
while (latencies.length < events && performance.now() - writesDone < 120_000) await new Promise((resolve) => setTimeout(resolve, 50));
const cpu = process.cpuUsage(cpuBefore);
await worker.stop();
latencies.sort((a, b) => a - b);
const live = { delivered: latencies.length, notifications, latencies: [...latencies], lastReceipt };

// Delivery alone: the same number of events recorded while no worker runs, then delivered as a
// backlog (batched up to the max count per notification). CPU is this process's: the worker
// and the receiver's parsing, no writes.
await write(events, task('backlog', subscriptions));
latencies.length = 0;
notifications = 0;
const backlogCpuBefore = process.cpuUsage();
const backlogStart = performance.now();
const drainer = startSubscriptionDelivery({ db, baseUrl: BASE, config: config.subscriptions, signingKeys: new SigningKeyStore(db), metrics: subscriptionMetrics(registry), logger });
while (latencies.length < events && performance.now() - backlogStart < 300_000) await new Promise((resolve) => setTimeout(resolve, 20));
const backlogSeconds = (lastReceipt - backlogStart) / 1000;
const backlogCpu = process.cpuUsage(backlogCpuBefore);
await drainer.stop();
const backlog = {
  delivered: latencies.length,
  notifications,
  events_per_notification: round(latencies.length / Math.max(1, notifications)),
  seconds: round(backlogSeconds),
  events_per_s: round(latencies.length / backlogSeconds, 1),
  cpu_ms_per_event: round((backlogCpu.user + backlogCpu.system) / 1000 / Math.max(1, latencies.length), 3),
  cpu_ms_per_notification: round((backlogCpu.user + backlogCpu.system) / 1000 / Math.max(1, notifications), 3),
};

console.log(
  JSON.stringify(
    {
      database: db.kind,
      subscriptions,
      events,
      writers,
      handshakes_seconds: round(handshakeSeconds),
      live: {
        delivered: live.delivered,
        notifications: live.notifications,
        events_per_notification: round(live.delivered / Math.max(1, live.notifications)),
        latency_commit_to_receipt_ms: { p50: round(percentile(live.latencies, 50)), p99: round(percentile(live.latencies, 99)), max: round(live.latencies.at(-1) ?? 0) },
        write_seconds: round((writesDone - start) / 1000),
        throughput_events_per_s: round(live.delivered / ((live.lastReceipt - start) / 1000), 1),
        cpu_ms_per_event_including_writes: round((cpu.user + cpu.system) / 1000 / Math.max(1, live.delivered), 3),
        event_write_ms: summary(writeTimes),
      },
      backlog,
      write_cost_one_client: writeCost,
      load_average: [round(loadBefore), round(loadavg()[0])],
    },
    null,
    2,
  ),
);
receiver.close();
await db.close();
await drop();
