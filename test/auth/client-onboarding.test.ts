import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  OnboardingError,
  PARTNER_DEFAULT_SCOPE,
  type NewClientOptions,
  curlInstructions,
  registerNewClient,
  registrationHint,
  tokenRequestFromKeyFile,
} from '../../src/auth/client-onboarding.ts';
import { createApp } from '../../src/app.ts';
import { createLogger } from '../../src/logger.ts';
import { type TestBaton, startBaton } from '../support/baton.ts';

const run = promisify(execFile);
const ADMIN_TOKEN = 'onboarding-admin-token-0123456789';
const HAS_CURL = await run('curl', ['--version']).then(
  () => true,
  () => false,
);

let baton: TestBaton;
/** Baton on a real port, admin API open; and a second one on the same database with it closed. */
let open: { server: Server; base: string };
let closed: { server: Server; base: string };
/** An address where nothing listens. */
let vacant: string;
const keyDir = mkdtempSync(join(tmpdir(), 'baton-onboarding-'));

/** Listens first, so the app's base URL can name the port, as `npm start` on that port would. */
async function listen(adminToken: string | undefined): Promise<{ server: Server; base: string }> {
  // No request arrives before `app` exists: the port is known only to this function until it returns.
  const server = serve({ fetch: (request) => app.fetch(request), port: 0, hostname: '127.0.0.1' }) as Server;
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const app = createApp({ config: { baseUrl: `${base}/fhir`, maxBodyBytes: 1024 * 1024, adminToken }, db: baton.db, logger: createLogger('silent'), validator: baton.validator });
  return { server, base };
}

beforeAll(async () => {
  baton = await startBaton();
  // What the start does (ensureOwnOrganization), through the API.
  const organization = { resourceType: 'Organization', id: 'baton-payer', name: 'Onboarding Test Plan' };
  expect((await baton.request('/fhir/Organization/baton-payer', { method: 'PUT', json: organization })).status).toBe(201);
  open = await listen(ADMIN_TOKEN);
  closed = await listen(undefined);
  const probe = await listen(undefined);
  vacant = probe.base;
  await new Promise((resolve) => probe.server.close(resolve));
});
afterAll(async () => {
  for (const listening of [open, closed]) if (listening) await new Promise((resolve) => listening.server.close(resolve));
  await baton?.close();
  rmSync(keyDir, { recursive: true, force: true });
});

function options(overrides: Partial<NewClientOptions> = {}): NewClientOptions {
  return {
    base: open.base,
    adminToken: ADMIN_TOKEN,
    name: 'Claims Loader',
    kind: 'internal',
    scope: 'system/Organization.rs',
    organization: { system: 'http://www.naic.org', value: '12345' },
    keyDir,
    ...overrides,
  };
}

async function accessToken(request: { url: string; form: Record<string, string> }): Promise<{ access_token: string; scope: string }> {
  const response = await fetch(request.url, { method: 'POST', body: new URLSearchParams(request.form) });
  expect(response.status).toBe(200);
  return (await response.json()) as { access_token: string; scope: string };
}

async function read(base: string, path: string, token: string): Promise<Response> {
  return fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
}

describe('registerNewClient', () => {
  it('registers a key pair, keeps the private key in a 0600 file and gives a token request that works', async () => {
    const client = await registerNewClient(options());
    expect(client.keyFile).toBe(join(keyDir, `${client.clientId}.private.jwk.json`));
    expect(statSync(client.keyFile).mode & 0o777).toBe(0o600);
    const jwk = JSON.parse(readFileSync(client.keyFile, 'utf8'));
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-384', alg: 'ES384', kid: expect.any(String), d: expect.any(String) });

    const { access_token: token } = await accessToken(client.tokenRequest);
    expect((await read(open.base, '/fhir/metadata', token)).status).toBe(200);
    const organization = await read(open.base, '/fhir/Organization/baton-payer', token);
    expect(organization.status).toBe(200);
    expect(await organization.json()).toMatchObject({ resourceType: 'Organization', name: 'Onboarding Test Plan' });
    expect(client.readUrl).toBe(`${open.base}/fhir/Organization/baton-payer`);

    // The key file alone mints the next request.
    const again = await tokenRequestFromKeyFile({ base: open.base, keyFile: client.keyFile, scope: 'system/Organization.rs' });
    expect((await read(open.base, '/fhir/Organization/baton-payer', (await accessToken(again.tokenRequest)).access_token)).status).toBe(200);
  });

  it('gives a partner the default scopes: system/*.rs and HRex $member-match', async () => {
    const client = await registerNewClient(options({ name: 'Acme Health', kind: 'partner', scope: PARTNER_DEFAULT_SCOPE }));
    expect((await accessToken(client.tokenRequest)).scope).toBe(PARTNER_DEFAULT_SCOPE);
  });

  it.each([
    ['no admin token', () => options({ adminToken: undefined }), /set BATON_ADMIN_TOKEN .*Without BATON_ADMIN_TOKEN Baton keeps its admin API closed/],
    ['a closed admin API', () => options({ base: closed.base }), /admin API of .* is closed \(404\): Baton opens it only when started with BATON_ADMIN_TOKEN set/],
    ['a wrong admin token', () => options({ adminToken: 'wrong' }), /refused the admin token \(403: The admin token is not valid\); use the BATON_ADMIN_TOKEN Baton was started with/],
    ['a scope the server rejects', () => options({ scope: 'user/*.*' }), /rejected the registration \(400\): unrecognized scopes: user\/\*\.\*/],
    ['no server', () => options({ base: vacant }), /No Baton answers at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): start it with npm start, or pass its address with --base/],
  ])('explains %s', async (_, makeOptions, message) => {
    const failure = registerNewClient(makeOptions());
    await expect(failure).rejects.toBeInstanceOf(OnboardingError);
    await expect(failure).rejects.toThrow(message);
  });
});

describe('npm run client:new', () => {
  const script = (args: string[], env: Record<string, string> = {}) =>
    run(process.execPath, ['--import', 'tsx', 'scripts/client.ts', ...args], { env: { ...process.env, BATON_DATA_DIR: keyDir, ...env } });

  it.skipIf(!HAS_CURL)('prints a curl token request and a read that work as printed', async () => {
    const { stdout } = await script(['new', '--name', "O'Brien Payer", '--base', open.base], { BATON_ADMIN_TOKEN: ADMIN_TOKEN });
    const keyFile = /^Private key: (\S+) \(mode 0600/m.exec(stdout)?.[1] as string;
    expect(keyFile.startsWith(join(keyDir, 'clients'))).toBe(true);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(stdout).toContain(`scope: ${PARTNER_DEFAULT_SCOPE}`);

    const [tokenCommand, readCommand] = commands(stdout);
    const answer = JSON.parse((await run('bash', ['-c', tokenCommand])).stdout) as { access_token: string; scope: string };
    expect(answer.scope).toBe(PARTNER_DEFAULT_SCOPE);
    const organization = JSON.parse((await run('bash', ['-c', readCommand], { env: { ...process.env, TOKEN: answer.access_token } })).stdout);
    expect(organization).toMatchObject({ resourceType: 'Organization', id: 'baton-payer' });
  });

  it('exits with 1 and the reason when the admin API is closed', async () => {
    const failure = script(['new', '--name', 'Acme', '--base', closed.base], { BATON_ADMIN_TOKEN: ADMIN_TOKEN });
    await expect(failure).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/^client:new: The admin API of .* is closed/) });
  });

  it('exits with 1 on a bad option', async () => {
    await expect(script(['new', '--name', 'Acme', '--kind', 'vendor'])).rejects.toMatchObject({ code: 1, stderr: 'client:new: --kind must be partner or internal\n' });
  });
});

describe('curlInstructions', () => {
  it('quotes every value for the shell', () => {
    const text = curlInstructions({ url: 'http://h/auth/token', form: { scope: "it's" }, expires: new Date(0) }, 'http://h/fhir/x');
    expect(text).toContain(`curl -sS -X POST 'http://h/auth/token' \\\n  --data-urlencode 'scope=it'\\''s'`);
  });
});

describe('registrationHint', () => {
  it('shows the client:new command when the admin API is open, with --base off the default address', () => {
    expect(registrationHint(true, 'http://127.0.0.1:8080')).toContain('npm run client:new -- --name <partner> (with BATON_ADMIN_TOKEN');
    expect(registrationHint(true, 'https://payer.example')).toContain('npm run client:new -- --name <partner> --base https://payer.example');
  });

  it('says how to open a closed admin API, without inventing a token', () => {
    const hint = registrationHint(false, 'http://127.0.0.1:8080');
    expect(hint).toContain('the admin API is closed because BATON_ADMIN_TOKEN is unset');
    expect(hint).toContain('BATON_CLIENTS_FILE');
  });
});

/** The shell commands in client:new's output: the curl lines, joined across their continuations. */
function commands(stdout: string): string[] {
  return stdout
    .replace(/ \\\n/g, ' ')
    .split('\n')
    .filter((line) => line.startsWith('curl '));
}
