import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connectDatabase, type Database } from '../../src/db/connection.ts';
import { startSubscriptionDelivery } from '../../src/subscriptions/delivery.ts';
import { SigningKeyStore } from '../../src/auth/signing-keys.ts';
import { subscriptionMetrics } from '../../src/subscriptions/delivery.ts';
import { Registry } from 'prom-client';
import { BASE_URL, body, startBaton, type TestBaton } from '../support/baton.ts';
import { deliverDue, deliverer, eventNumbers, eventually, type Receiver, startReceiver, statusParameter, subscription, task, testDeliveryConfig, switchOffAll } from './support.ts';

/**
 * Delivery that does not fail silently: a receiver down for a while loses nothing and gets
 * everything in order; past the retry budget the subscription goes to error (audited, heartbeats
 * say so) and a re-activation delivers what was missed; a slow receiver delays no other; event
 * numbers continue across a restart; heartbeats only when a period is set.
 */

let baton: TestBaton;
const receivers: Receiver[] = [];

beforeAll(async () => {
  baton = await startBaton();
});
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
  await baton?.close();
});
beforeEach(async () => {
  await switchOffAll(baton.db);
});

async function receiver(): Promise<Receiver> {
  const started = await startReceiver();
  receivers.push(started);
  return started;
}

async function subscribe(resource: Record<string, unknown>): Promise<string> {
  const response = await baton.request('/fhir/Subscription', { method: 'POST', json: resource });
  expect(response.status, await response.clone().text()).toBe(201);
  return (await body(response)).id as string;
}

const putTask = async (resource: Record<string, unknown>) => {
  const response = await baton.request(`/fhir/Task/${resource.id as string}`, { method: 'PUT', json: resource });
  expect(response.status).toBeLessThan(300);
};

const delivered = (r: Receiver) => r.ofType('event-notification').flatMap((n) => eventNumbers(n.bundle));

describe('an endpoint that fails', () => {
  it('gets every event, in order, once it answers again', async () => {
    const endpoint = await receiver();
    const id = await subscribe(subscription(endpoint.url, { maxCount: 2 }));
    const registry = new Registry();
    const worker = deliverer(baton.db, testDeliveryConfig(), registry);
    await deliverDue(worker);
    endpoint.respond = () => ({ status: 503 });
    for (let n = 1; n <= 5; n++) await putTask(task(`down-${id}-${n}`));
    // Several failed attempts, with backoff, while it is down.
    const until = Date.now() + 600;
    while (Date.now() < until) await deliverDue(worker, 100);
    const [state] = await baton.db.execute<{ attempts: number; status: string }>(sql`SELECT attempts, status FROM subscriptions WHERE id = ${id}`);
    expect(state.status).toBe('active');
    expect(state.attempts).toBeGreaterThan(1);
    endpoint.respond = () => ({ status: 200 });
    await baton.db.execute(sql`UPDATE subscriptions SET next_attempt_at = now() WHERE id = ${id}`);
    await deliverDue(worker);
    expect(delivered(endpoint)).toEqual([1, 2, 3, 4, 5]);
    // Every attempt is measured…
    const metrics = await registry.getSingleMetricAsString('baton_subscription_delivery_attempts_total');
    expect(metrics).toContain(`baton_subscription_delivery_attempts_total{type="event-notification",outcome="http-error"} ${state.attempts}`);
    expect(metrics).toContain('baton_subscription_delivery_attempts_total{type="event-notification",outcome="ok"} 3');
    // …and every failed attempt is in the audit trail, against the subscription.
    const audited = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM audit_events WHERE content LIKE ${`%Subscription/${id}%`} AND content LIKE '%HTTP 503%'`);
    expect(audited[0].n).toBe(state.attempts);
  });

  it('goes to error after the retry budget; heartbeats then say error; a re-activation delivers what was missed', async () => {
    const endpoint = await receiver();
    const id = await subscribe(subscription(endpoint.url, { heartbeat: 1 }));
    const worker = deliverer(baton.db, testDeliveryConfig({ retrySeconds: 0 }));
    await deliverDue(worker);
    endpoint.respond = (request) => ({ status: statusParameter(request.bundle, 'type') === 'event-notification' ? 500 : 200 });
    await putTask(task(`budget-${id}-1`));
    await deliverDue(worker);
    await baton.db.execute(sql`UPDATE subscriptions SET next_attempt_at = now() WHERE id = ${id}`);
    await deliverDue(worker);
    const stored = await body(await baton.request(`/fhir/Subscription/${id}`));
    expect(stored.status).toBe('error');
    expect(stored.error).toMatch(/retry budget/);
    // Events keep being recorded while in error.
    await putTask(task(`budget-${id}-2`));
    await baton.db.execute(sql`UPDATE subscriptions SET next_heartbeat_at = now() WHERE id = ${id}`);
    await deliverDue(worker);
    const heartbeat = endpoint.ofType('heartbeat').at(-1);
    expect(statusParameter(heartbeat?.bundle, 'status')).toBe('error');
    // The subscriber fixes its endpoint and asks again: handshake, then both events, in order.
    endpoint.respond = () => ({ status: 200 });
    const update = await baton.request(`/fhir/Subscription/${id}`, { method: 'PUT', json: { ...subscription(endpoint.url, { heartbeat: 1 }), id } });
    expect((await body(update)).status).toBe('requested');
    await deliverDue(worker);
    expect(delivered(endpoint)).toEqual([1, 2]);
    expect((await body(await baton.request(`/fhir/Subscription/${id}`))).status).toBe('active');
  });
});

describe('concurrency', () => {
  it('a slow endpoint does not delay another subscription', async () => {
    const slow = await receiver();
    const fast = await receiver();
    slow.respond = (request) => ({ status: 200, delayMs: statusParameter(request.bundle, 'type') === 'event-notification' ? 3000 : 0 });
    await subscribe(subscription(slow.url));
    await subscribe(subscription(fast.url));
    const running = startSubscriptionDelivery({ db: baton.db, baseUrl: BASE_URL, config: testDeliveryConfig(), signingKeys: new SigningKeyStore(baton.db), metrics: subscriptionMetrics(new Registry()) });
    try {
      await eventually(() => slow.ofType('handshake').length + fast.ofType('handshake').length === 2, 'both handshakes');
      const written = Date.now();
      await putTask(task('slow-and-fast'));
      await eventually(() => delivered(fast).length === 1, 'the fast endpoint notified', 2000);
      expect(Date.now() - written).toBeLessThan(1500);
      expect(delivered(slow)).toEqual([]);
      await eventually(() => delivered(slow).length === 1, 'the slow endpoint notified', 6000);
    } finally {
      await running.stop();
    }
  });

  it('numbers continue across a restart, and two processes sharing the database deliver each event once, in order', async () => {
    const endpoint = await receiver();
    const id = await subscribe(subscription(endpoint.url, { maxCount: 1 }));
    await deliverDue(deliverer(baton.db));
    await putTask(task(`restart-${id}-1`));
    await deliverDue(deliverer(baton.db));
    // A second "process": its own connection when on PostgreSQL (PGlite is one process's database).
    const other: Database = baton.databaseUrl ? await connectDatabase({ databaseUrl: baton.databaseUrl, dataDir: 'memory://', maxConnections: 4 }) : baton.db;
    try {
      for (let n = 2; n <= 6; n++) await putTask(task(`restart-${id}-${n}`));
      const [a, b] = [deliverer(baton.db), deliverer(other)];
      await Promise.all([deliverDue(a), deliverDue(b)]);
      expect(delivered(endpoint)).toEqual([1, 2, 3, 4, 5, 6]);
    } finally {
      if (other !== baton.db) await other.close();
    }
  });

  it('a delivery left by a worker that died is taken over when its lease runs out', async () => {
    const endpoint = await receiver();
    const id = await subscribe(subscription(endpoint.url));
    await deliverDue(deliverer(baton.db));
    await putTask(task(`lease-${id}`));
    const dead = deliverer(baton.db);
    expect((await dead.claim(10)).map((s) => s.id)).toContain(id);
    const alive = deliverer(baton.db);
    await deliverDue(alive);
    expect(delivered(endpoint)).toEqual([]);
    await baton.db.execute(sql`UPDATE subscriptions SET lease_until = now() - interval '1 second' WHERE id = ${id}`);
    await deliverDue(alive);
    expect(delivered(endpoint)).toEqual([1]);
  });
});

describe('heartbeats', () => {
  it('come every period when one is set, and never without one', async () => {
    const beating = await receiver();
    const quiet = await receiver();
    await subscribe(subscription(beating.url, { heartbeat: 1 }));
    await subscribe(subscription(quiet.url));
    const running = startSubscriptionDelivery({ db: baton.db, baseUrl: BASE_URL, config: testDeliveryConfig(), signingKeys: new SigningKeyStore(baton.db), metrics: subscriptionMetrics(new Registry()) });
    try {
      await eventually(() => beating.ofType('heartbeat').length >= 2, 'two heartbeats', 4000);
    } finally {
      await running.stop();
    }
    const [first, second] = beating.ofType('heartbeat');
    expect(second.at - first.at).toBeGreaterThanOrEqual(900);
    expect(statusParameter(first.bundle, 'status')).toBe('active');
    expect(quiet.ofType('heartbeat')).toEqual([]);
    expect(quiet.ofType('handshake').length).toBe(1);
  });
});
