import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/auth/clients.ts';
import { createGrant } from '../../src/auth/grants.ts';
import { update } from '../../src/fhir/interactions.ts';
import { systemAccess } from '../../src/fhir/access.ts';
import { createReviewTask } from '../../src/operations/member-match/review.ts';
import { BULK_JOB_COMPLETE_TOPIC, publishEvent, SLA_BREACH_TOPIC } from '../../src/subscriptions/events.ts';
import { BASE_URL, body, type TestBaton } from '../support/baton.ts';
import { deliverDue, deliverer, eventNumbers, eventually, type Receiver, statusParameter, subscription, task, batonWithReceiver } from './support.ts';

/**
 * Baton's topics (config/topics), code-raised events (publishEvent), per-partner isolation of
 * events, and $status / $events read from the durable event log.
 */

const harness = batonWithReceiver();
let baton: TestBaton;
let receiver: Receiver;
beforeAll(() => {
  ({ baton, receiver } = harness);
});

async function subscribe(resource: Record<string, unknown>, token?: string): Promise<string> {
  const response = await baton.request('/fhir/Subscription', { method: 'POST', json: resource, ...(token ? { token } : {}) });
  expect(response.status, await response.clone().text()).toBe(201);
  const id = (await body(response)).id as string;
  await deliverDue(deliverer(baton.db));
  return id;
}

const putTask = async (resource: Record<string, unknown>) => {
  const response = await baton.request(`/fhir/Task/${resource.id as string}`, { method: 'PUT', json: resource });
  expect(response.status, await response.clone().text()).toBeLessThan(300);
};

/** Focus references of the event notifications received, in order. */
async function notifiedFocus(): Promise<(string | undefined)[]> {
  await deliverDue(deliverer(baton.db));
  return receiver.ofType('event-notification').flatMap((n) =>
    n.bundle.entry[0].resource.parameter
      .filter((p: { name: string }) => p.name === 'notification-event')
      .map((p: { part: { name: string; valueReference?: { reference: string } }[] }) => p.part.find((part) => part.name === 'focus')?.valueReference?.reference),
  );
}

const DATA_REQUEST = { coding: [{ system: 'http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp', code: 'data-request' }] };
/** Stage changes as the workflow writes them: Baton itself, past the REST rules for clients' data-request Tasks. */
const writeAsWorkflow = (resource: Record<string, unknown>) => update(baton.ctx, 'Task', resource.id as string, resource);
const stage = (code: string) => ({ coding: [{ system: 'urn:baton:task-stage', code }], text: code });

describe('Baton topics', () => {
  it('request-final: a data-request Task reaching fulfilled, failed or dead-lettered, once', async () => {
    await subscribe(subscription(receiver.url, { topic: 'urn:baton:subscription-topic:request-final', filters: ['Task?business-status=dead-lettered'] }));
    await subscribe(subscription(receiver.url, { topic: 'urn:baton:subscription-topic:request-final' }));
    const request = { ...task('p2p-request'), code: DATA_REQUEST };
    await writeAsWorkflow({ ...request, businessStatus: stage('created') });
    await writeAsWorkflow({ ...request, status: 'in-progress', businessStatus: stage('routed') });
    await writeAsWorkflow({ ...request, status: 'completed', businessStatus: stage('fulfilled') });
    // Still fulfilled: not a new arrival at a final stage.
    await writeAsWorkflow({ ...request, status: 'completed', businessStatus: stage('fulfilled'), note: [{ text: 'imported' }] });
    // A Task of another kind reaching "fulfilled" is not a payer-to-payer request.
    await putTask({ ...task('other-kind'), status: 'completed', businessStatus: stage('fulfilled') });
    // Dead-lettered is final too, and the filtered subscription gets it alone.
    await writeAsWorkflow({ ...request, id: 'p2p-dead', status: 'failed', businessStatus: stage('dead-lettered') });
    // Two subscriptions: their notifications come in either order.
    expect((await notifiedFocus()).sort()).toEqual([`${BASE_URL}/Task/p2p-dead`, `${BASE_URL}/Task/p2p-dead`, `${BASE_URL}/Task/p2p-request`]);
  });

  it('match-review: the review Task $member-match creates', async () => {
    await subscribe(subscription(receiver.url, { topic: 'urn:baton:subscription-topic:match-review' }));
    const id = await baton.db.transaction((q) => createReviewTask({ ...baton.ctx, access: systemAccess }, q, { decisionId: 'decision-1', candidates: 2 }));
    expect(await notifiedFocus()).toEqual([`${BASE_URL}/Task/${id}`]);
  });

  it('sla-breach: raised by code with publishEvent, in the caller transaction (rolled back, no event)', async () => {
    const id = await subscribe(subscription(receiver.url, { topic: SLA_BREACH_TOPIC }));
    // Filters apply to the focus Task: this one wants another requester's breaches only.
    await subscribe(subscription(receiver.url, { topic: SLA_BREACH_TOPIC, filters: ['Task?requester=Organization/someone-else'] }));
    await putTask({ ...task('late-request'), requester: { reference: 'Organization/new-plan' } });
    await expect(
      baton.db.transaction(async (q) => {
        await publishEvent(q, { topic: SLA_BREACH_TOPIC, focus: { reference: 'Task/late-request' } });
        throw new Error('the workflow step failed');
      }),
    ).rejects.toThrow('the workflow step failed');
    const count = await baton.db.transaction((q) => publishEvent(q, { topic: SLA_BREACH_TOPIC, focus: { reference: 'Task/late-request' }, additionalContext: [{ reference: 'Patient/sub-patient' }] }));
    expect(count).toBe(1);
    await deliverDue(deliverer(baton.db));
    const [notification] = receiver.ofType('event-notification');
    expect(eventNumbers(notification.bundle)).toEqual([1]);
    const event = notification.bundle.entry[0].resource.parameter.find((p: { name: string }) => p.name === 'notification-event');
    expect(event.part.find((p: { name: string }) => p.name === 'additional-context').valueReference.reference).toBe(`${BASE_URL}/Patient/sub-patient`);
    expect(statusParameter(notification.bundle, 'subscription')).toBe(`${BASE_URL}/Subscription/${id}`);
  });

  it('bulk-job-complete: an export job completing or failing notifies the client that started it, and no other', async () => {
    const owner = await baton.token({ clientId: 'export-owner', kind: 'internal', scopes: ['system/*.rs', 'system/Subscription.cruds'] });
    const stranger = await baton.token({ clientId: 'export-stranger', kind: 'internal', scopes: ['system/*.rs', 'system/Subscription.cruds'] });
    await subscribe(subscription(receiver.url, { topic: BULK_JOB_COMPLETE_TOPIC, header: ['X-Who: owner'] }), owner);
    await subscribe(subscription(receiver.url, { topic: BULK_JOB_COMPLETE_TOPIC, header: ['X-Who: stranger'] }), stranger);
    const kick = await baton.request('/fhir/$export?_type=Task', { headers: { Prefer: 'respond-async', Accept: 'application/fhir+json' }, token: owner });
    expect(kick.status, await kick.clone().text()).toBe(202);
    const statusUrl = kick.headers.get('content-location') as string;
    // The process that accepted the kick-off runs the job.
    await eventually(async () => (await baton.db.execute<{ status: string }>(sql`SELECT status FROM export_jobs`)).every((job) => job.status === 'completed'), 'the export job completed');
    expect(await notifiedFocus()).toEqual([statusUrl]);
    expect(receiver.ofType('event-notification')[0].headers['x-who']).toBe('owner');
    // A job left running by a worker that died, out of attempts, fails: that is notified too.
    receiver.received.length = 0;
    const jobId = statusUrl.slice(statusUrl.lastIndexOf('/') + 1);
    await baton.db.execute(sql`UPDATE export_jobs SET status = 'running', lease_owner = 'dead-worker', lease_until = now() - interval '1 second', attempts = 99 WHERE id = ${jobId}`);
    const { ExportWorker } = await import('../../src/export/worker.ts');
    const { loadConfig } = await import('../../src/config.ts');
    await new ExportWorker({ db: baton.db, baseUrl: BASE_URL, config: loadConfig({}).export }).runPending();
    expect(await notifiedFocus()).toEqual([statusUrl]);
  });
});

describe('isolation', () => {
  it('a partner is notified only about members it holds a grant for, re-checked when delivering', async () => {
    const scopes = ['system/Task.rs', 'system/Subscription.cruds'];
    const { client_id: clientId } = await createClient(baton.db, { name: 'Isolated partner', kind: 'partner', organizationIdentifiers: [{ system: 'urn:test', value: 'iso' }], jwks: { keys: [] }, jwksUri: undefined, scopes });
    const token = await baton.token({ clientId, kind: 'partner', scopes });
    await subscribe(subscription(receiver.url, { content: 'full-resource' }), token);
    const grant = await createGrant(baton.db, { clientId, patientId: 'granted' });
    await putTask({ ...task('iso-granted'), for: { reference: 'Patient/granted' } });
    await putTask({ ...task('iso-other'), for: { reference: 'Patient/not-granted' } });
    expect(await notifiedFocus()).toEqual([`${BASE_URL}/Task/iso-granted`]);
    // Recorded while granted, delivered after the grant ended: the event keeps its number, without focus nor content.
    receiver.received.length = 0;
    await putTask({ ...task('iso-granted'), for: { reference: 'Patient/granted' }, status: 'cancelled' });
    await baton.db.execute(sql`UPDATE access_grants SET valid_until = now() WHERE id = ${grant}`);
    expect(await notifiedFocus()).toEqual([undefined]);
    const [notification] = receiver.ofType('event-notification');
    expect(eventNumbers(notification.bundle)).toEqual([2]);
    expect(notification.bundle.entry.length).toBe(1);
  });
});

describe('$status and $events', () => {
  it('$status answers a searchset of SubscriptionStatus; Subscription/$status lists the caller own', async () => {
    const id = await subscribe(subscription(receiver.url));
    await putTask(task('status-1'));
    const one = await body(await baton.request(`/fhir/Subscription/${id}/$status`));
    expect(one.type).toBe('searchset');
    const parameters = one.entry[0].resource;
    expect(parameters.resourceType).toBe('Parameters');
    expect(statusParameter({ entry: [one.entry[0]] }, 'type')).toBe('query-status');
    expect(statusParameter({ entry: [one.entry[0]] }, 'status')).toBe('active');
    expect(statusParameter({ entry: [one.entry[0]] }, 'events-since-subscription-start')).toBe('1');
    const all = await body(await baton.request(`/fhir/Subscription/$status?id=${id}`));
    expect(all.total).toBe(1);
  });

  it('$events replays a range from the durable log, whatever was delivered', async () => {
    const id = await subscribe(subscription(receiver.url, { content: 'full-resource' }));
    for (const n of [1, 2, 3, 4]) await putTask(task(`replay-${n}`));
    const replay = await body(await baton.request(`/fhir/Subscription/${id}/$events?eventsSinceNumber=2&eventsUntilNumber=3`));
    expect(replay.type).toBe('history');
    expect(statusParameter(replay, 'type')).toBe('query-event');
    expect(eventNumbers(replay)).toEqual([2, 3]);
    expect(replay.entry.slice(1).map((e: { resource: { id: string } }) => e.resource.id)).toEqual(['replay-2', 'replay-3']);
    const idOnly = await body(await baton.request(`/fhir/Subscription/${id}/$events?eventsSinceNumber=4&content=id-only`));
    expect(eventNumbers(idOnly)).toEqual([4]);
    expect(idOnly.entry[1].resource).toBeUndefined();
    expect((await baton.request(`/fhir/Subscription/${id}/$events?eventsSinceNumber=x`)).status).toBe(400);
  });
});
