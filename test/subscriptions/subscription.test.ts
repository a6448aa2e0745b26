import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_URL, body, startBaton, type TestBaton } from '../support/baton.ts';
import { BACKPORT, HREX_TASK_TOPIC, subscription } from './support.ts';

/**
 * Subscription create and update against the Backport profile: what is accepted, and every
 * refusal as a 4xx OperationOutcome naming the element. Topics in the CapabilityStatement.
 */

const FIXTURES = new URL('../../../shared/fixtures/subscriptions/', import.meta.url);
const ENDPOINT = 'https://subscriber.example/notify';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(async () => {
  await baton?.close();
});

const create = (resource: unknown, token?: string) => baton.request('/fhir/Subscription', { method: 'POST', json: resource, ...(token ? { token } : {}) });

async function refused(response: Response): Promise<{ status: number; diagnostics: string; expression: string[] }> {
  const outcome = await body(response);
  expect(outcome.resourceType).toBe('OperationOutcome');
  return { status: response.status, diagnostics: outcome.issue[0].diagnostics, expression: outcome.issue[0].expression ?? [] };
}

const withFilter = (valueString: string, url = `${BACKPORT}/backport-filter-criteria`) => ({ ...subscription(ENDPOINT), _criteria: { extension: [{ url, valueString }] } });

describe('creating a Subscription', () => {
  it('answers 201 with status requested, whatever status the client sent', async () => {
    const response = await create({ ...subscription(ENDPOINT), status: 'active' });
    expect(response.status).toBe(201);
    expect((await body(response)).status).toBe('requested');
    expect(response.headers.get('location')).toMatch(/\/Subscription\/[^/]+\/_history\/1$/);
  });

  it.each([
    ['an unknown topic', { ...subscription(ENDPOINT), criteria: 'http://example.org/topics/nothing' }, 'Subscription.criteria', /Unknown topic/],
    ['a filter on a parameter the topic does not offer', withFilter('Task?code=data-request'), 'Subscription._criteria.extension', /Unsupported filter Task.code/],
    ['a filter with a modifier', withFilter('Task?owner:missing=true'), 'Subscription._criteria.extension', /Unsupported filter/],
    ['a filter that is not Type?param=value nor Type.param=value', withFilter('owner is payer-a'), 'Subscription._criteria.extension', /Unsupported filter/],
    ['the R5 cross-version filter extension', withFilter('Task?owner=Organization/a', 'http://hl7.org/fhir/5.0/subscriptions-backport/StructureDefinition/backport-filter-criteria'), 'Subscription._criteria.extension', /R5 cross-version/],
    ['a websocket channel', { ...subscription(ENDPOINT), channel: { ...subscription(ENDPOINT).channel, type: 'websocket' } }, 'Subscription.channel.type', /rest-hook/],
    ['an http endpoint off loopback', subscription('http://subscriber.example/notify'), 'Subscription.channel.endpoint', /https/],
    ['an endpoint that is not a URL', subscription('not a url'), 'Subscription.channel.endpoint', /absolute URL/],
    ['an XML payload', { ...subscription(ENDPOINT), channel: { ...subscription(ENDPOINT).channel, payload: 'application/fhir+xml' } }, 'Subscription.channel.payload', /payload type/],
    ['an unknown payload content', subscription(ENDPOINT, { content: 'everything' }), 'Subscription.channel._payload', /payload content/],
    ['a heartbeat period of 0', subscription(ENDPOINT, { heartbeat: -1 }), 'Subscription.channel.extension', /positive/],
    ['a header that is not a header line', subscription(ENDPOINT, { header: ['no colon here'] }), 'Subscription.channel.header', /header line/],
  ])('refuses %s with 422', async (_case, resource, expression, diagnostics) => {
    const result = await refused(await create(resource));
    expect(result.status).toBe(422);
    expect(result.expression).toEqual([expression]);
    expect(result.diagnostics).toMatch(diagnostics);
  });

  it('refuses a custom channel type from the Inferno example (backport-channel-type)', async () => {
    const example = JSON.parse(readFileSync(new URL('inferno-subscription_resource_example.json', FIXTURES), 'utf8'));
    const result = await refused(await create({ ...example, id: undefined, criteria: HREX_TASK_TOPIC, _criteria: undefined }));
    expect(result.status).toBe(422);
    expect(result.expression).toEqual(['Subscription.channel.type']);
  });

  it('refuses full-resource and id-only to a client whose scopes do not read the topic resources; empty is allowed', async () => {
    const token = await baton.token({ clientId: 'subscriber-without-task', scopes: ['system/Subscription.cruds'] });
    const result = await refused(await create(subscription(ENDPOINT, { content: 'full-resource' }), token));
    expect(result.status).toBe(422);
    expect(result.diagnostics).toMatch(/read access to Task/);
    expect((await create(subscription(ENDPOINT, { content: 'empty' }), token)).status).toBe(201);
  });

  it('accepts http to a loopback address only while BATON_SUBSCRIPTION_LOOPBACK_HTTP is on', async () => {
    expect((await create(subscription('http://127.0.0.1:9/notify'))).status).toBe(201);
    const strict = await startBaton({ config: { subscriptions: { ...(await import('../../src/config.ts')).loadConfig({ BATON_SUBSCRIPTION_LOOPBACK_HTTP: 'off' }).subscriptions } } });
    try {
      const response = await strict.request('/fhir/Subscription', { method: 'POST', json: subscription('http://127.0.0.1:9/notify') });
      expect(response.status).toBe(422);
    } finally {
      await strict.close();
    }
  });

  it('refuses a Subscription in a transaction Bundle, where the Backport checks are not made', async () => {
    const response = await baton.request('/fhir', {
      method: 'POST',
      json: { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: subscription(ENDPOINT), request: { method: 'POST', url: 'Subscription' } }] },
    });
    expect(response.status).toBe(422);
  });

  it("keeps a partner's subscription from other partners", async () => {
    const scopes = ['system/Subscription.cruds', 'system/Task.rs'];
    const mine = await baton.token({ clientId: 'partner-a', kind: 'partner', scopes });
    const theirs = await baton.token({ clientId: 'partner-b', kind: 'partner', scopes });
    const created = await body(await create(subscription(ENDPOINT), mine));
    expect((await baton.request(`/fhir/Subscription/${created.id}`, { token: mine })).status).toBe(200);
    expect((await baton.request(`/fhir/Subscription/${created.id}`, { token: theirs })).status).toBe(404);
    expect((await baton.request(`/fhir/Subscription/${created.id}/$status`, { token: theirs })).status).toBe(404);
    expect((await baton.request(`/fhir/Subscription/${created.id}`, { method: 'PUT', json: { ...subscription(ENDPOINT), id: created.id }, token: theirs })).status).toBe(404);
    expect((await baton.request(`/fhir/Subscription/${created.id}`, { method: 'DELETE', token: theirs })).status).toBe(404);
    const listed = await body(await baton.request('/fhir/Subscription/$status', { token: theirs }));
    expect(listed.total).toBe(0);
    // Search and history too: the channel headers carry the subscriber's secrets.
    const found = async (token: string) => ((await body(await baton.request('/fhir/Subscription', { token }))).entry ?? []).map((e: { resource: { id: string } }) => e.resource.id);
    expect(await found(mine)).toEqual([created.id]);
    expect(await found(theirs)).toEqual([]);
    expect((await baton.request(`/fhir/Subscription/${created.id}/_history`, { token: theirs })).status).toBe(404);
    expect((await baton.request(`/fhir/Subscription/${created.id}/_history/1`, { token: theirs })).status).toBe(404);
    expect((await baton.request(`/fhir/Subscription/${created.id}/_history/1`, { token: mine })).status).toBe(200);
    expect((await baton.request('/fhir/Subscription/_history', { token: theirs })).status).toBe(403);
    // Baton's own clients see every subscription.
    expect((await body(await baton.request(`/fhir/Subscription?_id=${created.id}`))).entry.length).toBe(1);
  });
});

describe('topics', () => {
  it('lists every topic canonical on the Subscription entry of the CapabilityStatement, with $status and $events', async () => {
    const statement = await body(await baton.request('/fhir/metadata'));
    const entry = statement.rest[0].resource.find((r: { type: string }) => r.type === 'Subscription');
    const topics = entry.extension.filter((e: { url: string }) => e.url === `${BACKPORT}/capabilitystatement-subscriptiontopic-canonical`).map((e: { valueCanonical: string }) => e.valueCanonical);
    expect(topics).toEqual(
      expect.arrayContaining([HREX_TASK_TOPIC, 'urn:baton:subscription-topic:request-final', 'urn:baton:subscription-topic:match-review', 'urn:baton:subscription-topic:bulk-job-complete', 'urn:baton:subscription-topic:sla-breach']),
    );
    expect(entry.operation.map((o: { name: string }) => o.name).sort()).toEqual(['events', 'status']);
  });

  it('serves each topic as a Basic SubscriptionTopic (Backport 1.2)', async () => {
    const { ensureTopicResources } = await import('../../src/subscriptions/topic-resources.ts');
    await ensureTopicResources(baton.ctx);
    const found = await body(await baton.request('/fhir/Basic?code=SubscriptionTopic'));
    const urls = found.entry.map((e: { resource: { extension: { url: string; valueUri?: string }[] } }) => e.resource.extension.find((x) => x.url.endsWith('SubscriptionTopic.url'))?.valueUri);
    expect(urls).toContain(HREX_TASK_TOPIC);
    expect(found.entry.length).toBe(5);
  });
});

describe.skipIf(!existsSync(FIXTURES))('the Inferno sample Subscriptions (needs ../shared/fixtures/subscriptions)', () => {
  it.each(['inferno-sample-Subscription_empty.json', 'inferno-sample-Subscription_id-only.json', 'inferno-sample-Subscription_full-resource.json'])(
    '%s is accepted once its topic, filter and endpoint are ours',
    async (file) => {
      const sample = JSON.parse(readFileSync(new URL(file, FIXTURES), 'utf8'));
      const ours = { ...sample, criteria: HREX_TASK_TOPIC, _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: 'Task.patient=Patient/123' }] }, channel: { ...sample.channel, endpoint: ENDPOINT } };
      const response = await create(ours);
      expect(response.status, await response.clone().text()).toBe(201);
      const status = await body(await baton.request(`/fhir/Subscription/${(await body(response)).id}/$status`));
      expect(status.type).toBe('searchset');
      expect(status.entry[0].resource.parameter.find((p: { name: string }) => p.name === 'subscription').valueReference.reference).toMatch(new RegExp(`^${BASE_URL}/Subscription/`));
    },
  );
});
