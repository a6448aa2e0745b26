import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { type JWK, SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import { ASSERTION_TYPE } from './assertion-claims.ts';
import type { ClientKind, Identifier } from './client-registration.ts';

/**
 * The client side of onboarding, as `npm run client:new` runs it against a running Baton: a key
 * pair, its registration through the admin API, and a token request ready to paste.
 */

/** What a partner payer needs: read what its grants allow (SMART v2), and HRex $member-match to obtain grants. */
export const PARTNER_DEFAULT_SCOPE = 'system/*.rs http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match';
export const INTERNAL_DEFAULT_SCOPE = 'system/*.rs';

/** The read the printed instructions make with the new token: directory data every default scope covers. */
const SAMPLE_READ_PATH = '/fhir/Organization/baton-payer';

/** A client assertion's lifetime; SMART allows five minutes, this leaves room for clock drift. */
const ASSERTION_LIFETIME_SECONDS = 240;

/** Anything that stops onboarding; the message says what to do. */
export class OnboardingError extends Error {}

export interface NewClientOptions {
  /** Where Baton answers, e.g. http://127.0.0.1:8080. */
  base: string;
  adminToken: string | undefined;
  name: string;
  kind: ClientKind;
  scope: string;
  organization: Identifier;
  /** The folder the private key is written to. */
  keyDir: string;
}

export interface TokenRequest {
  url: string;
  form: Record<string, string>;
  /** When the assertion in the form expires. */
  expires: Date;
}

export interface NewClient {
  clientId: string;
  keyFile: string;
  scope: string;
  tokenRequest: TokenRequest;
  /** A FHIR read to try the token on. */
  readUrl: string;
}

/** Generates an ES384 key pair, registers its public half, saves the private JWK (mode 0600) and signs a first assertion. */
export async function registerNewClient(options: NewClientOptions): Promise<NewClient> {
  if (!options.adminToken) {
    throw new OnboardingError(
      'No admin token: set BATON_ADMIN_TOKEN (or pass --admin-token) to the value Baton was started with. Without BATON_ADMIN_TOKEN Baton keeps its admin API closed.',
    );
  }
  const base = options.base.replace(/\/+$/, '');
  const tokenUrl = await discoverTokenEndpoint(base);
  const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const body = {
    name: options.name,
    kind: options.kind,
    organization: { identifier: [options.organization] },
    jwks: { keys: [{ ...publicJwk, kid, alg: 'ES384', use: 'sig' }] },
    scope: options.scope,
  };
  const registered = await adminRequest(base, options.adminToken, 'POST', '/admin/clients', body);
  const { client_id: clientId, scope } = (await registered.json()) as { client_id: string; scope: string };

  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: 'ES384', use: 'sig' };
  let keyFile: string;
  try {
    keyFile = await savePrivateKey(options.keyDir, clientId, privateJwk);
  } catch (error) {
    // A registration whose key is lost is useless; undo it.
    await adminRequest(base, options.adminToken, 'DELETE', `/admin/clients/${encodeURIComponent(clientId)}`).catch(() => undefined);
    throw new OnboardingError(`Cannot save the private key under ${options.keyDir} (${(error as { code?: string }).code ?? 'error'}); the registration was withdrawn.`);
  }
  return { clientId, keyFile, scope, tokenRequest: await signedTokenRequest(clientId, privateJwk, tokenUrl, scope), readUrl: `${base}${SAMPLE_READ_PATH}` };
}

/** A client_credentials request (SMART Backend Services) carrying a fresh assertion, usable once before `expires`. */
export async function signedTokenRequest(clientId: string, privateJwk: JWK, tokenUrl: string, scope: string): Promise<TokenRequest> {
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({})
    .setProtectedHeader({ alg: privateJwk.alg as string, kid: privateJwk.kid, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(tokenUrl)
    .setIssuedAt(now)
    .setExpirationTime(now + ASSERTION_LIFETIME_SECONDS)
    .setJti(randomUUID())
    .sign(await importJWK(privateJwk, privateJwk.alg));
  return {
    url: tokenUrl,
    form: { grant_type: 'client_credentials', scope, client_assertion_type: ASSERTION_TYPE, client_assertion: assertion },
    expires: new Date((now + ASSERTION_LIFETIME_SECONDS) * 1000),
  };
}

/**
 * A fresh token request for a client registered earlier, from the key file registerNewClient
 * wrote (`<client_id>.private.jwk.json`, so the client_id comes from the name unless given).
 */
export async function tokenRequestFromKeyFile(options: { base: string; keyFile: string; clientId?: string; scope: string }): Promise<{ tokenRequest: TokenRequest; readUrl: string }> {
  const base = options.base.replace(/\/+$/, '');
  const clientId = options.clientId ?? /^(.+)\.private\.jwk\.json$/.exec(basename(options.keyFile))?.[1];
  if (!clientId) throw new OnboardingError(`${options.keyFile} is not named <client_id>.private.jwk.json: pass --client-id`);
  let privateJwk: JWK;
  try {
    privateJwk = JSON.parse(await readFile(options.keyFile, 'utf8')) as JWK;
  } catch (error) {
    throw new OnboardingError(`Cannot read the private JWK ${options.keyFile} (${(error as { code?: string }).code ?? 'not JSON'})`);
  }
  if (typeof privateJwk.d !== 'string' || typeof privateJwk.kid !== 'string' || typeof privateJwk.alg !== 'string') {
    throw new OnboardingError(`${options.keyFile} is not a private JWK with kid and alg`);
  }
  const tokenUrl = await discoverTokenEndpoint(base);
  return { tokenRequest: await signedTokenRequest(clientId, privateJwk, tokenUrl, options.scope), readUrl: `${base}${SAMPLE_READ_PATH}` };
}

/** The token request as a curl command, then the read that uses its access_token. */
export function curlInstructions(tokenRequest: TokenRequest, readUrl: string): string {
  const fields = Object.entries(tokenRequest.form).map(([name, value]) => `  --data-urlencode ${shellQuote(`${name}=${value}`)}`);
  return [
    `# 1. Request an access token (the client assertion in it is good for one request, until ${tokenRequest.expires.toISOString()}):`,
    `curl -sS -X POST ${shellQuote(tokenRequest.url)} \\`,
    fields.join(' \\\n'),
    '',
    '# 2. Put the access_token of that answer in TOKEN (TOKEN=eyJ…) and read with it:',
    `curl -sS -H "Authorization: Bearer $TOKEN" ${shellQuote(readUrl)}`,
  ].join('\n');
}

/** How to register a client with this server, for the start-up log; never the admin token itself. */
export function registrationHint(adminApiOpen: boolean, base: string): string {
  const command = `npm run client:new -- --name <partner>${base === 'http://127.0.0.1:8080' ? '' : ` --base ${base}`}`;
  if (adminApiOpen) return `register a client: ${command} (with BATON_ADMIN_TOKEN set in its environment too)`;
  return (
    'client registration: the admin API is closed because BATON_ADMIN_TOKEN is unset. ' +
    `Start Baton with BATON_ADMIN_TOKEN set to a long random secret (e.g. export BATON_ADMIN_TOKEN=$(openssl rand -hex 32)), then run ${command} with the same variable set; ` +
    'or list registrations in BATON_CLIENTS_FILE'
  );
}

async function discoverTokenEndpoint(base: string): Promise<string> {
  const url = `${base}/fhir/.well-known/smart-configuration`;
  const response = await call(base, url, {});
  if (!response.ok) throw new OnboardingError(`${url} answered HTTP ${response.status}: is ${base} a Baton server? Pass its address with --base.`);
  const tokenEndpoint = ((await response.json().catch(() => ({}))) as { token_endpoint?: unknown }).token_endpoint;
  if (typeof tokenEndpoint !== 'string') throw new OnboardingError(`${url} names no token_endpoint: is ${base} a Baton server?`);
  return tokenEndpoint;
}

async function adminRequest(base: string, adminToken: string, method: string, path: string, json?: unknown): Promise<Response> {
  const response = await call(base, `${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
    body: json === undefined ? undefined : JSON.stringify(json),
  });
  if (response.ok) return response;
  const message = await serverMessage(response);
  if (response.status === 404) {
    throw new OnboardingError(`The admin API of ${base} is closed (404): Baton opens it only when started with BATON_ADMIN_TOKEN set; restart it with that variable.`);
  }
  if (response.status === 401 || response.status === 403) {
    throw new OnboardingError(`The server refused the admin token (${response.status}: ${message}); use the BATON_ADMIN_TOKEN Baton was started with.`);
  }
  throw new OnboardingError(`The server rejected the registration (${response.status}): ${message}`);
}

async function call(base: string, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
  } catch (error) {
    const { cause, message } = error as { cause?: { code?: string; message?: string }; message: string };
    throw new OnboardingError(`No Baton answers at ${base} (${cause?.code ?? cause?.message ?? message}): start it with npm start, or pass its address with --base.`);
  }
}

/** The OperationOutcome's diagnostics (or the body's text) of an error answer. */
async function serverMessage(response: Response): Promise<string> {
  const text = await response.text();
  try {
    const outcome = JSON.parse(text) as { issue?: { diagnostics?: string }[] };
    const diagnostics = outcome.issue?.map((issue) => issue.diagnostics).filter(Boolean);
    if (diagnostics?.length) return diagnostics.join('; ');
  } catch {
    // Not JSON: the text itself is the message.
  }
  return text.slice(0, 500) || response.statusText;
}

async function savePrivateKey(dir: string, clientId: string, privateJwk: JWK): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = resolve(join(dir, `${clientId}.private.jwk.json`));
  // 'wx': never overwrite a key; mode 0600: the private key is the client's only credential.
  await writeFile(path, `${JSON.stringify(privateJwk, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return path;
}

/** POSIX single quotes; a quote inside becomes '\'' . */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
