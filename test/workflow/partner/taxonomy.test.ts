import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseRetryAfter, partnerAdapter } from '../../../src/workflow/partner/adapters.ts';
import { createPartnerClient } from '../../../src/workflow/partner/client.ts';
import { PartnerBreakers } from '../../../src/workflow/partner/breakers.ts';
import { createLogger } from '../../../src/logger.ts';
import { NOBODY, OKAFOR, type PartnerSetup, TWIN, collect, matchParameters, partnerError, setUpPartner } from './partner-setup.ts';

let setup: PartnerSetup;
/** A key of its own for each test: the fake partner replays (or refuses) a key it has seen. */
let call = { idempotencyKey: '' };
const oo = (code: string, detail?: string) => ({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: 'Member Margaret Okafor born 1957-04-09', ...(detail ? { details: { coding: [{ system: 'urn:x', code: detail }] } } : {}) }] });

beforeAll(async () => {
  setup = await setUpPartner();
});
afterAll(() => setup.close());
beforeEach(() => {
  setup.partner.calls.length = 0;
  call = { idempotencyKey: randomUUID() };
});

describe('error taxonomy of partner answers', () => {
  it.each([
    [500, 'standard', 'non-retryable', 'server-error'],
    [500, 'lenient', 'retryable', 'server-error'],
    [501, 'lenient', 'non-retryable', 'server-error'],
    [502, 'standard', 'retryable', 'unavailable'],
    [503, 'standard', 'retryable', 'unavailable'],
    [504, 'standard', 'retryable', 'unavailable'],
    [429, 'standard', 'retryable', 'throttled'],
    [408, 'standard', 'retryable', 'timeout'],
    [409, 'standard', 'retryable', 'in-progress'],
    [400, 'standard', 'non-retryable', 'bad-request'],
    [404, 'standard', 'non-retryable', 'not-found'],
    [405, 'standard', 'non-retryable', 'bad-request'],
    [410, 'standard', 'non-retryable', 'gone'],
    [413, 'standard', 'non-retryable', 'bad-request'],
  ])('%i from a %s partner is %s %s', async (status, adapter, errorClass, code) => {
    setup.partner.script('member-match', { kind: 'respond', status, body: oo('exception') });
    const error = await partnerError(setup.client({ adapter }).memberMatch(matchParameters(OKAFOR), call));
    expect(error).toMatchObject({ errorClass, code, status });
  });

  it('reads a Bulk Data transient failure as retryable, even from a strict partner', async () => {
    const client = setup.client();
    const { statusUrl } = await client.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
    setup.partner.script('status', { kind: 'respond', status: 500, body: oo('transient') });
    expect(await partnerError(client.bulkPoll(statusUrl, call))).toMatchObject({ errorClass: 'retryable', code: 'server-error', status: 500 });
    setup.partner.script('status', { kind: 'respond', status: 500, body: oo('exception') });
    expect(await partnerError(client.bulkPoll(statusUrl, call))).toMatchObject({ errorClass: 'non-retryable', code: 'server-error' });
  });

  it('tells the $member-match refusals apart by their OperationOutcome codes', async () => {
    const client = setup.client();
    expect(await partnerError(client.memberMatch(matchParameters(NOBODY), call))).toMatchObject({ errorClass: 'non-retryable', code: 'no-match', status: 422 });
    expect(await partnerError(client.memberMatch(matchParameters(TWIN), { idempotencyKey: 'twin' }))).toMatchObject({ errorClass: 'manual', code: 'ambiguous', status: 422 });
    expect(await partnerError(client.memberMatch(matchParameters(OKAFOR, false), { idempotencyKey: 'no-consent' }))).toMatchObject({ errorClass: 'non-retryable', code: 'consent', status: 422 });
  });

  it.each([
    ['not-found', undefined, 'non-retryable', 'no-match'],
    ['processing', 'no-match', 'non-retryable', 'no-match'],
    ['multiple-matches', 'multiple-matches', 'manual', 'ambiguous'],
    ['processing', 'multiple-candidates', 'manual', 'ambiguous'],
    ['security', 'consent-expired', 'non-retryable', 'consent'],
    ['business-rule', 'consent-not-honoured', 'non-retryable', 'consent'],
    ['incomplete', 'under-review', 'retryable', 'under-review'],
    ['required', undefined, 'non-retryable', 'bad-request'],
  ])('a 422 with issue %s and details %s is %s %s', async (issue, detail, errorClass, code) => {
    setup.partner.script('member-match', { kind: 'respond', status: 422, body: oo(issue, detail) });
    const error = await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call));
    expect(error).toMatchObject({ errorClass, code, status: 422 });
  });

  it('keeps the partner’s diagnostics out of the message (they may quote the member)', async () => {
    setup.partner.script('member-match', { kind: 'respond', status: 422, body: oo('not-found', 'no-match') });
    const error = await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call));
    expect(error.message).toBe('Partner partner-1 answered 422 to $member-match: no unique member matches (issues: not-found/no-match)');
    expect(error.message).not.toMatch(/Okafor|Margaret|1957/);
  });

  it('reads an error body that is not FHIR by its status alone', async () => {
    setup.partner.script('member-match', { kind: 'respond', status: 503, headers: { 'content-type': 'text/html' }, body: '<html>Service Unavailable</html>' });
    expect(await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call))).toMatchObject({ errorClass: 'retryable', code: 'unavailable' });
  });
});

describe('Retry-After', () => {
  it.each([
    ['120', 120_000],
    [' 0 ', 0],
    ['Fri, 27 Nov 2026 10:00:30 GMT', 30_000],
    ['Friday, 27-Nov-26 10:00:30 GMT', 30_000],
    ['Fri Nov 27 10:00:30 2026', 30_000],
    ['Fri, 27 Nov 2026 09:59:00 GMT', 0],
    ['-5', undefined],
    ['1.5', undefined],
    ['soon', undefined],
    ['2026-11-27T10:00:30Z', undefined],
  ])('reads %j as %s ms', (value, ms) => {
    expect(parseRetryAfter(value, Date.parse('2026-11-27T10:00:00Z'))).toBe(ms);
  });

  it('carries the partner’s Retry-After (seconds or HTTP-date) on a 429 or 503', async () => {
    setup.partner.script('member-match', { kind: 'respond', status: 429, headers: { 'retry-after': '7' } });
    expect(await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call))).toMatchObject({ code: 'throttled', retryAfterMs: 7000 });
    setup.partner.script('member-match', { kind: 'respond', status: 503, headers: { 'retry-after': new Date(Date.now() + 60_000).toUTCString() } });
    const error = await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call));
    expect(error.retryAfterMs).toBeGreaterThan(55_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(60_000);
  });

  it('leaves a missing Retry-After to the retry policy, or to the adapter’s default', async () => {
    setup.partner.script('member-match', { kind: 'respond', status: 429 }, 2);
    expect((await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call))).retryAfterMs).toBeUndefined();
    expect((await partnerError(setup.client({ adapter: 'lenient' }).memberMatch(matchParameters(OKAFOR), call))).retryAfterMs).toBe(partnerAdapter('lenient').defaultRetryAfterMs);
  });
});

describe('transport failures', () => {
  it('times out a partner slower than the endpoint’s timeout: retryable timeout', async () => {
    setup.partner.script('member-match', { kind: 'delay', ms: 1000 });
    const started = Date.now();
    const error = await partnerError(setup.client({ timeoutMs: 200 }).memberMatch(matchParameters(OKAFOR), call));
    expect(error).toMatchObject({ errorClass: 'retryable', code: 'timeout' });
    expect(Date.now() - started).toBeLessThan(900);
  });

  it('times out a download whose partner stops sending, however long the file', async () => {
    const client = setup.client({ timeoutMs: 300 });
    const { statusUrl } = await client.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
    let poll = await client.bulkPoll(statusUrl, call);
    while (poll.state !== 'complete') poll = await client.bulkPoll(statusUrl, call);
    const never = new Promise<void>(() => undefined);
    setup.partner.script('file', { kind: 'hold', afterLines: 1, until: never });
    const seen: string[] = [];
    const error = await partnerError(
      (async () => {
        for await (const resource of client.download(poll.manifest.output[0]?.url as string, true, call)) seen.push(resource.resourceType);
      })(),
    );
    expect(seen).toEqual(['Patient']);
    expect(error).toMatchObject({ errorClass: 'retryable', code: 'timeout' });
  });

  it('does not count the consumer’s own time between resources against the partner', async () => {
    const client = setup.client({ timeoutMs: 200 });
    const { statusUrl } = await client.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
    let poll = await client.bulkPoll(statusUrl, call);
    while (poll.state !== 'complete') poll = await client.bulkPoll(statusUrl, call);
    const seen: string[] = [];
    for await (const resource of client.download(poll.manifest.output[0]?.url as string, true, call)) {
      seen.push(resource.id as string);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    expect(seen).toHaveLength(3);
  });

  it('reports a partner that refuses connections as retryable network, and reaches it again once it is back', async () => {
    const partner = await setup.startPartner();
    const client = setup.client({ baseUrl: partner.baseUrl, tokenUrl: partner.tokenUrl });
    await partner.down();
    const error = await partnerError(client.memberMatch(matchParameters(OKAFOR), call));
    expect(error).toMatchObject({ errorClass: 'retryable', code: 'network' });
    expect(error.message).toContain('ECONNREFUSED');
    await partner.up();
    expect(await client.memberMatch(matchParameters(OKAFOR), call)).toMatchObject({ memberId: 'okafor' });
  });

  it('reports a connection closed without an answer as retryable network', async () => {
    setup.partner.script('member-match', { kind: 'reset' });
    expect(await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call))).toMatchObject({ errorClass: 'retryable', code: 'network' });
  });

  it('reports a call its caller aborted as cancelled, which does not trip the breaker', async () => {
    const breakers = new PartnerBreakers({ consecutiveFailures: 1 });
    const client = setup.client({}, { breakers });
    setup.partner.script('member-match', { kind: 'delay', ms: 500 });
    const error = await partnerError(client.memberMatch(matchParameters(OKAFOR), { idempotencyKey: 'k', signal: AbortSignal.timeout(50) }));
    expect(error).toMatchObject({ errorClass: 'retryable', code: 'cancelled' });
    expect(breakers.state('partner-1')).toBe('closed');
  });
});

describe('adapters', () => {
  it.each([
    ['baseUrl', { baseUrl: 'not a url' }],
    ['tokenUrl', { tokenUrl: 'ftp://partner.example/token' }],
    ['adapter', { adapter: 'mystery' }],
    ['keyId', { keyId: 'has spaces' }],
    ['timeoutMs', { timeoutMs: 0 }],
  ])('refuses an endpoint with an unusable %s as a configuration error', (_field, override) => {
    const endpoint = { id: 'e', baseUrl: 'https://partner.example/fhir', tokenUrl: 'https://partner.example/token', clientId: 'c', scope: 's', keyId: 'k', adapter: 'standard', timeoutMs: 1000, ...override };
    const create = () => createPartnerClient(endpoint, { keys: setup.keys, breakers: new PartnerBreakers(), logger: createLogger('silent') });
    expect(create).toThrow(expect.objectContaining({ errorClass: 'non-retryable', code: 'configuration' }));
  });

  it.each([
    ['a path outside the kick-off forms', { path: '../admin/$export', method: 'GET' as const }],
    ['Parameters on a GET', { path: 'Patient/$export', method: 'GET' as const, parameters: { resourceType: 'Parameters' as const } }],
  ])('refuses a kick-off with %s before sending anything', async (_what, request) => {
    expect(await partnerError(setup.client().bulkKickOff(request, call))).toMatchObject({ errorClass: 'non-retryable', code: 'configuration' });
    expect(setup.partner.calls).toHaveLength(0);
  });

  it('kick-off answered 200 with Content-Location: a protocol error for a strict partner, the status URL for a lenient one', async () => {
    setup.partner.script('kick-off', { kind: 'ok-instead-of-accepted', with: 'location' }, 2);
    const strict = await partnerError(setup.client().bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call));
    expect(strict).toMatchObject({ errorClass: 'manual', code: 'protocol', status: 200 });
    const lenient = setup.client({ adapter: 'lenient' });
    const { statusUrl } = await lenient.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
    expect(await lenient.bulkPoll(statusUrl, call)).toMatchObject({ state: 'in-progress' });
  });

  it('kick-off answered 200 with the manifest: a lenient client carries it as a status URL that polls complete', async () => {
    setup.partner.script('kick-off', { kind: 'ok-instead-of-accepted', with: 'manifest' });
    const lenient = setup.client({ adapter: 'lenient' });
    const started = await lenient.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
    expect(started.statusUrl).toMatch(/^data:application\/json;base64,/);
    expect(started.manifest?.output).toHaveLength(3);
    expect(await lenient.bulkPoll(started.statusUrl, call)).toEqual({ state: 'complete', manifest: started.manifest });
    await lenient.bulkCancel(started.statusUrl, call);
    expect(await collect(lenient.download(started.manifest?.output[0]?.url as string, true, call))).toHaveLength(3);
    expect(setup.partner.calls.map((c) => c.route)).toEqual(['token', 'kick-off', 'file']);
  });

  it('relative URLs: refused from a strict partner, resolved against the base for a lenient one', async () => {
    setup.partner.script('kick-off', { kind: 'relative-urls' }, 2);
    expect(await partnerError(setup.client().bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call))).toMatchObject({ code: 'protocol' });
    const lenient = setup.client({ adapter: 'lenient' });
    const { statusUrl } = await lenient.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
    expect(statusUrl.startsWith(`${setup.partner.baseUrl}/$export-status/`)).toBe(true);
    setup.partner.script('everything', { kind: 'relative-urls' });
    expect(await collect(lenient.everything('okafor', call))).toHaveLength(5);
    setup.partner.script('status', { kind: 'relative-urls' }, 2);
    await lenient.bulkPoll(statusUrl, call);
    const done = await lenient.bulkPoll(statusUrl, call);
    expect(done.state === 'complete' && done.manifest.output.every((o) => o.url.startsWith(`${setup.partner.baseUrl}/$export-file/`))).toBe(true);
  });

  it('a manifest without error and requiresAccessToken: refused strictly, read leniently as none and true', async () => {
    const strict = setup.client();
    const first = await strict.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
    await strict.bulkPoll(first.statusUrl, call);
    setup.partner.script('status', { kind: 'partial-manifest' });
    expect(await partnerError(strict.bulkPoll(first.statusUrl, call))).toMatchObject({ errorClass: 'manual', code: 'protocol' });
    const lenient = setup.client({ adapter: 'lenient' });
    const second = await lenient.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
    await lenient.bulkPoll(second.statusUrl, call);
    setup.partner.script('status', { kind: 'partial-manifest' });
    expect(await lenient.bulkPoll(second.statusUrl, call)).toMatchObject({ state: 'complete', manifest: { requiresAccessToken: true, error: [] } });
  });

  it('a 202 without Retry-After: polled again after the adapter’s default', async () => {
    for (const adapter of ['standard', 'lenient']) {
      const client = setup.client({ adapter });
      const { statusUrl } = await client.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
      setup.partner.script('status', { kind: 'respond', status: 202 });
      expect(await client.bulkPoll(statusUrl, call)).toEqual({ state: 'in-progress', retryAfterMs: partnerAdapter(adapter).defaultPollMs });
    }
  });

  it.each([
    ['member-match', 'application/json'],
    ['file', 'text/plain'],
    ['file', 'application/ndjson'],
  ] as const)('%s answered as %s: refused strictly, accepted leniently', async (route, contentType) => {
    const run = async (adapter: string) => {
      const client = setup.client({ adapter });
      if (route === 'member-match') {
        setup.partner.script(route, { kind: 'content-type', contentType });
        return client.memberMatch(matchParameters(OKAFOR), call);
      }
      const { statusUrl } = await client.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call);
      let poll = await client.bulkPoll(statusUrl, call);
      while (poll.state !== 'complete') poll = await client.bulkPoll(statusUrl, call);
      setup.partner.script(route, { kind: 'content-type', contentType });
      return collect(client.download(poll.manifest.output[0]?.url as string, true, call));
    };
    expect(await partnerError(run('standard'))).toMatchObject({ errorClass: 'manual', code: 'protocol' });
    expect(await run('lenient')).toBeTruthy();
  });

  it('a kick-off answered 200 by a strict partner is never polled', async () => {
    setup.partner.script('kick-off', { kind: 'ok-instead-of-accepted', with: 'manifest' });
    expect(await partnerError(setup.client().bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call))).toMatchObject({ code: 'protocol' });
    expect(setup.partner.count('status')).toBe(0);
  });
});
