import { Hono } from 'hono';
import type { Context } from 'hono';
import type { UdapConfig } from '../../config.ts';
import type { Database } from '../../db/connection.ts';
import { notFound } from '../../fhir/errors.ts';
import { udapDiscovery, udapUrls } from './metadata.ts';
import { registerUdapClient } from './registration.ts';
import { UdapRegistrationError } from './registration-error.ts';

export interface UdapRouteDeps {
  db: Database;
  baseUrl: string;
  /** Undefined when UDAP is not configured. */
  udap: UdapConfig | undefined;
}

/** A registration request is a software statement with its certificate chain and a few certifications at most. */
const MAX_REGISTRATION_BYTES = 256 * 1024;

/**
 * UDAP discovery (`{base}/.well-known/udap`) and dynamic client registration. Without a UDAP
 * configuration the metadata answers 404, which tells clients the server has no UDAP workflow
 * (UDAP IG §2.2), and the registration endpoint does not exist.
 */
export function udapRoutes(deps: UdapRouteDeps): Hono {
  const app = new Hono({ strict: false });
  const { udap } = deps;
  if (!udap) {
    // Answered here so the request does not reach the /fhir routes, which would ask for a token.
    app.get('/fhir/.well-known/udap', () => {
      throw notFound('This server does not support UDAP');
    });
    return app;
  }

  const discovery = udapDiscovery(udap, deps.baseUrl);
  // UDAP IG §2.1: unregistered clients read it without authenticating.
  app.get('/fhir/.well-known/udap', async (c) => c.json(await discovery(new Date()), 200, { 'Access-Control-Allow-Origin': '*', 'Cache-Control': 'public, max-age=3600' }));

  const { registrationUrl } = udapUrls(deps.baseUrl);
  app.post('/auth/udap/register', async (c) => {
    // RFC 7591 §3.2.1: registration responses carry client information and are not cached.
    const noStore = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };
    try {
      const body = await registrationRequest(c);
      const response = await registerUdapClient({ db: deps.db, registrationUrl, trustAnchors: udap.trustAnchors, allowedScopes: udap.scopes, now: new Date() }, body);
      return c.json(response.body, response.status, noStore);
    } catch (error) {
      if (!(error instanceof UdapRegistrationError)) throw error;
      // RFC 7591 §3.2.2: every registration error is a 400 with error and error_description.
      return c.json({ error: error.code, error_description: error.description }, 400, noStore);
    }
  });
  return app;
}

async function registrationRequest(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.length > MAX_REGISTRATION_BYTES) throw new UdapRegistrationError('invalid_client_metadata', 'the registration request is too large');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UdapRegistrationError('invalid_client_metadata', 'the body must be a JSON object');
  }
}
