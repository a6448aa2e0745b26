import { execFileSync } from 'node:child_process';
import { type KeyObject, X509Certificate, createPrivateKey, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { findActiveClient } from '../../src/auth/clients.ts';
import { createGrant } from '../../src/auth/grants.ts';
import { ConfigError, type UdapConfig, loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { BASE_URL, type TestBaton, startBaton } from '../support/baton.ts';
import { ASSERTION_TYPE, startAuthBaton } from './harness.ts';

/**
 * Issue 3, UDAP (HL7 UDAP Security IG 2.0): discovery with signed metadata, dynamic client
 * registration from a software statement whose x5c chain leads to a configured trust anchor,
 * and UDAP JWT-based client authentication at /auth/token. The PKI is made with openssl.
 */

const REGISTRATION_URL = 'http://baton.test/auth/udap/register';
const TOKEN_URL = 'http://baton.test/auth/token';
const CLIENT_URI = 'https://partner.example/udap-app';
const B2B = { 'hl7-b2b': { version: '1', organization_id: 'https://partner.example/org', organization_name: 'Partner Payer', purpose_of_use: ['urn:oid:2.16.840.1.113883.5.8#TREAT'] } };

/** A certificate holder: the key it signs with and its x5c (leaf first). */
interface Signer {
  key: KeyObject;
  x5c: string[];
  alg: string;
}

/** Certificates and keys made with openssl in a temporary folder. */
class Pki {
  readonly dir = mkdtempSync(join(tmpdir(), 'baton-udap-'));

  constructor() {
    writeFileSync(
      this.path('openssl.cnf'),
      [
        '[req]',
        'distinguished_name = dn',
        '[dn]',
        '[ca_ext]',
        'basicConstraints = critical, CA:TRUE',
        'keyUsage = critical, keyCertSign, cRLSign',
        'subjectKeyIdentifier = hash',
        '[ca_db]',
        `database = ${this.path('index.txt')}`,
        `new_certs_dir = ${this.dir}`,
        `serial = ${this.path('serial')}`,
        'default_md = sha256',
        'policy = any',
        '[any]',
        'commonName = supplied',
      ].join('\n'),
    );
    writeFileSync(this.path('index.txt'), '');
    writeFileSync(this.path('serial'), '1000\n');
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  key(name: string, type: 'rsa' | 'ec' = 'rsa'): void {
    const options = type === 'rsa' ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    this.openssl('genpkey', ...options, '-out', this.path(`${name}.key`));
  }

  root(name: string): void {
    this.key(name);
    this.openssl('req', '-x509', '-new', '-key', this.path(`${name}.key`), '-subj', `/CN=${name}`, '-days', '30', '-config', this.path('openssl.cnf'), '-extensions', 'ca_ext', '-out', this.path(`${name}.pem`));
  }

  /** A certificate for `name` signed by `issuer`; the extensions are openssl extfile lines. */
  issue(name: string, issuer: string, extensions: string[], options: { keyType?: 'rsa' | 'ec'; dates?: [string, string] } = {}): void {
    this.key(name, options.keyType);
    writeFileSync(this.path(`${name}.ext`), ['[ext]', ...extensions].join('\n'));
    this.openssl('req', '-new', '-key', this.path(`${name}.key`), '-subj', `/CN=${name}`, '-config', this.path('openssl.cnf'), '-out', this.path(`${name}.csr`));
    if (options.dates) {
      // `openssl ca` is the tool that sets arbitrary validity dates (an expired certificate).
      this.openssl('ca', '-batch', '-config', this.path('openssl.cnf'), '-name', 'ca_db', '-cert', this.path(`${issuer}.pem`), '-keyfile', this.path(`${issuer}.key`),
        '-in', this.path(`${name}.csr`), '-out', this.path(`${name}.pem`), '-startdate', options.dates[0], '-enddate', options.dates[1], '-extfile', this.path(`${name}.ext`), '-extensions', 'ext', '-notext');
    } else {
      this.openssl('x509', '-req', '-in', this.path(`${name}.csr`), '-CA', this.path(`${issuer}.pem`), '-CAkey', this.path(`${issuer}.key`),
        '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '30', '-sha256', '-extfile', this.path(`${name}.ext`), '-extensions', 'ext', '-out', this.path(`${name}.pem`));
    }
  }

  pem(name: string): string {
    return readFileSync(this.path(`${name}.pem`), 'utf8');
  }

  x5c(name: string): string {
    return new X509Certificate(this.pem(name)).raw.toString('base64');
  }

  signer(chain: string[], alg = 'RS256'): Signer {
    return { key: createPrivateKey(readFileSync(this.path(`${chain[0]}.key`))), x5c: chain.map((name) => this.x5c(name)), alg };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { stdio: 'pipe' });
  }
}

const leafExtensions = (uri: string, keyUsage = 'critical, digitalSignature') => [`subjectAltName = URI:${uri}`, `keyUsage = ${keyUsage}`, 'basicConstraints = CA:FALSE'];
const intermediateExtensions = ['basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign'];

let pki: Pki;
let udap: UdapConfig;
let baton: TestBaton;
let app: ReturnType<typeof createApp>;
/** The partner application: leaf under an intermediate under the community root. */
let partner: Signer;

beforeAll(async () => {
  pki = new Pki();
  pki.root('community-root');
  pki.issue('community-intermediate', 'community-root', intermediateExtensions);
  pki.issue('partner', 'community-intermediate', leafExtensions(CLIENT_URI));
  pki.issue('partner-renewed', 'community-intermediate', leafExtensions(CLIENT_URI), { keyType: 'ec' });
  pki.issue('other-app', 'community-intermediate', leafExtensions('https://other.example/app'));
  pki.issue('no-signing', 'community-intermediate', leafExtensions(CLIENT_URI, 'critical, keyEncipherment'));
  pki.issue('expired', 'community-intermediate', leafExtensions(CLIENT_URI), { dates: ['20200101000000Z', '20200201000000Z'] });
  pki.issue('not-a-ca', 'community-intermediate', ['basicConstraints = CA:FALSE', 'keyUsage = critical, digitalSignature']);
  pki.issue('under-not-a-ca', 'not-a-ca', leafExtensions(CLIENT_URI));
  pki.root('rogue-root');
  pki.issue('rogue', 'rogue-root', leafExtensions(CLIENT_URI));
  pki.issue('baton', 'community-root', leafExtensions(BASE_URL));
  writeFileSync(pki.path('baton-chain.pem'), pki.pem('baton') + pki.pem('community-root'));
  udap = loadConfig(udapEnvironment()).udap as UdapConfig;
  partner = pki.signer(['partner', 'community-intermediate']);

  baton = await startBaton();
  app = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 1024 * 1024, udap }, db: baton.db, logger: createLogger('silent'), validator: baton.validator });
}, 60_000);
afterAll(async () => {
  await baton?.close();
  pki?.remove();
});

function udapEnvironment(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { BATON_BASE_URL: BASE_URL, BATON_UDAP_CERT: pki.path('baton-chain.pem'), BATON_UDAP_KEY: pki.path('baton.key'), BATON_UDAP_TRUST_ANCHORS: pki.path('community-root.pem'), ...overrides };
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** UDAP IG §3.1 claims for a client_credentials client; `undefined` in overrides removes a claim. */
function statementClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    iss: CLIENT_URI,
    sub: CLIENT_URI,
    aud: REGISTRATION_URL,
    iat: now,
    exp: now + 240,
    jti: randomUUID(),
    client_name: 'Partner Payer B2B',
    contacts: ['mailto:operations@partner.example'],
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'private_key_jwt',
    scope: 'system/Patient.rs system/Coverage.rs',
    ...overrides,
  };
  return Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
}

async function signed(signer: Signer, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: signer.alg, x5c: signer.x5c, ...header }).sign(signer.key);
}

function register(body: unknown): Promise<Response> {
  return Promise.resolve(app.request('/auth/udap/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) }));
}

async function registerStatement(statement: string): Promise<Response> {
  return register({ software_statement: statement, udap: '1' });
}

async function expectRegistrationError(response: Response, error: string): Promise<string> {
  expect(response.status).toBe(400);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await response.json()) as { error: string; error_description: string };
  expect(body.error).toBe(error);
  expect(body.error_description).toEqual(expect.any(String));
  return body.error_description;
}

/** UDAP IG §5.2.1 authentication token claims. */
function assertionClaims(clientId: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { iss: clientId, sub: clientId, aud: TOKEN_URL, iat: now, exp: now + 240, jti: randomUUID(), extensions: B2B, ...overrides };
  return Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
}

function tokenRequest(assertion: string, fields: Record<string, string> = { scope: 'system/Patient.rs' }): Promise<Response> {
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion, udap: '1', ...fields });
  return Promise.resolve(app.request('/auth/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() }));
}

async function expectTokenError(response: Response, status: number, error: string): Promise<void> {
  expect(response.status).toBe(status);
  expect(((await response.json()) as { error: string }).error).toBe(error);
}

/** A fresh registration of its own SAN, so tests that cancel or replace do not disturb the others. */
async function registeredClient(name: string, uri: string): Promise<{ clientId: string; signer: Signer }> {
  pki.issue(name, 'community-intermediate', leafExtensions(uri));
  const signer = pki.signer([name, 'community-intermediate']);
  const response = await registerStatement(await signed(signer, statementClaims({ iss: uri, sub: uri })));
  expect(response.status).toBe(201);
  return { clientId: ((await response.json()) as { client_id: string }).client_id, signer };
}

describe('configuration', () => {
  it('reads the certificate chain, key, anchors and the default UDAP scopes', () => {
    expect(udap.certificates).toHaveLength(2);
    expect(udap.trustAnchors).toHaveLength(1);
    expect(udap.scopes).toEqual(['system/*.rs', 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match']);
    expect(loadConfig({}).udap).toBeUndefined();
  });

  it.each([
    ['only some variables set', { BATON_UDAP_TRUST_ANCHORS: undefined }, /set together/],
    ['an unreadable file', { BATON_UDAP_CERT: '/nonexistent/udap.pem' }, /BATON_UDAP_CERT/],
    ['a key of another certificate', { BATON_UDAP_KEY: () => pki.path('partner.key') }, /not the private key/],
    ['a certificate without the base URL as subjectAltName', { BATON_BASE_URL: 'https://elsewhere.example/fhir' }, /subjectAltName/],
    ['an EC key (signed metadata is RS256)', { BATON_UDAP_CERT: () => pki.path('partner-renewed.pem'), BATON_UDAP_KEY: () => pki.path('partner-renewed.key') }, /RSA/],
    ['anchors that are not certificates', { BATON_UDAP_TRUST_ANCHORS: () => pki.path('baton.key') }, /PEM certificates/],
    ['a malformed scope list', { BATON_UDAP_SCOPE: 'patient/*.read' }, /BATON_UDAP_SCOPE/],
  ])('refuses to start with %s', (_, overrides, message) => {
    const env = Object.fromEntries(Object.entries(overrides).map(([k, v]) => [k, typeof v === 'function' ? v() : v]));
    expect(() => loadConfig(udapEnvironment(env))).toThrow(ConfigError);
    expect(() => loadConfig(udapEnvironment(env))).toThrow(message);
  });
});

describe('UDAP off (not configured)', () => {
  it('answers 404 for the metadata, without asking for a token, and has no registration endpoint', async () => {
    const plain = await startAuthBaton();
    try {
      const metadata = await plain.request('/fhir/.well-known/udap');
      expect(metadata.status).toBe(404);
      expect(metadata.headers.get('www-authenticate')).toBeNull();
      const registration = await plain.request('/auth/udap/register', { method: 'POST', json: { udap: '1', software_statement: 'x' } });
      expect(registration.status).toBe(404);
    } finally {
      await plain.close();
    }
  });
});

describe('GET /fhir/.well-known/udap', () => {
  it('publishes the UDAP metadata without a token', async () => {
    const response = await app.request('/fhir/.well-known/udap');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    const metadata = (await response.json()) as Record<string, unknown>;
    expect(metadata).toMatchObject({
      udap_versions_supported: ['1'],
      udap_authorization_extensions_supported: ['hl7-b2b'],
      udap_authorization_extensions_required: ['hl7-b2b'],
      udap_certifications_supported: [],
      grant_types_supported: ['client_credentials'],
      token_endpoint: TOKEN_URL,
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      registration_endpoint: REGISTRATION_URL,
    });
    expect(metadata.udap_profiles_supported).toEqual(expect.arrayContaining(['udap_dcr', 'udap_authn', 'udap_authz']));
    expect(metadata.token_endpoint_auth_signing_alg_values_supported).toContain('RS256');
    expect(metadata.registration_endpoint_jwt_signing_alg_values_supported).toContain('RS256');
    expect(metadata.scopes_supported).toEqual(udap.scopes);
    expect(metadata).not.toHaveProperty('authorization_endpoint');
  });

  it('signs the metadata with RS256 and the server certificate, whose subjectAltName is the base URL and which chains to the community root', async () => {
    const metadata = (await (await app.request('/fhir/.well-known/udap?community=urn:example:unknown')).json()) as Record<string, string>;
    const header = decodeProtectedHeader(metadata.signed_metadata);
    expect(header.alg).toBe('RS256');
    expect(header.x5c).toEqual([pki.x5c('baton'), pki.x5c('community-root')]);
    const leaf = new X509Certificate(Buffer.from((header.x5c as string[])[0], 'base64'));
    const { payload } = await jwtVerify(metadata.signed_metadata, leaf.publicKey, { algorithms: ['RS256'] });
    expect(payload).toMatchObject({ iss: BASE_URL, sub: BASE_URL, token_endpoint: metadata.token_endpoint, registration_endpoint: metadata.registration_endpoint });
    expect(typeof payload.jti).toBe('string');
    expect((payload.exp as number) - (payload.iat as number)).toBeGreaterThan(0);
    expect((payload.exp as number) - (payload.iat as number)).toBeLessThanOrEqual(365 * 24 * 3600);
    expect(leaf.subjectAltName).toContain(`URI:${BASE_URL}`);
    expect(leaf.verify(new X509Certificate(pki.pem('community-root')).publicKey)).toBe(true);
  });
});

describe('POST /auth/udap/register and UDAP client authentication', () => {
  let clientId: string;
  let statement: string;

  it('registers a client from a software statement whose chain leads to the trust anchor (201)', async () => {
    statement = await signed(partner, statementClaims({ scope: 'system/Patient.rs system/Coverage.rs system/Claim.cruds' }));
    const response = await registerStatement(statement);
    expect(response.status).toBe(201);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      software_statement: statement,
      client_name: 'Partner Payer B2B',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'private_key_jwt',
      // Narrowed to what UDAP clients may hold (system/*.rs): Claim.cruds is beyond it.
      scope: 'system/Patient.rs system/Coverage.rs',
    });
    expect(body).not.toHaveProperty('iss');
    clientId = body.client_id as string;
    const client = await findActiveClient(baton.db, clientId);
    expect(client).toMatchObject({ kind: 'partner', organization: { identifier: [{ system: 'urn:ietf:rfc:3986', value: CLIENT_URI }] }, scope: 'system/Patient.rs system/Coverage.rs' });
  });

  it('issues a token for an x5c-bearing assertion with the hl7-b2b extension, and the token reads granted member data', async () => {
    for (const id of ['udap-member', 'udap-other']) {
      expect((await baton.request(`/fhir/Patient/${id}`, { method: 'PUT', json: { resourceType: 'Patient', id, name: [{ family: 'Udap' }] } })).status).toBe(201);
    }
    await createGrant(baton.db, { clientId, patientId: 'udap-member' });

    const response = await tokenRequest(await signed(partner, assertionClaims(clientId)));
    expect(response.status).toBe(200);
    const token = (await response.json()) as { access_token: string; scope: string };
    expect(token.scope).toBe('system/Patient.rs');

    const read = await app.request('/fhir/Patient/udap-member', { headers: { authorization: `Bearer ${token.access_token}` } });
    expect(read.status).toBe(200);
    expect(((await read.json()) as { id: string }).id).toBe('udap-member');
    // Per-partner isolation applies: a member without a grant stays invisible.
    const hidden = await app.request('/fhir/Patient/udap-other', { headers: { authorization: `Bearer ${token.access_token}` } });
    expect(hidden.status).toBe(404);
  });

  it('grants the registered scopes to a UDAP token request without scope (UDAP IG §7.5)', async () => {
    const response = await tokenRequest(await signed(partner, assertionClaims(clientId)), {});
    expect(response.status).toBe(200);
    expect(((await response.json()) as { scope: string }).scope).toBe('system/Patient.rs system/Coverage.rs');
  });

  it('accepts a renewed certificate (another key, ES256) of the same application in the same community', async () => {
    const renewed = pki.signer(['partner-renewed', 'community-intermediate'], 'ES256');
    expect((await tokenRequest(await signed(renewed, assertionClaims(clientId)))).status).toBe(200);
  });

  it.each<[string, () => Promise<string>, number, string]>([
    ['no hl7-b2b extension', () => signed(partner, assertionClaims(clientId, { extensions: undefined })), 400, 'invalid_grant'],
    ['an hl7-b2b extension without purpose_of_use', () => signed(partner, assertionClaims(clientId, { extensions: { 'hl7-b2b': { version: '1', organization_id: 'https://partner.example/org' } } })), 400, 'invalid_grant'],
    ['no x5c header', () => new SignJWT(assertionClaims(clientId)).setProtectedHeader({ alg: 'RS256' }).sign(partner.key), 401, 'invalid_client'],
    ['a certificate of another application', () => signed(pki.signer(['other-app', 'community-intermediate']), assertionClaims(clientId)), 401, 'invalid_client'],
    ['a certificate from an untrusted CA', () => signed(pki.signer(['rogue', 'rogue-root']), assertionClaims(clientId)), 401, 'invalid_client'],
    ['an expired certificate', () => signed(pki.signer(['expired', 'community-intermediate']), assertionClaims(clientId)), 401, 'invalid_client'],
    ['the wrong audience', () => signed(partner, assertionClaims(clientId, { aud: REGISTRATION_URL })), 401, 'invalid_client'],
    ['a lifetime over 5 minutes', () => signed(partner, assertionClaims(clientId, { iat: Math.floor(Date.now() / 1000) - 200, exp: Math.floor(Date.now() / 1000) + 200 })), 401, 'invalid_client'],
    ['alg none', async () => `${b64url({ alg: 'none', x5c: partner.x5c })}.${b64url(assertionClaims(clientId))}.`, 401, 'invalid_client'],
    ['a key that is not the certificate key', async () => signed({ ...partner, key: createPrivateKey(readFileSync(pki.path('rogue.key'))) }, assertionClaims(clientId)), 401, 'invalid_client'],
  ])('refuses a UDAP assertion with %s', async (_, assertion, status, error) => {
    await expectTokenError(await tokenRequest(await assertion()), status, error);
  });

  it('refuses a replayed assertion', async () => {
    const assertion = await signed(partner, assertionClaims(clientId));
    expect((await tokenRequest(assertion)).status).toBe(200);
    await expectTokenError(await tokenRequest(assertion), 401, 'invalid_client');
  });

  it('refuses a replayed software statement', async () => {
    await expectRegistrationError(await registerStatement(statement), 'invalid_software_statement');
  });

  it('updates the same client when the application registers again in the same community (200, same client_id)', async () => {
    const response = await registerStatement(await signed(partner, statementClaims({ client_name: 'Partner Payer B2B v2', scope: 'system/Patient.rs' })));
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ client_id: clientId, client_name: 'Partner Payer B2B v2', scope: 'system/Patient.rs' });
    expect(await findActiveClient(baton.db, clientId)).toMatchObject({ name: 'Partner Payer B2B v2', scope: 'system/Patient.rs' });
  });
});

describe('cancelling a registration', () => {
  it('cancels on an empty grant_types: the response confirms, the client can no longer get tokens', async () => {
    const { clientId, signer } = await registeredClient('cancelled-app', 'https://partner.example/cancelled');
    const response = await registerStatement(await signed(signer, statementClaims({ iss: 'https://partner.example/cancelled', sub: 'https://partner.example/cancelled', grant_types: [] })));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ client_id: clientId, grant_types: [] });
    expect(await findActiveClient(baton.db, clientId)).toBeUndefined();
    await expectTokenError(await tokenRequest(await signed(signer, assertionClaims(clientId))), 401, 'invalid_client');
  });

  it('answers invalid_client_metadata when there is nothing to cancel', async () => {
    const signer = pki.signer(['other-app', 'community-intermediate']);
    const claims = statementClaims({ iss: 'https://other.example/app', sub: 'https://other.example/app', grant_types: [] });
    await expectRegistrationError(await registerStatement(await signed(signer, claims)), 'invalid_client_metadata');
  });
});

describe('refused registrations (400, never 500)', () => {
  const now = () => Math.floor(Date.now() / 1000);
  it.each<[string, () => Promise<unknown>, string]>([
    ['a chain to an untrusted CA', async () => ({ udap: '1', software_statement: await signed(pki.signer(['rogue', 'rogue-root']), statementClaims()) }), 'unapproved_software_statement'],
    ['an expired certificate', async () => ({ udap: '1', software_statement: await signed(pki.signer(['expired', 'community-intermediate']), statementClaims()) }), 'unapproved_software_statement'],
    ['a certificate without digitalSignature key usage', async () => ({ udap: '1', software_statement: await signed(pki.signer(['no-signing', 'community-intermediate']), statementClaims()) }), 'unapproved_software_statement'],
    ['an x5c without the intermediate', async () => ({ udap: '1', software_statement: await signed(pki.signer(['partner']), statementClaims()) }), 'unapproved_software_statement'],
    ['an intermediate that is not a CA', async () => ({ udap: '1', software_statement: await signed(pki.signer(['under-not-a-ca', 'not-a-ca', 'community-intermediate']), statementClaims()) }), 'unapproved_software_statement'],
    ['iss that is not the certificate subjectAltName', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ iss: 'https://impostor.example/app', sub: 'https://impostor.example/app' })) }), 'invalid_software_statement'],
    ['sub different from iss', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ sub: 'https://partner.example/other' })) }), 'invalid_software_statement'],
    ['the wrong audience', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ aud: TOKEN_URL })) }), 'invalid_software_statement'],
    ['an expired statement', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ iat: now() - 400, exp: now() - 100 })) }), 'invalid_software_statement'],
    ['exp more than 5 minutes after iat', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ exp: now() + 600 })) }), 'invalid_software_statement'],
    ['no jti', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ jti: undefined })) }), 'invalid_software_statement'],
    ['alg none', async () => ({ udap: '1', software_statement: `${b64url({ alg: 'none', x5c: partner.x5c })}.${b64url(statementClaims())}.` }), 'invalid_software_statement'],
    ['HS256', async () => ({ udap: '1', software_statement: await new SignJWT(statementClaims()).setProtectedHeader({ alg: 'HS256', x5c: partner.x5c }).sign(randomBytes(32)) }), 'invalid_software_statement'],
    ['no x5c header', async () => ({ udap: '1', software_statement: await new SignJWT(statementClaims()).setProtectedHeader({ alg: 'RS256' }).sign(partner.key) }), 'invalid_software_statement'],
    ['an x5c that is not a certificate', async () => ({ udap: '1', software_statement: await signed({ ...partner, x5c: ['bm90IGEgY2VydGlmaWNhdGU='] }, statementClaims()) }), 'invalid_software_statement'],
    ['an x5c that is not an array', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims(), { x5c: partner.x5c[0] }) }), 'invalid_software_statement'],
    ['a signature by a key other than the certificate key', async () => ({ udap: '1', software_statement: await signed({ ...partner, key: createPrivateKey(readFileSync(pki.path('rogue.key'))) }, statementClaims()) }), 'invalid_software_statement'],
    ['a tampered payload', async () => {
      const [header, , signature] = (await signed(partner, statementClaims())).split('.');
      return { udap: '1', software_statement: `${header}.${b64url(statementClaims({ scope: 'system/*.cruds' }))}.${signature}` };
    }, 'invalid_software_statement'],
    ['a software statement that is not a JWT', async () => ({ udap: '1', software_statement: 'not-a-jwt' }), 'invalid_software_statement'],
    ['no software statement', async () => ({ udap: '1' }), 'invalid_software_statement'],
    ['no udap parameter', async () => ({ software_statement: await signed(partner, statementClaims()) }), 'invalid_client_metadata'],
    ['a body that is not JSON', async () => 'software_statement=x', 'invalid_client_metadata'],
    ['a JSON array body', async () => '[]', 'invalid_client_metadata'],
    ['certifications that are not JWT strings', async () => ({ udap: '1', certifications: [{}], software_statement: await signed(partner, statementClaims()) }), 'invalid_client_metadata'],
    ['the authorization_code grant type', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ grant_types: ['authorization_code'], redirect_uris: ['https://partner.example/cb'], response_types: ['code'] })) }), 'invalid_client_metadata'],
    ['an unknown grant type', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ grant_types: ['client_credentials', 'password'] })) }), 'invalid_client_metadata'],
    ['no grant_types', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ grant_types: undefined })) }), 'invalid_client_metadata'],
    ['redirect_uris on a client_credentials client', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ redirect_uris: ['https://partner.example/cb'] })) }), 'invalid_client_metadata'],
    ['another token_endpoint_auth_method', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ token_endpoint_auth_method: 'client_secret_basic' })) }), 'invalid_client_metadata'],
    ['no client_name', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ client_name: undefined })) }), 'invalid_client_metadata'],
    ['contacts without a mailto address', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ contacts: ['https://partner.example/support'] })) }), 'invalid_client_metadata'],
    ['only scopes this server does not grant', async () => ({ udap: '1', software_statement: await signed(partner, statementClaims({ scope: 'system/Claim.cruds' })) }), 'invalid_client_metadata'],
  ])('refuses %s', async (_, body, error) => {
    await expectRegistrationError(await register(await body()), error);
  });
});
