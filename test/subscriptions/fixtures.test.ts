import { existsSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { body, type TestBaton } from '../support/baton.ts';
import { deliverDue, deliverer, type Receiver, subscription, batonWithReceiver } from './support.ts';

/**
 * Baton's notifications have the shape of the Backport IG / Inferno examples in
 * ../shared/fixtures/subscriptions: the same Bundle and SubscriptionStatus profiles, the same
 * entries with the same elements, the same parameters with the same value types, in order.
 */

const FIXTURES = new URL('../../../shared/fixtures/subscriptions/', import.meta.url);
const fixture = (name: string) => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));

/** What must agree: structure and types, not ids, URLs, numbers or times. */
function shape(bundle: any) {
  return {
    resourceType: bundle.resourceType,
    type: bundle.type,
    profile: bundle.meta?.profile,
    hasTimestamp: typeof bundle.timestamp === 'string',
    entries: bundle.entry.map((entry: any) => ({
      elements: Object.keys(entry).sort(),
      // The examples' topic is about Encounters, ours about Tasks.
      resource: entry.resource ? (entry.resource.resourceType === 'Parameters' ? 'Parameters' : 'the focus') : undefined,
      profile: entry.resource?.resourceType === 'Parameters' ? entry.resource.meta?.profile : undefined,
      request: entry.request.method,
      requestUrl: entry.request.url.endsWith('/$status') ? '…/$status' : /^[A-Z][A-Za-z]+$/.test(entry.request.url) ? 'type' : 'other',
      response: entry.response.status,
      parameters: entry.resource?.resourceType === 'Parameters' ? entry.resource.parameter.map(parameterShape) : undefined,
    })),
  };
}

function parameterShape(parameter: any): unknown {
  const value = Object.keys(parameter).find((key) => key.startsWith('value'));
  return parameter.part ? [parameter.name, parameter.part.map(parameterShape)] : [parameter.name, value];
}

const harness = batonWithReceiver();
let baton: TestBaton;
let receiver: Receiver;
beforeAll(() => {
  ({ baton, receiver } = harness);
});

describe.skipIf(!existsSync(FIXTURES))('notifications as the Backport examples show them (needs ../shared/fixtures/subscriptions)', () => {
  it('handshake and heartbeat', async () => {
    const response = await baton.request('/fhir/Subscription', { method: 'POST', json: subscription(receiver.url, { heartbeat: 1 }) });
    expect(response.status).toBe(201);
    await deliverDue(deliverer(baton.db));
    expect(shape(receiver.ofType('handshake')[0].bundle)).toEqual(shape(fixture('inferno-handshake_bundle_example.json')));
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await deliverDue(deliverer(baton.db));
    expect(shape(receiver.ofType('heartbeat')[0].bundle)).toEqual(shape(fixture('inferno-heartbeat_bundle_example.json')));
  });

  it.each([
    ['empty', 'inferno-empty_notification_bundle_example.json'],
    ['id-only', 'inferno-id_only_notification_bundle_example.json'],
    ['full-resource', 'inferno-full_resource_notification_bundle_example.json'],
  ])('event notification, %s', async (content, example) => {
    expect((await baton.request('/fhir/Subscription', { method: 'POST', json: subscription(receiver.url, { content }) })).status).toBe(201);
    const worker = deliverer(baton.db);
    await deliverDue(worker);
    // Created by POST, as the examples' Encounter was; without Task.for, the topic adds no additional context.
    const created = await baton.request('/fhir/Task', { method: 'POST', json: { resourceType: 'Task', status: 'requested', intent: 'order' } });
    expect(created.status).toBe(201);
    await deliverDue(worker);
    const [notification] = receiver.ofType('event-notification');
    expect(shape(notification.bundle)).toEqual(shape(fixture(example)));
    if (content === 'full-resource') expect(notification.bundle.entry[1].resource.id).toBe((await body(created)).id);
  });

  it('$status', async () => {
    const created = await body(await baton.request('/fhir/Subscription', { method: 'POST', json: subscription(receiver.url) }));
    const status = await body(await baton.request(`/fhir/Subscription/${created.id}/$status`));
    const example = fixture('inferno-subscription_status_example.json');
    expect(status.type).toBe(example.type);
    const names = (bundle: any) => bundle.entry[0].resource.parameter.map((p: { name: string }) => p.name).filter((n: string) => n !== 'notification-event');
    expect(names(status)).toEqual(names(example));
    expect(status.entry[0].resource.meta.profile).toEqual(example.entry[0].resource.meta.profile);
  });
});
