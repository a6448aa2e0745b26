import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type JWK, SignJWT, errors, jwtVerify } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RemoteJwksCache, responseFreshness } from '../../src/auth/remote-jwks.ts';
import { type ClientKeys, clientKeys } from './harness.ts';

/** A client's JWKS host: serves `jwks` with `headers`, counting the requests. */
interface JwksHost {
  url: string;
  fetches: number;
  jwks: { keys: JWK[] } | string;
  status: number;
  headers: Record<string, string>;
  /** Answer nothing, for the timeout. */
  hang: boolean;
}

let server: Server;
const host: JwksHost = { url: '', fetches: 0, jwks: { keys: [] }, status: 200, headers: {}, hang: false };
let first: ClientKeys;
let second: ClientKeys;

beforeAll(async () => {
  first = await clientKeys('ES384', 'first');
  second = await clientKeys('ES384', 'second');
  server = createServer((request, response) => {
    host.fetches += 1;
    if (host.hang) return;
    response.writeHead(host.status, { 'content-type': 'application/json', ...host.headers });
    response.end(typeof host.jwks === 'string' ? host.jwks : JSON.stringify(host.jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => Object.assign(host, { fetches: 0, jwks: { keys: [first.publicJwk] }, status: 200, headers: {}, hang: false }));

/** A cache on a clock the test moves. */
function cacheAt(options: ConstructorParameters<typeof RemoteJwksCache>[0] = {}): { cache: RemoteJwksCache; advance(seconds: number): void } {
  let now = 1_000_000_000_000;
  return { cache: new RemoteJwksCache({ ...options, now: () => now }), advance: (seconds) => (now += seconds * 1000) };
}

async function verifyWith(cache: RemoteJwksCache, keys: ClientKeys): Promise<void> {
  const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'ES384', kid: keys.kid }).setIssuer('client').sign(keys.privateKey);
  await jwtVerify(jwt, cache.keySet(host.url));
}

describe('RemoteJwksCache', () => {
  it.each([
    ['max-age=600', { 'cache-control': 'public, max-age=600' }, 600],
    ['max-age=600 less an Age of 500', { 'cache-control': 'max-age=600', age: '500' }, 100],
    ['no-store, for the 30 s cooldown', { 'cache-control': 'no-store' }, 30],
    ['no-cache, for the 30 s cooldown', { 'cache-control': 'no-cache' }, 30],
    ['max-age=5, for the 30 s cooldown', { 'cache-control': 'max-age=5' }, 30],
    ['an unreadable max-age, for the 30 s cooldown', { 'cache-control': 'max-age=soon' }, 30],
    ['a year-long max-age, for 24 hours at most', { 'cache-control': 'max-age=31536000' }, 24 * 3600],
    ['no Cache-Control, for the default 5 minutes', {}, 300],
  ])('keeps a set answered with %s, then fetches it again', async (_, headers, seconds) => {
    host.headers = headers;
    const { cache, advance } = cacheAt();
    await verifyWith(cache, first);
    advance(seconds - 1);
    await verifyWith(cache, first);
    expect(host.fetches).toBe(1);
    advance(2);
    await verifyWith(cache, first);
    expect(host.fetches).toBe(2);
  });

  it('refetches a fresh set once per cooldown when an assertion names an unknown kid', async () => {
    host.headers = { 'cache-control': 'max-age=3600' };
    const { cache, advance } = cacheAt();
    await verifyWith(cache, first);
    advance(31);
    host.jwks = { keys: [first.publicJwk, second.publicJwk] };
    await verifyWith(cache, second);
    expect(host.fetches).toBe(2);

    const unknown = await clientKeys('ES384', 'unknown');
    await expect(verifyWith(cache, unknown)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    await expect(verifyWith(cache, unknown)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    expect(host.fetches).toBe(2);
    advance(31);
    await expect(verifyWith(cache, unknown)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    expect(host.fetches).toBe(3);
  });

  it('fetches once for concurrent verifications', async () => {
    const { cache } = cacheAt();
    await Promise.all([verifyWith(cache, first), verifyWith(cache, first), verifyWith(cache, first)]);
    expect(host.fetches).toBe(1);
  });

  it('answers a failed fetch again, without fetching, until the cooldown has passed', async () => {
    host.status = 503;
    const { cache, advance } = cacheAt();
    await expect(verifyWith(cache, first)).rejects.toThrow('the JWKS answered HTTP 503');
    host.status = 200;
    await expect(verifyWith(cache, first)).rejects.toThrow('the JWKS answered HTTP 503');
    expect(host.fetches).toBe(1);
    advance(31);
    await verifyWith(cache, first);
    expect(host.fetches).toBe(2);
  });

  it('does not serve a stale set when its refetch fails', async () => {
    host.headers = { 'cache-control': 'max-age=60' };
    const { cache, advance } = cacheAt();
    await verifyWith(cache, first);
    advance(61);
    host.status = 500;
    await expect(verifyWith(cache, first)).rejects.toMatchObject({ code: 'ERR_JOSE_GENERIC' });
  });

  it.each([
    ['not JSON', 'keys?', 'the JWKS is not JSON'],
    ['not a JWK Set', '{"keys": "none"}', 'the JWKS is not a JWK Set'],
    ['too large', JSON.stringify({ keys: [{ kty: 'EC', pad: 'x'.repeat(300 * 1024) }] }), 'the JWKS is larger than 262144 bytes'],
  ])('rejects a body that is %s', async (_, body, message) => {
    host.jwks = body;
    await expect(verifyWith(cacheAt().cache, first)).rejects.toThrow(message);
  });

  it('does not follow redirects', async () => {
    host.status = 302;
    host.headers = { location: 'http://example.org/jwks.json' };
    await expect(verifyWith(cacheAt().cache, first)).rejects.toMatchObject({ code: 'ERR_JOSE_GENERIC' });
  });

  it('gives up on a host that does not answer within the timeout', async () => {
    host.hang = true;
    await expect(verifyWith(cacheAt({ timeoutMs: 200 }).cache, first)).rejects.toBeInstanceOf(errors.JWKSTimeout);
  });
});

describe('responseFreshness', () => {
  it.each([
    [null, null, undefined],
    ['public', null, undefined],
    ['public, max-age=600', null, 600],
    ['Max-Age="120"', null, 120],
    ['max-age=600', '100', 500],
    ['max-age=60', '100', 0],
    ['max-age=-1', null, 0],
    ['max-age=600, no-cache', null, 0],
    ['no-store', null, 0],
  ])('Cache-Control %j with Age %j → %j seconds', (cacheControl, age, seconds) => {
    expect(responseFreshness(cacheControl, age)).toBe(seconds);
  });
});
