import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type AuthBaton, type ClientKeys, ORGANIZATION, assertionFields, clientKeys, signAssertion, startAuthBaton, tokenRequest } from './harness.ts';

/** The partner's own key host: /{path} serves the JWKS set for it, counting requests. */
let server: Server;
let origin: string;
const served = new Map<string, { keys: unknown[] }>();
const fetches = new Map<string, number>();
let auth: AuthBaton;
let keys: ClientKeys;

beforeAll(async () => {
  auth = await startAuthBaton();
  keys = await clientKeys('ES384');
  server = createServer((request, response) => {
    const path = request.url ?? '';
    fetches.set(path, (fetches.get(path) ?? 0) + 1);
    const jwks = served.get(path);
    response.writeHead(jwks ? 200 : 404, { 'content-type': 'application/json', 'cache-control': 'max-age=600' });
    response.end(JSON.stringify(jwks ?? {}));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await auth.close();
});

/** Registers a partner whose keys live at `${origin}${path}`. */
async function registerByJwksUri(path: string): Promise<string> {
  const response = await auth.request('/admin/clients', {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    json: { name: 'Remote Keys Payer', kind: 'partner', organization: ORGANIZATION, jwks_uri: `${origin}${path}`, scope: 'system/*.rs' },
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { client_id: string }).client_id;
}

describe('a client registered with a jwks_uri', () => {
  it('gets tokens signed with a key from its JWKS, fetched once while the set is fresh', async () => {
    served.set('/a/jwks.json', { keys: [keys.publicJwk] });
    const clientId = await registerByJwksUri('/a/jwks.json');
    for (let i = 0; i < 3; i++) {
      const response = await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys }), 'system/*.rs'));
      expect(response.status).toBe(200);
    }
    expect(fetches.get('/a/jwks.json')).toBe(1);
  });

  it('accepts a jku header naming the registered jwks_uri', async () => {
    served.set('/b/jwks.json', { keys: [keys.publicJwk] });
    const clientId = await registerByJwksUri('/b/jwks.json');
    const assertion = await signAssertion({ clientId, keys, header: { jku: `${origin}/b/jwks.json` } });
    expect((await tokenRequest(auth, assertionFields(assertion, 'system/*.rs'))).status).toBe(200);
  });

  it('is refused with invalid_client when its JWKS cannot be read', async () => {
    const clientId = await registerByJwksUri('/missing/jwks.json');
    const response = await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys }), 'system/*.rs'));
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: 'invalid_client', error_description: 'the registered jwks_uri could not be read' });
  });

  it('is refused with invalid_client when no key of its JWKS has the assertion kid', async () => {
    served.set('/c/jwks.json', { keys: [keys.publicJwk] });
    const clientId = await registerByJwksUri('/c/jwks.json');
    const other = await clientKeys('ES384', 'not-published');
    const response = await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys: other }), 'system/*.rs'));
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: 'invalid_client', error_description: 'no registered key matches the assertion kid' });
  });

  it('cannot be registered with a plain http jwks_uri off the loopback host', async () => {
    const response = await auth.request('/admin/clients', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      json: { name: 'Careless Payer', kind: 'partner', organization: ORGANIZATION, jwks_uri: 'http://partner.example/jwks.json', scope: 'system/*.rs' },
    });
    expect(response.status).toBe(400);
    expect(JSON.stringify(await response.json())).toContain('jwks_uri must be an https URL');
  });
});
