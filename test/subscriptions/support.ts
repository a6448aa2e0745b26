import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { SigningKeyStore } from '../../src/auth/signing-keys.ts';
import { loadConfig, type SubscriptionConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/connection.ts';
import { SubscriptionDeliverer, subscriptionMetrics } from '../../src/subscriptions/delivery.ts';
import { bumpRegistryVersion } from '../../src/subscriptions/events.ts';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { BASE_URL, startBaton, type TestBaton } from '../support/baton.ts';

/** What a receiver got: one POST. */
export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  bundle: any;
  at: number;
}

/**
 * A subscriber's endpoint: a real HTTP server on loopback. `respond` decides each answer (status
 * and an optional delay); by default 200 at once.
 */
export interface Receiver {
  url: string;
  received: Received[];
  respond: (request: Received) => { status: number; delayMs?: number };
  /** Notifications of a kind (handshake, heartbeat, event-notification), in arrival order. */
  ofType(type: string): Received[];
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const receiver = {
    url: '',
    received: [] as Received[],
    respond: (_request: Received) => ({ status: 200 }) as { status: number; delayMs?: number },
    ofType: (type: string) => receiver.received.filter((r) => statusParameter(r.bundle, 'type') === type),
    close: async (): Promise<void> => undefined,
  };
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const got: Received = { path: request.url ?? '', headers: request.headers, body: text, bundle: JSON.parse(text || 'null'), at: Date.now() };
      const answer = receiver.respond(got);
      // Recorded only when acknowledged with a 2xx, as a subscriber would process it.
      const finish = () => {
        if (answer.status < 300) receiver.received.push(got);
        if (!response.destroyed) response.writeHead(answer.status).end();
      };
      if (answer.delayMs) setTimeout(finish, answer.delayMs);
      else finish();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/notify`;
  receiver.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return receiver;
}

/** A parameter of the SubscriptionStatus (entry 0) of a notification. */
export function statusParameter(bundle: any, name: string): any {
  const parameter = bundle?.entry?.[0]?.resource?.parameter?.find((p: { name: string }) => p.name === name);
  if (!parameter) return undefined;
  return parameter.valueCode ?? parameter.valueString ?? parameter.valueCanonical ?? parameter.valueReference?.reference;
}

/** Event numbers of a notification, in order. */
export function eventNumbers(bundle: any): number[] {
  return (bundle?.entry?.[0]?.resource?.parameter ?? [])
    .filter((p: { name: string }) => p.name === 'notification-event')
    .map((p: { part: { name: string; valueString?: string }[] }) => Number(p.part.find((part) => part.name === 'event-number')?.valueString));
}

/** The delivery settings of an empty environment, with quick retries for tests. */
export function testDeliveryConfig(overrides: Partial<SubscriptionConfig> = {}): SubscriptionConfig {
  return { ...loadConfig({}).subscriptions, retryBaseMs: 50, maxBackoffSeconds: 1, pollMs: 20, ...overrides };
}

export function deliverer(db: Database, config: SubscriptionConfig = testDeliveryConfig(), registry = new Registry()): SubscriptionDeliverer {
  return new SubscriptionDeliverer({ db, baseUrl: BASE_URL, config, signingKeys: new SigningKeyStore(db), metrics: subscriptionMetrics(registry) });
}

/** Runs delivery passes until nothing is due (or the time is up): what a worker would do by then. */
export async function deliverDue(worker: SubscriptionDeliverer, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const claimed = await worker.runPending();
    await worker.idle();
    if (claimed === 0) return;
  }
}

/** Waits until `check` holds, polling; fails the test with `what` after the timeout. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
export const HREX_TASK_TOPIC = 'http://hl7.org/fhir/us/davinci-hrex/SubscriptionTopic/Task';

/** A Backport Subscription to the endpoint: the Inferno sample's shape, with our topic, filters and payload level. */
export function subscription(endpoint: string, options: { topic?: string; filters?: string[]; content?: string; heartbeat?: number; maxCount?: number; timeout?: number; header?: string[] } = {}) {
  const channelExtensions = [
    ...(options.heartbeat ? [{ url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: options.heartbeat }] : []),
    ...(options.timeout ? [{ url: `${BACKPORT}/backport-timeout`, valueUnsignedInt: options.timeout }] : []),
    ...(options.maxCount ? [{ url: `${BACKPORT}/backport-max-count`, valuePositiveInt: options.maxCount }] : []),
  ];
  return {
    resourceType: 'Subscription',
    meta: { profile: [`${BACKPORT}/backport-subscription`] },
    status: 'requested',
    reason: 'test',
    criteria: options.topic ?? HREX_TASK_TOPIC,
    ...(options.filters ? { _criteria: { extension: options.filters.map((valueString) => ({ url: `${BACKPORT}/backport-filter-criteria`, valueString })) } } : {}),
    channel: {
      ...(channelExtensions.length ? { extension: channelExtensions } : {}),
      type: 'rest-hook',
      endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: options.content ?? 'id-only' }] },
      ...(options.header ? { header: options.header } : {}),
    },
  };
}

export function task(id: string, extra: Record<string, unknown> = {}) {
  return { resourceType: 'Task', id, status: 'requested', intent: 'order', for: { reference: 'Patient/sub-patient' }, owner: { reference: 'Organization/payer-a' }, ...extra };
}

/** Each test's subscriptions only: every earlier one is switched off, as a DELETE would (registry version bumped). */
export async function switchOffAll(db: Database): Promise<void> {
  await db.transaction(async (q) => {
    await q.execute(sql`UPDATE subscriptions SET status = 'off'`);
    await bumpRegistryVersion(q);
  });
}

/**
 * A file's Baton and receiver: started once, closed after; before each test the receiver
 * forgets what it got and answers 200 again, and earlier tests' subscriptions are switched off.
 */
export function batonWithReceiver(): { baton: TestBaton; receiver: Receiver } {
  const harness = {} as { baton: TestBaton; receiver: Receiver };
  beforeAll(async () => {
    harness.baton = await startBaton();
    harness.receiver = await startReceiver();
  });
  afterAll(async () => {
    await harness.receiver?.close();
    await harness.baton?.close();
  });
  beforeEach(async () => {
    harness.receiver.received.length = 0;
    harness.receiver.respond = () => ({ status: 200 });
    await switchOffAll(harness.baton.db);
  });
  return harness;
}
