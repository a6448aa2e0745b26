import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PartnerTokens } from '../../../src/workflow/partner/tokens.ts';
import { startFakePartner } from '../../support/fake-partner.ts';
import { CLIENT_ID, KEY_ID, NOBODY, OKAFOR, type PartnerSetup, collect, matchParameters, partnerError, setUpPartner } from './partner-setup.ts';

let setup: PartnerSetup;
const call = (idempotencyKey = 'task-1/step') => ({ idempotencyKey });

beforeAll(async () => {
  setup = await setUpPartner();
});
afterAll(() => setup.close());
beforeEach(() => {
  setup.partner.calls.length = 0;
});

describe('SMART Backend Services tokens', () => {
  it('signs an assertion the partner accepts: ES384 with kid, iss = sub = client id, aud = token URL, jti, exp within 5 minutes', async () => {
    const assertions: string[] = [];
    const spy: typeof fetch = async (input, init) => {
      if (String(input) === setup.partner.tokenUrl) assertions.push(new URLSearchParams(String(init?.body)).get('client_assertion') ?? '');
      return fetch(input, init);
    };
    await setup.client({}, { fetch: spy }).memberMatch(matchParameters(OKAFOR), call());
    expect(assertions).toHaveLength(1);
    const header = decodeProtectedHeader(assertions[0] as string);
    const claims = decodeJwt(assertions[0] as string);
    expect(header).toMatchObject({ alg: 'ES384', kid: KEY_ID, typ: 'JWT' });
    expect(claims).toMatchObject({ iss: CLIENT_ID, sub: CLIENT_ID, aud: setup.partner.tokenUrl });
    expect(typeof claims.jti).toBe('string');
    expect((claims.exp as number) - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(300);
  });

  it('keeps the token for later calls, shared by clients of the same cache', async () => {
    const tokens = new PartnerTokens();
    await setup.client({}, { tokens }).memberMatch(matchParameters(OKAFOR), call('a'));
    await setup.client({}, { tokens }).memberMatch(matchParameters(OKAFOR), call('b'));
    await setup.client({}, { tokens }).findPatientId({ value: OKAFOR.card }, call('c'));
    expect(setup.partner.count('token')).toBe(1);
    expect(setup.partner.calls.filter((c) => c.route !== 'token').every((c) => c.authorized)).toBe(true);
  });

  it('asks concurrent callers’ token once', async () => {
    const client = setup.client();
    await Promise.all([1, 2, 3].map((n) => client.memberMatch(matchParameters(OKAFOR), call(`concurrent-${n}`))));
    expect(setup.partner.count('token')).toBe(1);
  });

  it('renews the token shortly before it expires', async () => {
    const shortLived = await setup.startPartner({ tokenLifetimeSeconds: 1 });
    const client = setup.client({ baseUrl: shortLived.baseUrl, tokenUrl: shortLived.tokenUrl });
    await client.memberMatch(matchParameters(OKAFOR), call('a'));
    await client.memberMatch(matchParameters(OKAFOR), call('b'));
    expect(shortLived.count('token')).toBe(1);
    // Renewed a fifth of its life early: after 0.8 of the second.
    await new Promise((resolve) => setTimeout(resolve, 850));
    await client.memberMatch(matchParameters(OKAFOR), call('c'));
    expect(shortLived.count('token')).toBe(2);
  });

  it('drops a refused token, gets a fresh one and tries once more with the same Idempotency-Key', async () => {
    const client = setup.client();
    await client.memberMatch(matchParameters(OKAFOR), call('before'));
    setup.partner.revokeTokens();
    const result = await client.memberMatch(matchParameters(OKAFOR), call('after-revoke'));
    expect(result.memberId).toBe('okafor');
    const matches = setup.partner.calls.filter((c) => c.route === 'member-match' && c.idempotencyKey === 'after-revoke');
    expect(matches.map((c) => c.status)).toEqual([401, 200]);
    expect(setup.partner.count('token')).toBe(2);
  });

  it('gives up after a second 401: non-retryable unauthorized', async () => {
    setup.partner.script('member-match', { kind: 'respond', status: 401, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] } }, 2);
    const error = await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call()));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'unauthorized', status: 401 });
    expect(setup.partner.count('member-match')).toBe(2);
    expect(setup.partner.count('token')).toBe(2);
  });

  it('does not retry a 403 with a fresh token', async () => {
    setup.partner.script('member-match', { kind: 'respond', status: 403 });
    const error = await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call()));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'forbidden', status: 403 });
    expect(setup.partner.count('member-match')).toBe(1);
    expect(setup.partner.count('token')).toBe(1);
  });

  it('is refused a token for a key the partner has not registered: non-retryable, no data request sent', async () => {
    const error = await partnerError(setup.client({ keyId: 'unregistered-key' }).memberMatch(matchParameters(OKAFOR), call()));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'unauthorized', status: 401 });
    expect(error.message).toContain('invalid_client');
    expect(setup.partner.count('member-match')).toBe(0);
  });

  it('is refused a token by a partner where Baton has another client id', async () => {
    const error = await partnerError(setup.client({ clientId: 'someone-else' }).memberMatch(matchParameters(OKAFOR), call()));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'unauthorized' });
  });
});

describe('$member-match', () => {
  it('answers the MemberIdentifier and the partner’s Patient id (MemberId)', async () => {
    const result = await setup.client().memberMatch(matchParameters(OKAFOR), call('task-1/match'));
    expect(result).toEqual({ memberIdentifier: expect.objectContaining({ system: 'urn:fake-partner:member-id', value: 'W123456789-01' }), memberId: 'okafor' });
    const match = setup.partner.calls.find((c) => c.route === 'member-match');
    expect(match).toMatchObject({ method: 'POST', idempotencyKey: 'task-1/match', status: 200 });
  });

  it('answers the MemberIdentifier alone when the partner returns no MemberId (HRex 1.0), and finds the Patient by it', async () => {
    const hrex10 = await setup.startPartner({ memberId: false });
    const client = setup.client({ baseUrl: hrex10.baseUrl, tokenUrl: hrex10.tokenUrl });
    const result = await client.memberMatch(matchParameters(OKAFOR), call());
    expect(result).toEqual({ memberIdentifier: expect.objectContaining({ value: 'W123456789-01' }) });
    expect(await client.findPatientId(result.memberIdentifier, call())).toBe('okafor');
    const search = hrex10.calls.find((c) => c.route === 'search');
    expect(search).toMatchObject({ method: 'GET', idempotencyKey: 'task-1/step', status: 200 });
  });

  it('reports a member identifier the partner does not know as not-found', async () => {
    const error = await partnerError(setup.client().findPatientId({ value: 'X-UNKNOWN' }, call()));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'not-found' });
  });

  it('reads a MemberId given as an absolute or versioned reference', async () => {
    for (const reference of [`${setup.partner.baseUrl}/Patient/okafor`, 'Patient/okafor/_history/3']) {
      setup.partner.script('member-match', {
        kind: 'respond',
        status: 200,
        body: { resourceType: 'Parameters', parameter: [{ name: 'MemberIdentifier', valueIdentifier: { value: 'W1' } }, { name: 'MemberId', valueReference: { reference } }] },
      });
      expect(await setup.client().memberMatch(matchParameters(OKAFOR), call())).toEqual({ memberIdentifier: { value: 'W1' }, memberId: 'okafor' });
    }
  });

  it.each([
    ['Parameters without MemberIdentifier', { resourceType: 'Parameters', parameter: [{ name: 'MemberId', valueReference: { reference: 'Patient/okafor' } }] }],
    ['a MemberId that is not a Patient', { resourceType: 'Parameters', parameter: [{ name: 'MemberIdentifier', valueIdentifier: { value: 'W1' } }, { name: 'MemberId', valueReference: { reference: 'Group/1' } }] }],
    ['another resource', { resourceType: 'Bundle', type: 'collection' }],
    ['text that is not JSON', '{"resourceType": "Parameters", '],
  ])('refers %s to a person (manual protocol)', async (_what, body) => {
    setup.partner.script('member-match', { kind: 'respond', status: 200, headers: { 'content-type': 'application/fhir+json' }, body });
    const error = await partnerError(setup.client().memberMatch(matchParameters(OKAFOR), call()));
    expect(error).toMatchObject({ errorClass: 'manual', code: 'protocol' });
  });

  it('is refused when it reuses an Idempotency-Key for another request (a 422 that is no match outcome: bad-request)', async () => {
    const client = setup.client();
    await client.memberMatch(matchParameters(OKAFOR), call('task-8/match'));
    const error = await partnerError(client.memberMatch(matchParameters(NOBODY), call('task-8/match')));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'bad-request', status: 422 });
  });

  it('meets a partner that ignores Idempotency-Key: the work is done and answered 200 twice', async () => {
    const client = setup.client();
    await client.memberMatch(matchParameters(OKAFOR), call('task-6/match'));
    setup.partner.script('member-match', { kind: 'no-replay' });
    expect(await client.memberMatch(matchParameters(OKAFOR), call('task-6/match'))).toMatchObject({ memberId: 'okafor' });
    expect(setup.partner.calls.filter((c) => c.route === 'member-match').map((c) => [c.status, c.replayed])).toEqual([
      [200, false],
      [200, false],
    ]);
  });

  it('gets the stored answer back when a retried step repeats its Idempotency-Key', async () => {
    const client = setup.client();
    const first = await client.memberMatch(matchParameters(OKAFOR), call('task-7/match'));
    const again = await client.memberMatch(matchParameters(OKAFOR), call('task-7/match'));
    expect(again).toEqual(first);
    expect(setup.partner.calls.filter((c) => c.route === 'member-match').map((c) => c.replayed)).toEqual([false, true]);
  });
});

describe('Patient/$everything', () => {
  it('follows the next links page after page', async () => {
    const resources = await collect(setup.client().everything('okafor', call('task-1/everything')));
    expect(resources.map((r) => `${r.resourceType}/${r.id}`)).toEqual(['Patient/okafor', 'Coverage/okafor-coverage', 'Observation/okafor-obs-1', 'Observation/okafor-obs-2', 'Observation/okafor-obs-3']);
    const pages = setup.partner.calls.filter((c) => c.route === 'everything');
    expect(pages).toHaveLength(3);
    expect(pages.every((c) => c.idempotencyKey === 'task-1/everything' && c.status === 200)).toBe(true);
  });

  it('refuses to send the token to a next link on another origin', async () => {
    setup.partner.script('everything', {
      kind: 'respond',
      status: 200,
      body: { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'next', url: 'http://elsewhere.invalid/fhir/Patient/okafor/$everything?page=1' }], entry: [{ resource: { resourceType: 'Patient', id: 'okafor' } }] },
    });
    const seen: string[] = [];
    const error = await partnerError(
      (async () => {
        for await (const resource of setup.client().everything('okafor', call())) seen.push(resource.resourceType);
      })(),
    );
    expect(seen).toEqual(['Patient']);
    expect(error).toMatchObject({ errorClass: 'manual', code: 'protocol' });
  });

  it('answers 404 for a patient the partner does not have as not-found', async () => {
    const error = await partnerError(collect(setup.client().everything('nobody', call())));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'not-found', status: 404 });
  });
});

describe('Bulk Data', () => {
  it('kicks off, polls until the manifest and streams every file', async () => {
    const client = setup.client();
    const started = await client.bulkKickOff({ path: 'Group/members/$davinci-data-export', method: 'GET', query: { exportType: 'hl7.fhir.us.davinci-pdex#payertopayer' } }, call('task-2/export'));
    expect(started.statusUrl).toMatch(new RegExp(`^${setup.partner.baseUrl.replace(/[$.]/g, '\\$&')}/\\$export-status/`));
    expect(await client.bulkPoll(started.statusUrl, call('task-2/export'))).toEqual({ state: 'in-progress', retryAfterMs: 0, progress: 'poll 1' });
    const done = await client.bulkPoll(started.statusUrl, call('task-2/export'));
    if (done.state !== 'complete') throw new Error('expected the manifest');
    expect(done.manifest).toMatchObject({ requiresAccessToken: true, error: [] });
    expect(done.manifest.output.map((o) => [o.type, o.count])).toEqual([
      ['Patient', 3],
      ['Coverage', 3],
      ['Observation', 9],
    ]);
    const downloaded = [];
    for (const file of done.manifest.output) downloaded.push(...(await collect(client.download(file.url, done.manifest.requiresAccessToken, call('task-2/export')))));
    expect(downloaded).toHaveLength(15);
    expect(new Set(downloaded.map((r) => r.resourceType))).toEqual(new Set(['Patient', 'Coverage', 'Observation']));
    const files = setup.partner.calls.filter((c) => c.route === 'file');
    expect(files.every((c) => c.authorized && c.status === 200)).toBe(true);
  });

  it('POSTs Parameters to the kick-off; a repeated kick-off with the same key gets the same status URL', async () => {
    const client = setup.client();
    const request = { path: 'Patient/$export', method: 'POST' as const, parameters: { resourceType: 'Parameters' as const, parameter: [{ name: 'patient', valueReference: { reference: 'Patient/okafor' } }] } };
    const first = await client.bulkKickOff(request, call('task-3/export'));
    const again = await client.bulkKickOff(request, call('task-3/export'));
    expect(again.statusUrl).toBe(first.statusUrl);
    let poll = await client.bulkPoll(first.statusUrl, call('task-3/export'));
    while (poll.state !== 'complete') poll = await client.bulkPoll(first.statusUrl, call('task-3/export'));
    // The partner exported the member named in the Parameters only.
    expect(poll.manifest.output.map((o) => [o.type, o.count])).toEqual([
      ['Patient', 1],
      ['Coverage', 1],
      ['Observation', 3],
    ]);
    expect(setup.partner.calls.filter((c) => c.route === 'kick-off').map((c) => [c.method, c.replayed])).toEqual([
      ['POST', false],
      ['POST', true],
    ]);
  });

  it('keeps answering in-progress for an export stuck at 202', async () => {
    const stuck = await setup.startPartner();
    const client = setup.client({ baseUrl: stuck.baseUrl, tokenUrl: stuck.tokenUrl });
    const { statusUrl } = await client.bulkKickOff({ path: '$export', method: 'GET' }, call());
    stuck.script('status', { kind: 'stuck' }, Infinity);
    for (let i = 0; i < 4; i++) expect(await client.bulkPoll(statusUrl, call())).toMatchObject({ state: 'in-progress' });
    expect(stuck.count('status')).toBe(4);
    stuck.clearScripts('status');
    expect(await client.bulkPoll(statusUrl, call())).toMatchObject({ state: 'complete' });
  });

  it('cancels, and a second cancel of the gone export succeeds too', async () => {
    const client = setup.client();
    const { statusUrl } = await client.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call());
    await client.bulkCancel(statusUrl, call());
    await client.bulkCancel(statusUrl, call());
    expect(setup.partner.calls.filter((c) => c.route === 'cancel').map((c) => c.status)).toEqual([202, 404]);
    const error = await partnerError(client.bulkPoll(statusUrl, call()));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'not-found' });
  });

  it('streams a file: resources arrive while the partner is still sending', async () => {
    const client = setup.client();
    const manifest = await completedExport();
    const observations = manifest.output.find((o) => o.type === 'Observation')?.url as string;
    let release = () => undefined as void;
    const until = new Promise<void>((resolve) => {
      release = resolve;
    });
    setup.partner.script('file', { kind: 'hold', afterLines: 2, until });
    const iterator = client.download(observations, true, call())[Symbol.asyncIterator]();
    // The server holds the rest of the file until released: these two can only come from a stream.
    expect((await iterator.next()).value).toMatchObject({ resourceType: 'Observation', id: 'okafor-obs-1' });
    expect((await iterator.next()).value).toMatchObject({ resourceType: 'Observation', id: 'okafor-obs-2' });
    release();
    const rest = [];
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) rest.push(next.value);
    expect(rest).toHaveLength(7);
  });

  it('fails a file cut short as retryable (network) after the lines that arrived', async () => {
    const client = setup.client();
    const manifest = await completedExport();
    setup.partner.script('file', { kind: 'cut', afterLines: 4 });
    const seen: string[] = [];
    const error = await partnerError(
      (async () => {
        for await (const resource of client.download(manifest.output.find((o) => o.type === 'Observation')?.url as string, true, call())) seen.push(resource.id as string);
      })(),
    );
    expect(seen).toHaveLength(4);
    expect(error).toMatchObject({ errorClass: 'retryable', code: 'network' });
  });

  it('stops reading when the consumer stops: the rest of the file is not fetched', async () => {
    const client = setup.client();
    const manifest = await completedExport();
    for await (const resource of client.download(manifest.output.find((o) => o.type === 'Observation')?.url as string, true, call())) {
      expect(resource.resourceType).toBe('Observation');
      break;
    }
    // The next request goes through at once: nothing was left hanging.
    expect(await client.findPatientId({ value: OKAFOR.card }, call())).toBe('okafor');
  });

  it.each([
    ['not JSON', '{"resourceType":"Observation","id":"o1"}\n{"resourceType": \n'],
    ['not a resource', '{"resourceType":"Observation","id":"o1"}\n\n{"id":"o2"}\n'],
  ])('refers a line that is %s to a person, naming the line', async (_what, body) => {
    const client = setup.client();
    const manifest = await completedExport(client);
    setup.partner.script('file', { kind: 'respond', status: 200, headers: { 'content-type': 'application/fhir+ndjson' }, body });
    const seen: string[] = [];
    const error = await partnerError(
      (async () => {
        for await (const resource of client.download(manifest.output[0]?.url as string, true, call())) seen.push(resource.id as string);
      })(),
    );
    expect(seen).toEqual(['o1']);
    expect(error).toMatchObject({ errorClass: 'manual', code: 'protocol' });
    expect(error.message).toMatch(/line [23] /);
  });

  it('downloads without the token when the manifest does not require it', async () => {
    const open = await setup.startPartner({ requiresAccessToken: false });
    const client = setup.client({ baseUrl: open.baseUrl, tokenUrl: open.tokenUrl });
    const manifest = await completedExport(client);
    expect(manifest.requiresAccessToken).toBe(false);
    open.calls.length = 0;
    expect(await collect(client.download(manifest.output[0]?.url as string, false, call()))).toHaveLength(3);
    expect(open.calls.map((c) => [c.route, c.authorized, c.status])).toEqual([['file', false, 200]]);
  });
});

it('sends the call’s Idempotency-Key and a fresh X-Request-Id on every request but the token request', async () => {
  const client = setup.client();
  await client.memberMatch(matchParameters(OKAFOR), call('task-9/all'));
  await collect(client.everything('okafor', call('task-9/all')));
  const manifest = await completedExport(client, 'task-9/all');
  await collect(client.download(manifest.output[0]?.url as string, true, call('task-9/all')));
  const data = setup.partner.calls.filter((c) => c.route !== 'token');
  expect(new Set(data.map((c) => c.route))).toEqual(new Set(['member-match', 'everything', 'kick-off', 'status', 'file']));
  expect(data.every((c) => c.idempotencyKey === 'task-9/all')).toBe(true);
  const requestIds = setup.partner.calls.map((c) => c.requestId);
  expect(requestIds.every((id) => typeof id === 'string')).toBe(true);
  expect(new Set(requestIds).size).toBe(requestIds.length);
  expect(setup.partner.calls.filter((c) => c.route === 'token').map((c) => c.idempotencyKey)).toEqual([undefined]);
});

async function completedExport(client = setup.client(), idempotencyKey = 'task-export') {
  const { statusUrl } = await client.bulkKickOff({ path: 'Patient/$export', method: 'GET' }, call(idempotencyKey));
  for (;;) {
    const poll = await client.bulkPoll(statusUrl, call(idempotencyKey));
    if (poll.state === 'complete') return poll.manifest;
  }
}

it('a fake partner with injected transient failures answers that share 503, the same on every run', async () => {
  const failing = () => setup.startPartner({ transientFailures: { rate: 0.2, seed: 7 } });
  const statuses = async (partner: Awaited<ReturnType<typeof failing>>) => {
    const client = setup.client({ baseUrl: partner.baseUrl, tokenUrl: partner.tokenUrl, adapter: 'lenient' });
    for (let i = 0; i < 200; i++) await client.findPatientId({ value: OKAFOR.card }, call()).catch(() => undefined);
    return partner.calls.filter((c) => c.route === 'search').map((c) => c.status);
  };
  const first = await statuses(await failing());
  const failed = first.filter((status) => status === 503).length;
  expect(failed).toBeGreaterThan(20);
  expect(failed).toBeLessThan(60);
  expect(await statuses(await failing())).toEqual(first);
});

it('a fake partner without Baton’s registration refuses every token request', async () => {
  const stranger = await startFakePartner();
  try {
    const error = await partnerError(setup.client({ baseUrl: stranger.baseUrl, tokenUrl: stranger.tokenUrl }).memberMatch(matchParameters(OKAFOR), call()));
    expect(error).toMatchObject({ code: 'unauthorized' });
  } finally {
    await stranger.close();
  }
});
