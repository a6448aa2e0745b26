import { Hono } from 'hono';
import type { Context } from 'hono';
import type { UdapConfig } from '../config.ts';
import type { Database } from '../db/connection.ts';
import { FhirError, badRequest, notFound, outcome } from '../fhir/errors.ts';
import { isAdminToken } from './admin-credential.ts';
import { parseRegistration } from './client-registration.ts';
import { createClient, deleteClient, listClients } from './clients.ts';
import { verifiedCertificateThumbprint } from './mtls.ts';
import { OAuthError } from './oauth-error.ts';
import type { SigningKeyStore } from './signing-keys.ts';
import { smartConfiguration } from './smart-configuration.ts';
import { issueToken } from './token.ts';
import { udapRoutes } from './udap/routes.ts';

export interface AuthDeps {
  db: Database;
  /** The FHIR base URL (BATON_BASE_URL); the authorization server lives at its origin. */
  baseUrl: string;
  /** Bearer token of the admin API; undefined keeps it closed. */
  adminToken: string | undefined;
  signingKeys: SigningKeyStore;
  /** UDAP discovery, registration and client authentication; undefined turns UDAP off. */
  udap?: UdapConfig;
  /** Mutual TLS is on (TLS_CLIENT_CA): the token endpoint serves only connections with a verified client certificate. */
  requireClientCertificate?: boolean;
}

/** A token request is a handful of short form fields; anything larger is not one. */
const MAX_TOKEN_REQUEST_BYTES = 64 * 1024;

/** SMART discovery, the token endpoint, Baton's public keys and the client-registration admin API. */
export function authRoutes(deps: AuthDeps): Hono {
  const app = new Hono({ strict: false });
  // First use creates the key (shared through the database).
  const keys = () => deps.signingKeys.get();

  // SMART App Launch §conformance: JSON whatever the Accept header; CORS so browser tools can discover.
  const discovery = (c: Context) => c.json(smartConfiguration(deps.baseUrl, { certificateBoundTokens: deps.requireClientCertificate }), 200, { 'Access-Control-Allow-Origin': '*', 'Cache-Control': 'public, max-age=3600' });
  app.get('/.well-known/smart-configuration', discovery);
  app.get('/fhir/.well-known/smart-configuration', discovery);
  app.route('/', udapRoutes({ db: deps.db, baseUrl: deps.baseUrl, udap: deps.udap }));

  app.get('/auth/jwks', async (c) => c.json((await keys()).jwks, 200, { 'Access-Control-Allow-Origin': '*', 'Cache-Control': 'public, max-age=300' }));

  app.post('/auth/token', async (c) => {
    // RFC 6749 §5.1: token responses are never cached.
    const noStore = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };
    try {
      const certificateThumbprint = verifiedCertificateThumbprint(c.env);
      // RFC 8705 §3: the client still authenticates with its assertion; the certificate binds the token.
      if (deps.requireClientCertificate && certificateThumbprint === undefined) {
        throw new OAuthError('invalid_client', 'this server requires mutual TLS: connect with a client certificate issued by a CA it trusts');
      }
      const form = await tokenRequestForm(c);
      return c.json(await issueToken({ db: deps.db, fhirBaseUrl: deps.baseUrl, signingKeys: keys, udapTrustAnchors: deps.udap?.trustAnchors }, form, certificateThumbprint), 200, noStore);
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      return c.json({ error: error.code, error_description: error.description }, error.status, noStore);
    }
  });

  app.use('/admin/*', async (c, next) => {
    // Closed without a configured token: the API does not exist for anyone.
    if (!deps.adminToken) throw notFound('No endpoint at this path');
    const presented = /^Bearer (.+)$/i.exec(c.req.header('authorization') ?? '')?.[1];
    if (!presented) throw new FhirError(401, outcome('error', 'login', 'The admin API requires Authorization: Bearer <BATON_ADMIN_TOKEN>'), { 'WWW-Authenticate': 'Bearer' });
    if (!isAdminToken(presented, deps.adminToken)) throw new FhirError(403, outcome('error', 'forbidden', 'The admin token is not valid'));
    await next();
  });
  app.post('/admin/clients', async (c) => {
    const body: unknown = await c.req.json().catch(() => {
      throw badRequest('The body must be JSON');
    });
    const parsed = parseRegistration(body);
    if ('problems' in parsed) throw badRequest(parsed.problems.join('; '));
    return c.json(await createClient(deps.db, parsed.registration), 201);
  });
  app.get('/admin/clients', async (c) => c.json(await listClients(deps.db)));
  app.delete('/admin/clients/:id', async (c) => {
    if (!(await deleteClient(deps.db, c.req.param('id')))) throw notFound('No such client');
    return c.body(null, 204);
  });
  return app;
}

async function tokenRequestForm(c: Context): Promise<URLSearchParams> {
  if (!(c.req.header('content-type') ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    throw new OAuthError('invalid_request', 'the token request must be application/x-www-form-urlencoded');
  }
  const text = await c.req.text();
  if (text.length > MAX_TOKEN_REQUEST_BYTES) throw new OAuthError('invalid_request', 'the token request is too large');
  const form = new URLSearchParams(text);
  // RFC 6749 §3.2: request parameters must not be repeated.
  for (const name of new Set(form.keys())) if (form.getAll(name).length > 1) throw new OAuthError('invalid_request', `${name} is repeated`);
  return form;
}
