import { compactVerify, createLocalJWKSet } from 'jose';
import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { SigningKeyStore } from '../../src/auth/signing-keys.ts';
import { SIGNATURE_HEADER } from '../../src/subscriptions/delivery.ts';
import { BASE_URL, body, type TestBaton } from '../support/baton.ts';
import { deliverDue, deliverer, eventNumbers, type Receiver, statusParameter, subscription, task, batonWithReceiver } from './support.ts';

/**
 * Delivery over HTTP to a real receiver on loopback: create → 201 requested → handshake →
 * active, events in order with gap-free numbers, each payload level, filters, signatures.
 */

const harness = batonWithReceiver();
let baton: TestBaton;
let receiver: Receiver;
beforeAll(() => {
  ({ baton, receiver } = harness);
});

async function subscribe(resource: Record<string, unknown>): Promise<string> {
  const response = await baton.request('/fhir/Subscription', { method: 'POST', json: resource });
  const created = await body(response);
  expect(response.status, JSON.stringify(created)).toBe(201);
  expect(created.status).toBe('requested');
  return created.id as string;
}

const putTask = async (resource: Record<string, unknown>) => {
  const response = await baton.request(`/fhir/Task/${resource.id as string}`, { method: 'PUT', json: resource });
  expect(response.status, await response.clone().text()).toBeLessThan(300);
};

describe('handshake', () => {
  it('answers 201 requested, sends a handshake with status requested, and becomes active on a 2xx', async () => {
    const id = await subscribe(subscription(receiver.url, { header: ['Authorization: Bearer subscriber-secret'] }));
    await deliverDue(deliverer(baton.db));
    const [handshake] = receiver.ofType('handshake');
    expect(handshake.bundle.type).toBe('history');
    expect(statusParameter(handshake.bundle, 'status')).toBe('requested');
    expect(statusParameter(handshake.bundle, 'subscription')).toBe(`${BASE_URL}/Subscription/${id}`);
    expect(statusParameter(handshake.bundle, 'events-since-subscription-start')).toBe('0');
    expect(handshake.bundle.entry[0].request).toEqual({ method: 'GET', url: `${BASE_URL}/Subscription/${id}/$status` });
    expect(handshake.headers.authorization).toBe('Bearer subscriber-secret');
    expect(handshake.headers['content-type']).toBe('application/fhir+json');
    const stored = await body(await baton.request(`/fhir/Subscription/${id}`));
    expect(stored.status).toBe('active');
  });

  it('goes to error, with the reason, when the handshake is refused', async () => {
    receiver.respond = () => ({ status: 500 });
    const id = await subscribe(subscription(receiver.url));
    await deliverDue(deliverer(baton.db));
    const stored = await body(await baton.request(`/fhir/Subscription/${id}`));
    expect(stored.status).toBe('error');
    expect(stored.error).toMatch(/HTTP 500/);
    const status = await body(await baton.request(`/fhir/Subscription/${id}/$status`));
    expect(statusParameter({ entry: [status.entry[0]] }, 'status')).toBe('error');
  });
});

describe('event notifications', () => {
  it('notifies each Task write in order, numbered from 1 without gaps, signed with a JWS over the body', async () => {
    const id = await subscribe(subscription(receiver.url, { maxCount: 2 }));
    const worker = deliverer(baton.db);
    await deliverDue(worker);
    for (const n of [1, 2, 3]) await putTask(task(`ordered-${id}-${n}`));
    await deliverDue(worker);
    const notifications = receiver.ofType('event-notification');
    expect(notifications.flatMap((n) => eventNumbers(n.bundle))).toEqual([1, 2, 3]);
    expect(notifications.map((n) => eventNumbers(n.bundle).length)).toEqual([2, 1]);
    const last = notifications[1];
    expect(statusParameter(last.bundle, 'events-since-subscription-start')).toBe('3');
    // The subscriber verifies the detached JWS with Baton's published keys (/auth/jwks).
    const jwks = createLocalJWKSet((await new SigningKeyStore(baton.db).get()).jwks);
    const [header, , signature] = String(last.headers[SIGNATURE_HEADER.toLowerCase()]).split('.');
    const verified = await compactVerify(`${header}.${Buffer.from(last.body).toString('base64url')}.${signature}`, jwks);
    expect(new TextDecoder().decode(verified.payload)).toBe(last.body);
    await expect(compactVerify(`${header}.${Buffer.from(`${last.body} `).toString('base64url')}.${signature}`, jwks)).rejects.toThrow();
  });

  it.each([
    ['empty', false, false],
    ['id-only', true, false],
    ['full-resource', true, true],
  ])('payload %s: focus %s, resource %s', async (content, hasFocus, hasResource) => {
    await subscribe(subscription(receiver.url, { content }));
    const worker = deliverer(baton.db);
    await deliverDue(worker);
    await putTask(task(`payload-${content}`));
    await deliverDue(worker);
    const [notification] = receiver.ofType('event-notification');
    const event = notification.bundle.entry[0].resource.parameter.find((p: { name: string }) => p.name === 'notification-event');
    expect(event.part.some((p: { name: string }) => p.name === 'focus')).toBe(hasFocus);
    expect(notification.bundle.entry.length).toBe(hasFocus ? 2 : 1);
    for (const entry of notification.bundle.entry) {
      expect(entry.request).toBeDefined();
      expect(entry.response).toBeDefined();
    }
    if (hasFocus) {
      expect(notification.bundle.entry[1].fullUrl).toBe(`${BASE_URL}/Task/payload-${content}`);
      expect(notification.bundle.entry[1].request).toEqual({ method: 'PUT', url: `Task/payload-${content}` });
      expect(notification.bundle.entry[1].response).toEqual({ status: '201' });
      expect(Boolean(notification.bundle.entry[1].resource)).toBe(hasResource);
    }
    if (hasResource) expect(notification.bundle.entry[1].resource.id).toBe(`payload-${content}`);
  });

  it('delivers only the writes a filter matches, in the Type?param=value and Type.param=value forms', async () => {
    await subscribe(subscription(receiver.url, { filters: ['Task?owner=Organization/payer-b&status=requested', 'Task.patient=Patient/sub-patient'] }));
    const worker = deliverer(baton.db);
    await deliverDue(worker);
    await putTask(task('filter-other-owner'));
    await putTask(task('filter-match', { owner: { reference: 'Organization/payer-b' } }));
    await putTask(task('filter-wrong-status', { owner: { reference: 'Organization/payer-b' }, status: 'cancelled' }));
    await putTask(task('filter-wrong-patient', { owner: { reference: 'Organization/payer-b' }, for: { reference: 'Patient/another' } }));
    await deliverDue(worker);
    const focus = receiver.ofType('event-notification').flatMap((n) => n.bundle.entry.slice(1).map((e: { fullUrl: string }) => e.fullUrl));
    expect(focus).toEqual([`${BASE_URL}/Task/filter-match`]);
  });

  it('stops recording and delivering once the Subscription is deleted', async () => {
    const id = await subscribe(subscription(receiver.url));
    const worker = deliverer(baton.db);
    await deliverDue(worker);
    await putTask(task('before-delete'));
    expect((await baton.request(`/fhir/Subscription/${id}`, { method: 'DELETE' })).status).toBeLessThan(300);
    await putTask(task('after-delete'));
    await deliverDue(worker);
    const [{ n }] = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM subscription_events WHERE subscription_id = ${id}`);
    expect(n).toBe(1);
    expect(receiver.ofType('event-notification')).toEqual([]);
  });

  it('is switched off by its subscriber with PUT status off, and on again with another PUT', async () => {
    const id = await subscribe(subscription(receiver.url));
    const worker = deliverer(baton.db);
    await deliverDue(worker);
    const off = await baton.request(`/fhir/Subscription/${id}`, { method: 'PUT', json: { ...subscription(receiver.url), id, status: 'off' } });
    expect((await body(off)).status).toBe('off');
    await putTask(task('while-off'));
    await deliverDue(worker);
    expect(receiver.ofType('event-notification')).toEqual([]);
    await baton.request(`/fhir/Subscription/${id}`, { method: 'PUT', json: { ...subscription(receiver.url), id } });
    await putTask(task('back-on'));
    await deliverDue(worker);
    expect(receiver.ofType('handshake').length).toBe(2);
    expect(receiver.ofType('event-notification').flatMap((n) => n.bundle.entry.slice(1).map((e: { fullUrl: string }) => e.fullUrl))).toEqual([`${BASE_URL}/Task/back-on`]);
  });

  it('records no event for a write that rolls back', async () => {
    const id = await subscribe(subscription(receiver.url));
    const before = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM subscription_events WHERE subscription_id = ${id}`);
    // A transaction Bundle whose second entry fails: the Task written first rolls back with its event.
    const response = await baton.request('/fhir', {
      method: 'POST',
      json: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: task('rolled-back'), request: { method: 'PUT', url: 'Task/rolled-back' } },
          { resource: { resourceType: 'Patient', id: 'x' }, request: { method: 'PUT', url: 'Patient/x', ifMatch: 'W/"99"' } },
        ],
      },
    });
    expect(response.status).toBeGreaterThanOrEqual(400);
    const after = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM subscription_events WHERE subscription_id = ${id}`);
    expect(after[0].n).toBe(before[0].n);
    await putTask(task('committed'));
    const [{ count }] = await baton.db.execute<{ count: number }>(sql`SELECT event_count::int AS count FROM subscription_event_counters WHERE subscription_id = ${id}`);
    expect(count).toBe(before[0].n + 1);
  });
});

describe('Subscription.end', () => {
  it('refuses an end that is not an instant, and does not keep one already past (the Inferno samples carry 2020)', async () => {
    const response = await baton.request('/fhir/Subscription', { method: 'POST', json: { ...subscription(receiver.url), end: 'tomorrow' } });
    expect(response.status).toBe(422);
    expect((await body(response)).issue[0].expression).toEqual(['Subscription.end']);
    const past = await body(await baton.request('/fhir/Subscription', { method: 'POST', json: { ...subscription(receiver.url), end: '2020-12-31T12:00:00Z' } }));
    expect(past.end).toBeUndefined();
    await deliverDue(deliverer(baton.db));
    expect((await body(await baton.request(`/fhir/Subscription/${past.id}`))).status).toBe('active');
  });

  it('switches the subscription off when its end comes: status off, and no event after it', async () => {
    const end = new Date(Date.now() + 1500).toISOString();
    const owner = `Organization/ending-${Date.now()}`;
    const id = await subscribe({ ...subscription(receiver.url, { filters: [`Task?owner=${owner}`] }), end });
    const worker = deliverer(baton.db);
    await deliverDue(worker);
    expect((await body(await baton.request(`/fhir/Subscription/${id}`))).status).toBe('active');
    await new Promise((resolve) => setTimeout(resolve, 1600));
    await deliverDue(worker);
    const stored = await body(await baton.request(`/fhir/Subscription/${id}`));
    expect(stored.status).toBe('off');
    // The server's change of the Subscription is in the audit trail, in its transaction.
    const [{ audited }] = await baton.db.execute<{ audited: number }>(sql`SELECT count(*)::int AS audited FROM audit_events WHERE content LIKE ${`%Subscription/${id}/_history/${stored.meta.versionId}%`} AND content LIKE '%baton-subscriptions%'`);
    expect(Number(audited)).toBe(1);
    await putTask(task(`after-end-${id}`, { owner: { reference: owner } }));
    const [{ n }] = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM subscription_events WHERE subscription_id = ${id}`);
    expect(Number(n)).toBe(0);
  });
});
