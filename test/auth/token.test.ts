import { createHmac } from 'node:crypto';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_URL } from '../support/baton.ts';
import {
  type AuthBaton,
  type ClientKeys,
  assertionFields,
  clientKeys,
  registerClient,
  signAssertion,
  startAuthBaton,
  tokenRequest,
} from './harness.ts';

let auth: AuthBaton;
let keys: ClientKeys;
let clientId: string;

beforeAll(async () => {
  auth = await startAuthBaton();
  keys = await clientKeys('ES384');
  clientId = await registerClient(auth, keys, 'system/Patient.read system/Coverage.rs');
});
afterAll(() => auth.close());

function b64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iss: clientId, sub: clientId, aud: 'http://baton.test/auth/token', exp: now + 240, jti: crypto.randomUUID(), ...overrides };
}

async function expectOAuthError(response: Response, status: number, error: string): Promise<void> {
  expect(response.status).toBe(status);
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = (await response.json()) as { error: string; error_description: string };
  expect(body.error).toBe(error);
  expect(typeof body.error_description).toBe('string');
}

describe('POST /auth/token', () => {
  it('issues a Baton-signed access token for a valid ES384 assertion, verifiable with /auth/jwks', async () => {
    const response = await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys }), 'system/Patient.read'));
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const body = (await response.json()) as { access_token: string; token_type: string; expires_in: number; scope: string };
    expect(body.token_type).toBe('bearer');
    expect(body.expires_in).toBeLessThanOrEqual(300);
    expect(body.scope).toBe('system/Patient.read');

    const jwks = await (await auth.request('/auth/jwks')).json();
    const { payload, protectedHeader } = await jwtVerify(body.access_token, createLocalJWKSet(jwks), { issuer: 'http://baton.test', audience: BASE_URL });
    expect(payload.sub).toBe(clientId);
    expect(payload.scope).toBe('system/Patient.read');
    expect(typeof payload.jti).toBe('string');
    expect((payload.exp as number) - (payload.iat as number)).toBeLessThanOrEqual(300);
    expect(jwks.keys.map((k: { kid: string }) => k.kid)).toContain(protectedHeader.kid);
    expect(jwks.keys.every((k: Record<string, unknown>) => !('d' in k))).toBe(true);
  });

  it('accepts an RS384 assertion from a client registered with an RSA key', async () => {
    const rsa = await clientKeys('RS384');
    const rsaClient = await registerClient(auth, rsa, 'system/*.read');
    const response = await tokenRequest(auth, assertionFields(await signAssertion({ clientId: rsaClient, keys: rsa }), 'system/Observation.read'));
    expect(response.status).toBe(200);
    expect(((await response.json()) as { scope: string }).scope).toBe('system/Observation.read');
  });

  it('grants requested ∩ registered: a v2 wildcard request narrows to the registered scopes', async () => {
    const response = await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys }), 'system/*.rs'));
    expect(response.status).toBe(200);
    expect(((await response.json()) as { scope: string }).scope.split(' ').sort()).toEqual(['system/Coverage.rs', 'system/Patient.read']);
  });

  it('signs every token with the same key across requests (one key in the database)', async () => {
    const first = await (await auth.request('/auth/jwks')).json();
    const second = await (await auth.request('/auth/jwks')).json();
    expect(first.keys).toHaveLength(1);
    expect(second).toEqual(first);
  });

  it('rejects alg none', async () => {
    const assertion = `${b64url({ alg: 'none', kid: keys.kid })}.${b64url(claims())}.`;
    await expectOAuthError(await tokenRequest(auth, assertionFields(assertion)), 401, 'invalid_client');
  });

  it('rejects HS256 signed with the registered public key as the secret', async () => {
    const signingInput = `${b64url({ alg: 'HS256', kid: keys.kid, typ: 'JWT' })}.${b64url(claims())}`;
    const signature = createHmac('sha256', JSON.stringify(keys.publicJwk)).update(signingInput).digest('base64url');
    await expectOAuthError(await tokenRequest(auth, assertionFields(`${signingInput}.${signature}`)), 401, 'invalid_client');
  });

  it('rejects an expired assertion', async () => {
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys, expiresIn: -10 }))), 401, 'invalid_client');
  });

  it('rejects an assertion whose exp is more than 5 minutes ahead', async () => {
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys, expiresIn: 600 }))), 401, 'invalid_client');
  });

  it('rejects an assertion addressed to another audience', async () => {
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys, aud: 'https://other.example/token' }))), 401, 'invalid_client');
  });

  it('rejects an assertion whose kid is not registered', async () => {
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys, kid: 'not-registered' }))), 401, 'invalid_client');
  });

  it('rejects an assertion signed by an unregistered key under the registered kid', async () => {
    const impostor = await clientKeys('ES384', keys.kid);
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys: impostor }))), 401, 'invalid_client');
  });

  it('rejects a jku header that is not the registered jwks_uri', async () => {
    const assertion = await signAssertion({ clientId, keys, header: { jku: 'https://attacker.example/jwks.json' } });
    await expectOAuthError(await tokenRequest(auth, assertionFields(assertion)), 401, 'invalid_client');
  });

  it('rejects a replayed jti', async () => {
    const jti = crypto.randomUUID();
    expect((await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys, jti })))).status).toBe(200);
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys, jti }))), 401, 'invalid_client');
  });

  it('rejects a tampered payload', async () => {
    const [header, , signature] = (await signAssertion({ clientId, keys })).split('.');
    const tampered = `${header}.${b64url(claims({ exp: Math.floor(Date.now() / 1000) + 200 }))}.${signature}`;
    await expectOAuthError(await tokenRequest(auth, assertionFields(tampered)), 401, 'invalid_client');
  });

  it('rejects an unknown client', async () => {
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId: 'no-such-client', keys }))), 401, 'invalid_client');
  });

  it('rejects a client that has been deleted', async () => {
    const gone = await clientKeys('ES384');
    const goneId = await registerClient(auth, gone, 'system/Patient.read');
    const deleted = await auth.request(`/admin/clients/${goneId}`, { method: 'DELETE', headers: { authorization: 'Bearer test-admin-token-0123456789' } });
    expect(deleted.status).toBe(204);
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId: goneId, keys: gone }))), 401, 'invalid_client');
  });

  it.each([
    ['an unknown grant type', { grant_type: 'not_a_grant_type' }, 'unsupported_grant_type'],
    ['no grant type', { grant_type: '' }, 'invalid_request'],
    ['a wrong client_assertion_type', { client_assertion_type: 'urn:example:other' }, 'invalid_request'],
    ['no client_assertion', { client_assertion: '' }, 'invalid_request'],
    ['no scope', { scope: '' }, 'invalid_request'],
  ])('answers 400 for %s', async (_, override, error) => {
    const fields = { ...assertionFields(await signAssertion({ clientId, keys })), ...override };
    await expectOAuthError(await tokenRequest(auth, fields), 400, error);
  });

  it.each([
    ['not a JWT', () => 'not.a-jwt'],
    ['a header without kid', () => `${b64url({ alg: 'ES384' })}.${b64url(claims())}.sig`],
    ['a numeric iss', () => `${b64url({ alg: 'ES384', kid: keys.kid })}.${b64url(claims({ iss: 42 }))}.sig`],
    ['no iss', () => `${b64url({ alg: 'ES384', kid: keys.kid })}.${b64url(claims({ iss: undefined }))}.sig`],
    ['a JSON array as payload', () => `${b64url({ alg: 'ES384', kid: keys.kid })}.${b64url([1])}.sig`],
  ])('answers 401 invalid_client for an assertion with %s', async (_, assertion) => {
    await expectOAuthError(await tokenRequest(auth, assertionFields(assertion())), 401, 'invalid_client');
  });

  it('answers invalid_scope when no requested scope is registered', async () => {
    await expectOAuthError(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys }), 'system/Claim.read')), 400, 'invalid_scope');
  });

  it('answers invalid_request for a JSON body', async () => {
    const response = await auth.request('/auth/token', { method: 'POST', json: assertionFields(await signAssertion({ clientId, keys })) });
    await expectOAuthError(response, 400, 'invalid_request');
  });

  it('answers invalid_request when a parameter is repeated', async () => {
    const body = `${new URLSearchParams(assertionFields(await signAssertion({ clientId, keys }))).toString()}&scope=system%2FCoverage.rs`;
    const response = await auth.request('/auth/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    await expectOAuthError(response, 400, 'invalid_request');
  });
});
