import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/baton.ts';
import { startServer as startProcess, stopServer as stop } from '../support/server-process.ts';
import { eventNumbers, eventually, type Receiver, startReceiver, statusParameter, subscription, task } from './support.ts';

/**
 * Subscriptions shared by Baton processes on one PostgreSQL database, as `npm start` runs them:
 * a process that only takes requests (BATON_SUBSCRIPTION_WORKER=off) records events for
 * subscriptions created through another, and the delivering process, killed and started again,
 * carries on from the last acknowledged event with the numbers continuing, nothing lost.
 */

const ADMIN = 'subscription-processes-admin';

/** A server on the shared database with the operator credential; `base` is its FHIR base URL. */
async function startServer(env: Record<string, string>): Promise<{ child: ChildProcess; base: string }> {
  const { child, port } = await startProcess({ BATON_ADMIN_TOKEN: ADMIN, BATON_ADMIN_SCOPE: 'system/*.cruds', ...env });
  return { child, base: `http://127.0.0.1:${port}/fhir` };
}

const call = (base: string, path: string, method = 'GET', json?: unknown) =>
  fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/fhir+json' }, ...(json ? { body: JSON.stringify(json) } : {}) });

describe.skipIf(!process.env.DATABASE_URL)('two Baton processes on one PostgreSQL database (needs DATABASE_URL)', () => {
  const children: ChildProcess[] = [];
  const receivers: Receiver[] = [];
  let drop: (() => Promise<void>) | undefined;
  afterAll(async () => {
    await Promise.all(children.map((child) => stop(child, 'SIGKILL')));
    await Promise.all(receivers.map((r) => r.close()));
    await drop?.();
  });

  it('records events in one process for subscriptions made in another, and delivers them all in order across a killed worker', async () => {
    const database = await freshDatabase();
    drop = database.drop;
    // Short leases: a delivery the kill cuts off holds its subscription until the lease runs out
    // (the longer of BATON_SUBSCRIPTION_LEASE_SECONDS and the attempt timeout + 10 s: here 12 s).
    const env = {
      DATABASE_URL: database.databaseUrl as string,
      BATON_SUBSCRIPTION_POLL_MS: '20',
      BATON_SUBSCRIPTION_LEASE_SECONDS: '5',
      BATON_SUBSCRIPTION_TIMEOUT_SECONDS: '2',
      BATON_EXPORT_WORKER: 'off',
      BATON_WORKFLOW_WORKER: 'off',
    };
    // The API process migrates the database first; the delivering one starts on it.
    const api = await startServer({ ...env, BATON_SUBSCRIPTION_WORKER: 'off' });
    children.push(api.child);
    let worker = await startServer(env);
    children.push(worker.child);
    const [first, second] = [await startReceiver(), await startReceiver()];
    receivers.push(first, second);

    // Created through the delivering process, used by writes through the other one.
    const created = await call(worker.base, '/Subscription', 'POST', subscription(first.url, { maxCount: 1 }));
    expect(created.status).toBe(201);
    await eventually(() => first.ofType('handshake').length === 1, 'the handshake');
    await call(api.base, '/Task/proc-1', 'PUT', task('proc-1'));
    await eventually(() => first.ofType('event-notification').length === 1, 'the first event');
    // A second subscription, made after the API process has read the registry: it sees it at once.
    expect((await call(worker.base, '/Subscription', 'POST', subscription(second.url))).status).toBe(201);
    await eventually(() => second.ofType('handshake').length === 1, 'the second handshake');
    await call(api.base, '/Task/proc-2', 'PUT', task('proc-2'));
    await eventually(() => second.ofType('event-notification').length === 1, 'the second subscription notified');

    // The delivering process dies; events keep being recorded; a new one delivers them, in order.
    await stop(worker.child, 'SIGKILL');
    for (const n of [3, 4, 5]) expect((await call(api.base, `/Task/proc-${n}`, 'PUT', task(`proc-${n}`))).status).toBeLessThan(300);
    worker = await startServer(env);
    children.push(worker.child);
    const delivered = () => first.ofType('event-notification').flatMap((n) => eventNumbers(n.bundle));
    await eventually(() => delivered().includes(5), 'every event after the restart', 30_000);
    // In order and none missing; delivery is at least once, so the notification of event 2, when
    // the kill came after it was sent and before its acknowledgement was stored, comes again.
    const numbers = delivered();
    expect([...new Set(numbers)]).toEqual([1, 2, 3, 4, 5]);
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(numbers.filter((n, i) => numbers.indexOf(n) !== i).every((n) => n === 2)).toBe(true);
    expect(statusParameter(first.ofType('event-notification').at(-1)?.bundle, 'events-since-subscription-start')).toBe('5');
  }, 60_000);
});
