import { SignJWT, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { rotateSigningKey } from '../../src/auth/signing-keys.ts';
import { createLogger } from '../../src/logger.ts';
import { BASE_URL, body, startBaton, type TestBaton, tokenMinter } from '../support/baton.ts';
import { ADMIN_TOKEN, assertionFields, clientKeys, registerClient, signAssertion, startAuthBaton, tokenRequest } from './harness.ts';

/**
 * Issue 3, "Enforcement on every request": every /fhir endpoint but the CapabilityStatement
 * needs a valid access token (401 otherwise), and the token's scopes bound what it may do (403).
 */

const ISSUER = new URL(BASE_URL).origin;

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
  const put = (resource: Record<string, unknown>) => baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
  await put({ resourceType: 'Patient', id: 'p1', gender: 'female' });
  await put({ resourceType: 'Observation', id: 'lab', status: 'final', code: { text: 'glucose' }, subject: { reference: 'Patient/p1' }, category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }] });
  await put({ resourceType: 'Observation', id: 'vitals', status: 'final', code: { text: 'pulse' }, subject: { reference: 'Patient/p1' }, category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }] });
});
afterAll(async () => {
  await baton?.close();
});

const as = (token: string | null) => ({ token });

async function expectUnauthorized(response: Response): Promise<void> {
  expect(response.status).toBe(401);
  expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm="baton", error="invalid_token"/);
  const outcome = await body(response);
  expect(outcome.resourceType).toBe('OperationOutcome');
  expect(outcome.issue[0].code).toBe('login');
}

async function expectForbidden(response: Response): Promise<void> {
  expect(response.status).toBe(403);
  const outcome = await body(response);
  expect(outcome.resourceType).toBe('OperationOutcome');
  expect(outcome.issue[0].code).toBe('forbidden');
}

/** A token with the claims Baton issues, signed by `key` with `alg`, with `claims` overriding. */
async function craftToken(key: CryptoKey | Uint8Array, alg: string, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ scope: 'system/*.*', client_id: 'intruder', client_kind: 'internal', iss: ISSUER, aud: BASE_URL, sub: 'intruder', iat: now, exp: now + 120, jti: crypto.randomUUID(), ...claims })
    .setProtectedHeader({ alg, typ: 'at+jwt', ...header })
    .sign(key);
}

describe('authentication on /fhir', () => {
  const endpoints: [string, RequestInit & { json?: unknown }][] = [
    ['/fhir/Patient/p1', {}],
    ['/fhir/Patient/p1/_history/1', {}],
    ['/fhir/Patient/p1/_history', {}],
    ['/fhir/Patient?gender=female', {}],
    ['/fhir/Patient/_history', {}],
    ['/fhir/_history', {}],
    ['/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient' } }],
    ['/fhir/Patient/p1', { method: 'PUT', json: { resourceType: 'Patient', id: 'p1' } }],
    ['/fhir/Patient/p1', { method: 'DELETE' }],
    ['/fhir', { method: 'POST', json: { resourceType: 'Bundle', type: 'batch', entry: [] } }],
    ['/fhir/Patient/$member-match', { method: 'POST', json: { resourceType: 'Parameters' } }],
    ['/fhir/NoSuchThing/1', {}],
  ];

  it.each(endpoints)('answers %s without a token with 401, a Bearer challenge and an OperationOutcome', async (path, init) => {
    await expectUnauthorized(await baton.request(path, { ...init, ...as(null) }));
  });

  it('serves the CapabilityStatement and the SMART configuration without a token', async () => {
    expect((await baton.request('/fhir/metadata', as(null))).status).toBe(200);
    expect((await baton.request('/fhir/.well-known/smart-configuration', as(null))).status).toBe(200);
  });

  it('accepts a token from the token endpoint, end to end', async () => {
    const auth = await startAuthBaton();
    try {
      const keys = await clientKeys();
      const clientId = await registerClient(auth, keys, 'system/Patient.rs');
      const issued = await body(await tokenRequest(auth, assertionFields(await signAssertion({ clientId, keys }), 'system/Patient.rs')));
      const read = await auth.request('/fhir/Patient?_count=1', { headers: { authorization: `Bearer ${issued.access_token}` } });
      expect(read.status).toBe(200);
      // Only what was granted: Observation is outside system/Patient.rs.
      await expectForbidden(await auth.request('/fhir/Observation', { headers: { authorization: `Bearer ${issued.access_token}` } }));
    } finally {
      await auth.close();
    }
  });

  it('rejects malformed Authorization headers', async () => {
    for (const authorization of ['Bearer', 'Basic dXNlcjpwYXNz', 'Bearer not-a-jwt', 'Bearer a.b.c', `Bearer ${'x'.repeat(5000)}`]) {
      await expectUnauthorized(await baton.request('/fhir/Patient/p1', { headers: { authorization } }));
    }
  });

  it('rejects a token signed with alg "none"', async () => {
    const now = Math.floor(Date.now() / 1000);
    const encode = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const unsigned = `${encode({ alg: 'none', typ: 'at+jwt' })}.${encode({ scope: 'system/*.*', client_id: 'x', client_kind: 'internal', iss: ISSUER, aud: BASE_URL, sub: 'x', exp: now + 60 })}.`;
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(unsigned)));
  });

  it("rejects an HS256 token whose secret is Baton's public key", async () => {
    const jwks = await body(await baton.request('/auth/jwks'));
    const publicKey = new TextEncoder().encode(JSON.stringify(jwks.keys[0]));
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await craftToken(publicKey, 'HS256', {}, { kid: jwks.keys[0].kid }))));
  });

  it('rejects a token signed by a key that is not Baton’s, even under Baton’s kid', async () => {
    const jwks = await body(await baton.request('/auth/jwks'));
    const { privateKey } = await generateKeyPair('ES384');
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await craftToken(privateKey, 'ES384', {}, { kid: jwks.keys[0].kid }))));
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await craftToken(privateKey, 'ES384', {}, { kid: 'unknown-kid' }))));
  });

  it('rejects a tampered token (scope widened after signing)', async () => {
    const token = await baton.token({ scopes: ['system/Organization.read'] });
    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const widened = Buffer.from(JSON.stringify({ ...claims, scope: 'system/*.*' })).toString('base64url');
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(`${header}.${widened}.${signature}`)));
  });

  it('rejects expired tokens, tokens for another audience or issuer, and tokens without Baton claims', async () => {
    const keys = await (await import('../../src/auth/signing-keys.ts')).loadSigningKeys(baton.db);
    const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) => craftToken(keys.current.privateKey, 'ES384', claims, { kid: keys.current.kid, ...header });
    const now = Math.floor(Date.now() / 1000);
    expect((await baton.request('/fhir/Patient/p1', as(await sign({})))).status).toBe(200);
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await sign({ exp: now - 5 }))));
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await sign({ aud: 'https://elsewhere.example/fhir' }))));
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await sign({ iss: 'https://elsewhere.example' }))));
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await sign({ client_kind: 'root' }))));
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await sign({ scope: undefined }))));
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(await sign({}, { typ: 'JWT' }))));
  });

  it('rejects a token once it expires, although its signature was checked before', async () => {
    const keys = await (await import('../../src/auth/signing-keys.ts')).loadSigningKeys(baton.db);
    const token = await craftToken(keys.current.privateKey, 'ES384', { exp: Math.floor(Date.now() / 1000) + 1 }, { kid: keys.current.kid });
    expect((await baton.request('/fhir/Patient/p1', as(token))).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(token)));
  });

  it('verifies tokens signed with a key rotated in by another process, and still those signed before', async () => {
    const before = await baton.token();
    expect((await baton.request('/fhir/Patient/p1', as(before))).status).toBe(200);
    const kid = await rotateSigningKey(baton.db);
    const after = await tokenMinter(baton.db, BASE_URL)();
    expect(JSON.parse(Buffer.from(after.split('.')[0], 'base64url').toString()).kid).toBe(kid);
    expect((await baton.request('/fhir/Patient/p1', as(after))).status).toBe(200);
    expect((await baton.request('/fhir/Patient/p1', as(before))).status).toBe(200);
  });

  it('lets operators in with the admin token, with the admin scopes only', async () => {
    const app = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 1024 * 1024, adminToken: ADMIN_TOKEN }, db: baton.db, logger: createLogger('silent'), validator: baton.validator });
    const operator = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
    expect((await app.request('/fhir/Patient/p1', operator)).status).toBe(200);
    expect((await app.request('/fhir/Patient?gender=female', operator)).status).toBe(200);
    const write = await app.request('/fhir/Patient/p1', { method: 'DELETE', ...operator });
    expect(write.status).toBe(403);
    // Without a configured admin token, the same value is just an invalid token.
    await expectUnauthorized(await baton.request('/fhir/Patient/p1', as(ADMIN_TOKEN)));
  });
});

describe('scopes', () => {
  const token = (...scopes: string[]) => baton.token({ clientId: 'scoped-client', scopes });

  it('lets a read scope read and search but not write (SMART v1)', async () => {
    const reader = await token('system/Patient.read');
    expect((await baton.request('/fhir/Patient/p1', as(reader))).status).toBe(200);
    expect((await baton.request('/fhir/Patient?gender=female', as(reader))).status).toBe(200);
    await expectForbidden(await baton.request('/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient' }, ...as(reader) }));
    await expectForbidden(await baton.request('/fhir/Patient/p1', { method: 'PUT', json: { resourceType: 'Patient', id: 'p1' }, ...as(reader) }));
    await expectForbidden(await baton.request('/fhir/Patient/p1', { method: 'PATCH', headers: { 'content-type': 'application/json-patch+json' }, body: '[]', ...as(reader) }));
    await expectForbidden(await baton.request('/fhir/Patient/p1', { method: 'DELETE', ...as(reader) }));
    await expectForbidden(await baton.request('/fhir/Patient?gender=female', { method: 'DELETE', ...as(reader) }));
    await expectForbidden(await baton.request('/fhir/Observation/lab', as(reader)));
    expect((await baton.request('/fhir/Patient/p1', as(reader))).status).toBe(200);
  });

  it('lets a write scope write but not read (SMART v1)', async () => {
    const writer = await token('system/Patient.write');
    const created = await baton.request('/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient' }, ...as(writer) });
    expect(created.status).toBe(201);
    await expectForbidden(await baton.request('/fhir/Patient/p1', as(writer)));
  });

  it('tells the v2 letters apart: r reads (and vreads, instance history), s searches (and type history)', async () => {
    const reader = await token('system/Patient.r');
    expect((await baton.request('/fhir/Patient/p1', as(reader))).status).toBe(200);
    expect((await baton.request('/fhir/Patient/p1/_history/1', as(reader))).status).toBe(200);
    expect((await baton.request('/fhir/Patient/p1/_history', as(reader))).status).toBe(200);
    await expectForbidden(await baton.request('/fhir/Patient?gender=female', as(reader)));
    await expectForbidden(await baton.request('/fhir/Patient/_history', as(reader)));
    const searcher = await token('system/Patient.s');
    expect((await baton.request('/fhir/Patient?gender=female', as(searcher))).status).toBe(200);
    expect((await baton.request('/fhir/Patient/_history', as(searcher))).status).toBe(200);
    await expectForbidden(await baton.request('/fhir/Patient/p1', as(searcher)));
    const creator = await token('system/Patient.c');
    expect((await baton.request('/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient' }, ...as(creator) })).status).toBe(201);
    await expectForbidden(await baton.request('/fhir/Patient/p1', { method: 'PUT', json: { resourceType: 'Patient', id: 'p1' }, ...as(creator) }));
  });

  it('needs a scope over every type for whole-system history', async () => {
    await expectForbidden(await baton.request('/fhir/_history', as(await token('system/Patient.rs'))));
    expect((await baton.request('/fhir/_history', as(await token('system/*.rs')))).status).toBe(200);
  });

  it('narrows reads and searches to what a v2 constraint admits, and hides the rest as 404', async () => {
    const labs = await token('system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory');
    const search = await body(await baton.request('/fhir/Observation?_count=50', as(labs)));
    expect(search.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual(['lab']);
    expect((await baton.request('/fhir/Observation/lab', as(labs))).status).toBe(200);
    expect((await baton.request('/fhir/Observation/vitals', as(labs))).status).toBe(404);
    expect((await baton.request('/fhir/Observation/vitals/_history/1', as(labs))).status).toBe(404);
    const history = await body(await baton.request('/fhir/Observation/_history', as(labs)));
    expect(history.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual(['lab']);
    // A constrained scope never grants a write: whether the new content satisfies it is unknown.
    await expectForbidden(
      await baton.request('/fhir/Observation', { method: 'POST', json: { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, ...as(await token('system/Observation.cruds?category=laboratory')) }),
    );
  });

  it('leaves types outside the scopes out of _include and _revinclude', async () => {
    const observationsOnly = await token('system/Observation.rs');
    const included = await body(await baton.request('/fhir/Observation?_id=lab&_include=Observation:subject', as(observationsOnly)));
    expect(included.entry.map((e: { resource: { resourceType: string } }) => e.resource.resourceType)).toEqual(['Observation']);
    const both = await token('system/Observation.rs', 'system/Patient.rs');
    const withPatient = await body(await baton.request('/fhir/Observation?_id=lab&_include=Observation:subject', as(both)));
    expect(withPatient.entry.map((e: { resource: { resourceType: string } }) => e.resource.resourceType)).toEqual(['Observation', 'Patient']);
    const patientsOnly = await token('system/Patient.rs');
    const revincluded = await body(await baton.request('/fhir/Patient?_id=p1&_revinclude=Observation:subject', as(patientsOnly)));
    expect(revincluded.entry.map((e: { resource: { resourceType: string } }) => e.resource.resourceType)).toEqual(['Patient']);
  });

  it('checks every entry of a transaction and rolls it back when one is not permitted', async () => {
    const patientWriter = await token('system/Patient.cruds');
    const response = await baton.request('/fhir', {
      method: 'POST',
      json: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:7f0b6f5e-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', gender: 'other' }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, request: { method: 'POST', url: 'Observation' } },
        ],
      },
      ...as(patientWriter),
    });
    await expectForbidden(response);
    const others = await body(await baton.request('/fhir/Patient?gender=other'));
    expect(others.entry ?? []).toHaveLength(0);
  });

  it('answers a forbidden batch entry with 403 in that entry and performs the others', async () => {
    const response = await baton.request('/fhir', {
      method: 'POST',
      json: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Patient/p1' } }, { request: { method: 'GET', url: 'Observation/lab' } }] },
      ...as(await token('system/Patient.rs')),
    });
    const batch = await body(response);
    expect(batch.entry.map((e: { response: { status: string } }) => e.response.status.slice(0, 3))).toEqual(['200', '403']);
  });
});

describe('signing keys for tokens', () => {
  it('publishes a rotated key at /auth/jwks next to the older one', async () => {
    const other = await startBaton();
    try {
      await other.request('/fhir/Patient');
      await rotateSigningKey(other.db);
      // The app reloads the key set when it meets a kid it does not know.
      const token = await tokenMinter(other.db, BASE_URL)();
      expect((await other.request('/fhir/Patient', as(token))).status).toBe(200);
      const jwks = await body(await other.request('/auth/jwks'));
      expect(jwks.keys).toHaveLength(2);
    } finally {
      await other.close();
    }
  });
});
