import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, type RequestOptions, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServerType, serve } from '@hono/node-server';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { httpsServing } from '../../src/auth/mtls.ts';
import { ConfigError, type TlsConfig, loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { BASE_URL, type TestBaton, startBaton } from '../support/baton.ts';
import { ADMIN_TOKEN, type AuthBaton, type ClientKeys, assertionFields, clientKeys, registerClient, signAssertion, tokenRequest } from './harness.ts';

/** A throwaway PKI made with the openssl command line: Baton's CA, a server certificate, client certificates. */
class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'baton-mtls-'));

  path(name: string): string {
    return join(this.dir, name);
  }

  pem(name: string): string {
    return readFileSync(this.path(`${name}.pem`), 'utf8');
  }

  identity(name: string): Identity {
    return { cert: this.pem(name), key: readFileSync(this.path(`${name}.key`), 'utf8') };
  }

  ca(name: string): void {
    this.config(name, `CN=${name}`, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash');
    this.openssl('req', '-x509', '-new', ...this.newKey(name), '-days', '1', '-config', `${name}.cnf`, '-out', `${name}.pem`);
  }

  leaf(name: string, ca: string, commonName: string, extensions: string): void {
    this.config(name, `CN=${commonName}`, `basicConstraints=CA:FALSE\n${extensions}`);
    this.openssl('req', '-new', ...this.newKey(name), '-config', `${name}.cnf`, '-out', `${name}.csr`);
    const serial = `0x${createHash('sha256').update(name).digest('hex').slice(0, 16)}`;
    this.openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial', serial, '-days', '1', '-extfile', `${name}.cnf`, '-extensions', 'ext', '-out', `${name}.pem`);
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private newKey(name: string): string[] {
    return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`];
  }

  /** One config per certificate, so the machine's openssl.cnf plays no part. */
  private config(name: string, subject: string, extensions: string): void {
    writeFileSync(this.path(`${name}.cnf`), `[req]\nprompt=no\ndistinguished_name=dn\nx509_extensions=ext\n[dn]\n${subject}\n[ext]\n${extensions}\n`);
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }
}

interface Identity {
  cert: string;
  key: string;
}

/** The thumbprint computed independently of Baton's code: SHA-256 over the certificate's DER, base64url. */
function thumbprintOf(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');
}

const SCOPE = 'system/Organization.rs';

describe('mutual TLS (RFC 8705 certificate-bound tokens)', () => {
  const pki = new TestPki();
  let tls: TlsConfig;
  let baton: TestBaton;
  let server: ServerType;
  let port: number;
  let keys: ClientKeys;
  let clientId: string;
  let organizationId: string;

  /** An HTTPS call to the server under test, with a client certificate or none; connections are not reused unless an agent is given. */
  function call(path: string, init: { method?: string; headers?: Record<string, string>; body?: string; json?: unknown } = {}, identity?: Identity, agent?: Agent): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    let body = init.body;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    }
    const options: RequestOptions = { host: '127.0.0.1', port, path, method: init.method ?? 'GET', headers, ca: pki.pem('baton-ca'), agent: agent ?? false, ...identity };
    return new Promise((resolve, reject) => {
      const req = httpsRequest(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
          resolve(new Response(chunks.length ? Buffer.concat(chunks) : null, { status: res.statusCode, headers: responseHeaders }));
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** The harness's AuthBaton, speaking HTTPS with one client identity. */
  function over(identity: Identity | undefined): AuthBaton {
    return { baton, app: baton.app, request: (path, init = {}) => call(path, init as Parameters<typeof call>[1], identity), close: () => baton.close() };
  }

  async function issue(identity: Identity | undefined): Promise<Response> {
    return tokenRequest(over(identity), assertionFields(await signAssertion({ clientId, keys }), SCOPE));
  }

  async function tokenOver(identity: Identity): Promise<string> {
    const response = await issue(identity);
    expect(response.status).toBe(200);
    return ((await response.json()) as { access_token: string }).access_token;
  }

  const readOrganization = (token: string, identity?: Identity, agent?: Agent) => call(`/fhir/Organization/${organizationId}`, { headers: { authorization: `Bearer ${token}` } }, identity, agent);

  async function expectInvalidToken(response: Response, description: string): Promise<void> {
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm="baton", error="invalid_token"/);
    const body = (await response.json()) as { resourceType: string; issue: { code: string; diagnostics: string }[] };
    expect(body.resourceType).toBe('OperationOutcome');
    expect(body.issue[0]).toMatchObject({ code: 'login', diagnostics: expect.stringContaining(description) });
  }

  async function expectInvalidClient(response: Response): Promise<void> {
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: 'invalid_client', error_description: expect.stringContaining('mutual TLS') });
  }

  beforeAll(async () => {
    pki.ca('baton-ca');
    pki.leaf('server', 'baton-ca', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth');
    pki.leaf('client-a', 'baton-ca', 'partner-payer', 'extendedKeyUsage=clientAuth');
    pki.leaf('client-c', 'baton-ca', 'partner-payer', 'extendedKeyUsage=clientAuth');
    // B looks like A (same subject) but chains to a CA Baton does not trust.
    pki.ca('other-ca');
    pki.leaf('client-b', 'other-ca', 'partner-payer', 'extendedKeyUsage=clientAuth');

    const config = loadConfig({ TLS_CERT: pki.path('server.pem'), TLS_KEY: pki.path('server.key'), TLS_CLIENT_CA: pki.path('baton-ca.pem') });
    tls = config.tls as TlsConfig;
    baton = await startBaton();
    const app = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 1024 * 1024, adminToken: ADMIN_TOKEN, tls }, db: baton.db, logger: createLogger('silent'), validator: baton.validator });
    // Served as src/server.ts serves it.
    await new Promise<void>((resolve) => {
      server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', ...httpsServing(tls) }, () => resolve());
    });
    port = (server.address() as AddressInfo).port;

    keys = await clientKeys();
    clientId = await registerClient(over(pki.identity('client-a')), keys, SCOPE);
    const created = await baton.request('/fhir/Organization', { method: 'POST', json: { resourceType: 'Organization', name: 'Directory Entry' } });
    organizationId = ((await created.json()) as { id: string }).id;
  });

  afterAll(async () => {
    if (server) {
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    }
    await baton?.close();
    pki.close();
  });

  it('keeps discovery reachable without a client certificate or with an untrusted one', async () => {
    for (const identity of [undefined, pki.identity('client-b')]) {
      expect((await call('/fhir/metadata', {}, identity)).status).toBe(200);
      expect((await call('/.well-known/smart-configuration', {}, identity)).status).toBe(200);
      expect((await call('/fhir/.well-known/smart-configuration', {}, identity)).status).toBe(200);
    }
  });

  it('announces certificate-bound access tokens in the SMART configuration (RFC 8705 §3.3)', async () => {
    const configuration = await (await call('/fhir/.well-known/smart-configuration')).json();
    expect(configuration.tls_client_certificate_bound_access_tokens).toBe(true);
  });

  it('binds a token issued over certificate A to A (cnf.x5t#S256) and serves it over A', async () => {
    const token = await tokenOver(pki.identity('client-a'));
    expect(decodeJwt(token).cnf).toEqual({ 'x5t#S256': thumbprintOf(pki.pem('client-a')) });
    const response = await readOrganization(token, pki.identity('client-a'));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ resourceType: 'Organization', id: organizationId });
  });

  it('serves every request of a kept-alive connection over the bound certificate', async () => {
    const token = await tokenOver(pki.identity('client-a'));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets = new Set<unknown>();
      agent.on('free', (socket) => sockets.add(socket));
      for (let i = 0; i < 3; i++) expect((await readOrganization(token, pki.identity('client-a'), agent)).status).toBe(200);
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('refuses a token bound to A over another certificate of the trusted CA', async () => {
    const token = await tokenOver(pki.identity('client-a'));
    await expectInvalidToken(await readOrganization(token, pki.identity('client-c')), 'the access token is bound to another certificate');
  });

  it('refuses a token bound to A over a certificate from an untrusted CA, even one with the same subject', async () => {
    const token = await tokenOver(pki.identity('client-a'));
    await expectInvalidToken(await readOrganization(token, pki.identity('client-b')), 'requires mutual TLS');
  });

  it('refuses a token bound to A over a connection without a client certificate', async () => {
    const token = await tokenOver(pki.identity('client-a'));
    await expectInvalidToken(await readOrganization(token), 'requires mutual TLS');
  });

  it('refuses a bound token where no certificate can be presented (plain HTTP, mutual TLS off)', async () => {
    const token = await tokenOver(pki.identity('client-a'));
    await expectInvalidToken(await baton.request(`/fhir/Organization/${organizationId}`, { token }), 'the access token is bound to another certificate');
  });

  it('refuses an unbound token under mutual TLS, over a trusted certificate', async () => {
    const unbound = await baton.token({ clientId, kind: 'partner', scopes: [SCOPE] });
    await expectInvalidToken(await readOrganization(unbound, pki.identity('client-a')), 'the access token is not bound to a client certificate');
  });

  it('asks operators with the admin token for a trusted certificate too', async () => {
    const asOperator = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
    await expectInvalidToken(await call(`/fhir/Organization/${organizationId}`, asOperator), 'requires mutual TLS');
    expect((await call(`/fhir/Organization/${organizationId}`, asOperator, pki.identity('client-a'))).status).toBe(200);
  });

  it('refuses the token endpoint without a verified certificate, before the assertion is used', async () => {
    const assertion = await signAssertion({ clientId, keys });
    await expectInvalidClient(await tokenRequest(over(undefined), assertionFields(assertion, SCOPE)));
    await expectInvalidClient(await tokenRequest(over(pki.identity('client-b')), assertionFields(assertion, SCOPE)));
    // The refused requests did not record the assertion's jti, so it still works over a trusted certificate.
    expect((await tokenRequest(over(pki.identity('client-a')), assertionFields(assertion, SCOPE))).status).toBe(200);
  });
});

describe('TLS configuration', () => {
  const pki = new TestPki();
  beforeAll(() => {
    pki.ca('ca');
    pki.leaf('server', 'ca', 'localhost', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth');
    pki.leaf('other', 'ca', 'localhost', 'extendedKeyUsage=serverAuth');
    writeFileSync(pki.path('not-pem.txt'), 'not a certificate\n');
  });
  afterAll(() => pki.close());

  it('reads the PEM files and serves https by default when TLS_CERT and TLS_KEY are set', () => {
    const config = loadConfig({ TLS_CERT: pki.path('server.pem'), TLS_KEY: pki.path('server.key'), TLS_CLIENT_CA: pki.path('ca.pem') });
    expect(config.baseUrl).toBe('https://127.0.0.1:8080/fhir');
    expect(config.tls).toMatchObject({ cert: pki.pem('server'), key: readFileSync(pki.path('server.key'), 'utf8') });
    expect(config.tls?.clientCa?.map((pem) => new X509Certificate(pem).fingerprint256)).toEqual([new X509Certificate(pki.pem('ca')).fingerprint256]);
    writeFileSync(pki.path('bundle.pem'), pki.pem('ca') + pki.pem('server'));
    expect(loadConfig({ TLS_CERT: pki.path('server.pem'), TLS_KEY: pki.path('server.key'), TLS_CLIENT_CA: pki.path('bundle.pem') }).tls?.clientCa).toHaveLength(2);
    expect(loadConfig({ TLS_CERT: pki.path('server.pem'), TLS_KEY: pki.path('server.key') }).tls?.clientCa).toBeUndefined();
    expect(loadConfig({}).tls).toBeUndefined();
  });

  it.each([
    [{ TLS_CERT: 'server.pem' }, 'TLS_CERT and TLS_KEY must be set together'],
    [{ TLS_KEY: 'server.key' }, 'TLS_CERT and TLS_KEY must be set together'],
    [{ TLS_CLIENT_CA: 'ca.pem' }, 'TLS_CLIENT_CA needs TLS_CERT and TLS_KEY'],
    [{ TLS_CERT: 'missing.pem', TLS_KEY: 'server.key' }, 'TLS_CERT: cannot read'],
    [{ TLS_CERT: 'server.pem', TLS_KEY: 'missing.key' }, 'TLS_KEY: cannot read'],
    [{ TLS_CERT: 'server.pem', TLS_KEY: 'server.key', TLS_CLIENT_CA: 'missing.pem' }, 'TLS_CLIENT_CA: cannot read'],
    // A folder: unreadable as a file whoever runs the test (root reads files whatever their mode).
    [{ TLS_CERT: 'server.pem', TLS_KEY: '.' }, 'TLS_KEY: cannot read'],
    [{ TLS_CERT: 'not-pem.txt', TLS_KEY: 'server.key' }, 'TLS_CERT must hold a PEM certificate'],
    [{ TLS_CERT: 'server.pem', TLS_KEY: 'server.pem' }, 'TLS_KEY must hold an unencrypted PEM private key'],
    [{ TLS_CERT: 'server.pem', TLS_KEY: 'other.key' }, 'TLS_KEY is not the private key of the TLS_CERT certificate'],
    [{ TLS_CERT: 'server.pem', TLS_KEY: 'server.key', TLS_CLIENT_CA: 'not-pem.txt' }, 'TLS_CLIENT_CA must hold one or more PEM certificates'],
  ])('rejects %j: %s', (files, message) => {
    const env = Object.fromEntries(Object.entries(files).map(([name, file]) => [name, pki.path(file)]));
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});
