import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { type JWK, SignJWT, importJWK, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { MEMBER_MATCH } from '../../../src/operations/member-match.ts';
import { PartnerBreakers } from '../../../src/workflow/partner/breakers.ts';
import { createPartnerClient } from '../../../src/workflow/partner/client.ts';
import { OutboundClientKeys } from '../../../src/workflow/partner/client-keys.ts';
import { PartnerTokens } from '../../../src/workflow/partner/tokens.ts';
import type { PartnerEndpoint } from '../../../src/workflow/partner/types.ts';
import { BASE_URL, type TestBaton, body, startBaton } from '../../support/baton.ts';
import { startFakePartner } from '../../support/fake-partner.ts';
import { NEW_PAYER_NPI, consentFor, matchRequest, putMember } from '../../operations/member-match-support.ts';
import { OKAFOR as FAKE_OKAFOR, collect, matchParameters, partnerError } from './partner-setup.ts';

/**
 * Baton's side of the outbound client: its client keys' JWKS at GET /jwks/client, which a
 * partner registers as Baton's jwks_uri; and Baton's own server as the partner, so the client
 * is known to work Baton-to-Baton (token endpoint, $member-match refusals, $everything).
 */

const ADMIN = 'test-admin-token-outbound';
const OKAFOR = { family: 'Okafor', given: ['Margaret'], birthDate: '1979-04-09', gender: 'female' as const };
let baton: TestBaton;
let server: Server;
let jwksUri: string;

beforeAll(async () => {
  baton = await startBaton({ config: { adminToken: ADMIN } });
  server = serve({ fetch: baton.app.fetch, port: 0, hostname: '127.0.0.1' }) as Server;
  await new Promise((resolve) => server.once('listening', resolve));
  jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks/client`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await baton.close();
});

const jwks = async () => body<{ keys: Record<string, unknown>[] }>(await baton.request('/jwks/client', { token: null }));

describe('GET /jwks/client', () => {
  it('serves the public half of each outbound client key, created on first use', async () => {
    const before = (await jwks()).keys.length;
    const keys = new OutboundClientKeys(baton.db);
    await keys.get('jwks-route-key');
    const response = await baton.request('/jwks/client', { token: null });
    expect(response.status).toBe(200);
    const set = await body<{ keys: Record<string, unknown>[] }>(response);
    expect(set.keys).toHaveLength(before + 1);
    const key = set.keys.find((k) => k.kid === 'jwks-route-key');
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-384', alg: 'ES384', use: 'sig' });
    expect(key).not.toHaveProperty('d');
  });

  it('creates one key when processes ask for a new key id at the same time', async () => {
    const processes = [new OutboundClientKeys(baton.db), new OutboundClientKeys(baton.db), new OutboundClientKeys(baton.db)];
    const loaded = await Promise.all(processes.map((keys) => keys.get('raced-key')));
    expect(loaded.map((key) => key.kid)).toEqual(['raced-key', 'raced-key', 'raced-key']);
    expect((await jwks()).keys.filter((k) => k.kid === 'raced-key')).toHaveLength(1);
    // Every process signs with the stored key: a fresh process (empty cache) loads the same one.
    const stored = (await jwks()).keys.find((k) => k.kid === 'raced-key') as JWK;
    for (const key of [...loaded, await new OutboundClientKeys(baton.db).get('raced-key')]) {
      const signed = await new SignJWT({}).setProtectedHeader({ alg: key.alg }).sign(key.privateKey);
      await expect(jwtVerify(signed, await importJWK(stored, 'ES384'))).resolves.toBeTruthy();
    }
  });

  it('refuses a key id that cannot be a kid', async () => {
    await expect(new OutboundClientKeys(baton.db).get('no spaces allowed')).rejects.toThrow('1 to 64');
  });

  it('lets a partner that registered Baton by jwks_uri verify Baton’s assertions', async () => {
    const keys = new OutboundClientKeys(baton.db);
    await keys.get('by-uri');
    const partner = await startFakePartner({ client: { clientId: 'baton', jwksUri } });
    try {
      const endpoint: PartnerEndpoint = { id: 'fake', baseUrl: partner.baseUrl, tokenUrl: partner.tokenUrl, clientId: 'baton', scope: 'system/*.rs', keyId: 'by-uri', adapter: 'standard', timeoutMs: 5000 };
      const client = createPartnerClient(endpoint, { keys, breakers: new PartnerBreakers(), tokens: new PartnerTokens(), logger: createLogger('silent') });
      expect(await client.memberMatch(matchParameters(FAKE_OKAFOR), { idempotencyKey: 'uri' })).toMatchObject({ memberId: 'okafor' });
      expect(partner.calls.map((c) => [c.route, c.status])).toEqual([
        ['token', 200],
        ['member-match', 200],
      ]);
    } finally {
      await partner.close();
    }
  });
});

describe('Baton as the partner', () => {
  let endpoint: PartnerEndpoint;
  let keys: OutboundClientKeys;
  // Baton's app answers the client's requests in process; its URLs are under BASE_URL.
  const inProcess: typeof fetch = async (input, init) => baton.app.request(input instanceof Request ? input : String(input), init);

  beforeAll(async () => {
    keys = new OutboundClientKeys(baton.db);
    await keys.get('baton-to-baton');
    // The old payer registers the new payer's client with the new payer's JWKS URL (here both payers are this one Baton).
    const registered = await baton.request('/admin/clients', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      token: null,
      body: JSON.stringify({ name: 'New Health Plan', kind: 'partner', organization: { identifier: [NEW_PAYER_NPI] }, jwks_uri: jwksUri, scope: `system/*.rs ${MEMBER_MATCH}` }),
    });
    expect(registered.status).toBe(201);
    const { client_id: clientId } = await body<{ client_id: string }>(registered);
    endpoint = { id: 'baton', baseUrl: BASE_URL, tokenUrl: new URL('/auth/token', BASE_URL).toString(), clientId, scope: `system/*.rs ${MEMBER_MATCH}`, keyId: 'baton-to-baton', adapter: 'standard', timeoutMs: 10_000 };
    await putMember(baton, { id: 'okafor', ...OKAFOR, memberId: 'W123456789-01', subscriberId: 'W123456789', line: '742 Evergreen Terrace' });
    await putMember(baton, { id: 'brandt', family: 'Brandt', given: ['Oskar'], birthDate: '1961-03-02', gender: 'male', memberId: 'B4440001', subscriberId: 'B4440001' });
    await putMember(baton, { id: 'brandt-dup', family: 'Brandt', given: ['Oskar'], birthDate: '1961-03-02', gender: 'male', memberId: 'B4440077', subscriberId: 'B4440077' });
  });

  const client = () => createPartnerClient(endpoint, { keys, breakers: new PartnerBreakers(), tokens: new PartnerTokens(), fetch: inProcess, logger: createLogger('silent') });

  it('gets a token from Baton’s token endpoint, matches the member and pulls $everything', async () => {
    const partner = client();
    const result = await partner.memberMatch(matchRequest({ ...OKAFOR, cardId: 'W123456789-01', line: '742 Evergreen Terrace' }), { idempotencyKey: 'b2b/match' });
    expect(result.memberIdentifier.value).toBeTruthy();
    expect(result.memberId).toBe('okafor');
    const record = await collect(partner.everything(result.memberId as string, { idempotencyKey: 'b2b/everything' }));
    expect(record.filter((r) => r.resourceType === 'Patient').map((r) => r.id)).toEqual(['okafor']);
    expect(record.some((r) => r.resourceType === 'Coverage')).toBe(true);
  });

  it('classifies Baton’s own refusals: no match, several members', async () => {
    const partner = client();
    const none = await partnerError(partner.memberMatch(matchRequest({ family: 'Nobody', given: ['Quentin'], birthDate: '1990-01-01', cardId: 'Z00000001' }), { idempotencyKey: 'b2b/none' }));
    expect(none).toMatchObject({ errorClass: 'non-retryable', code: 'no-match', status: 422 });
    // Two identical records under different cards: Baton refuses to choose (several matches, or its own review band).
    const several = await partnerError(partner.memberMatch(matchRequest({ family: 'Brandt', given: ['Oskar'], birthDate: '1961-03-02', gender: 'male' }), { idempotencyKey: 'b2b/several' }));
    const classes: Record<string, string> = { ambiguous: 'manual', 'under-review': 'retryable' };
    expect(Object.keys(classes)).toContain(several.code);
    expect(several).toMatchObject({ errorClass: classes[several.code], status: 422 });
  });

  it('classifies Baton’s refusal of an expired consent as non-retryable consent', async () => {
    const expired = consentFor('Patient/req-1', { period: { start: '2023-12-01', end: '2024-03-31' } });
    const error = await partnerError(client().memberMatch(matchRequest({ ...OKAFOR, cardId: 'W123456789-01' }, { consent: expired }), { idempotencyKey: 'b2b/consent' }));
    expect(error).toMatchObject({ errorClass: 'non-retryable', code: 'consent', status: 422 });
  });
});
