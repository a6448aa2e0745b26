import { type CryptoKey, type JWK, SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createApp } from '../../src/app.ts';
import { createLogger } from '../../src/logger.ts';
import { BASE_URL, type TestBaton, startBaton } from '../support/baton.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';
export const TOKEN_URL = 'http://baton.test/auth/token';
export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface AuthBaton {
  baton: TestBaton;
  /** The app under test, on baton's database. */
  app: ReturnType<typeof createApp>;
  request(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

/** startBaton()'s database, served by an app whose admin API is open (BATON_ADMIN_TOKEN set) unless adminApiClosed. */
export async function startAuthBaton(options: { adminApiClosed?: boolean } = {}): Promise<AuthBaton> {
  const adminToken = options.adminApiClosed ? undefined : ADMIN_TOKEN;
  const baton = await startBaton();
  const app = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 1024 * 1024, adminToken }, db: baton.db, logger: createLogger('silent'), validator: baton.validator });
  return {
    baton,
    app,
    request: (path, init = {}) => {
      const { json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (json !== undefined) headers.set('content-type', 'application/json');
      return Promise.resolve(app.request(path, { ...rest, headers, body: json !== undefined ? JSON.stringify(json) : rest.body }));
    },
    close: () => baton.close(),
  };
}

export interface ClientKeys {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function clientKeys(alg: 'ES384' | 'RS384' = 'ES384', kid = `key-${alg}`): Promise<ClientKeys> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg } };
}

/** An organization identifier of the kind payers carry (an NAIC code). */
export const ORGANIZATION = { identifier: [{ system: 'http://www.naic.org', value: '12345' }] };

export async function registerClient(auth: AuthBaton, keys: ClientKeys, scope: string): Promise<string> {
  const response = await auth.request('/admin/clients', {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    json: { name: 'Partner Payer', kind: 'partner', organization: ORGANIZATION, jwks: { keys: [keys.publicJwk] }, scope },
  });
  if (response.status !== 201) throw new Error(`registration failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { client_id: string }).client_id;
}

export interface AssertionOptions {
  clientId: string;
  keys: ClientKeys;
  alg?: string;
  kid?: string;
  aud?: string;
  /** Seconds from now. */
  expiresIn?: number;
  jti?: string;
  header?: Record<string, unknown>;
}

export async function signAssertion(o: AssertionOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: o.alg ?? (o.keys.publicJwk.alg as string), kid: o.kid ?? o.keys.kid, typ: 'JWT', ...o.header })
    .setIssuer(o.clientId)
    .setSubject(o.clientId)
    .setAudience(o.aud ?? TOKEN_URL)
    .setExpirationTime(now + (o.expiresIn ?? 240))
    .setJti(o.jti ?? crypto.randomUUID())
    .sign(o.keys.privateKey);
}

export function tokenRequest(auth: AuthBaton, fields: Record<string, string>): Promise<Response> {
  return auth.request('/auth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
}

export function assertionFields(assertion: string, scope = 'system/Patient.read'): Record<string, string> {
  return { grant_type: 'client_credentials', scope, client_assertion_type: ASSERTION_TYPE, client_assertion: assertion };
}
