import type { X509Certificate } from 'node:crypto';
import { type JWTPayload, type JWTVerifyGetKey, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import type { Queryable } from '../db/connection.ts';
import { ACCESS_TOKEN_LIFETIME_SECONDS, signAccessToken } from './access-token.ts';
import { ASSERTION_ALGORITHMS, ASSERTION_TYPE, assertionClaimProblem } from './assertion-claims.ts';
import { type RegisteredClient, findActiveClient, recordAssertionJti } from './clients.ts';
import { OAuthError } from './oauth-error.ts';
import { RemoteJwksCache } from './remote-jwks.ts';
import { grantScopes, splitScopes } from './scopes.ts';
import type { SigningKeys } from './signing-keys.ts';
import { authUrls } from './smart-configuration.ts';
import { authenticateUdapClient } from './udap/client-authentication.ts';
import { findUdapRegistration } from './udap/registrations.ts';

export interface TokenResponse {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
}

export interface TokenContext {
  db: Queryable;
  fhirBaseUrl: string;
  signingKeys: () => Promise<SigningKeys>;
  /** UDAP trust anchors; undefined when UDAP is off. */
  udapTrustAnchors?: readonly X509Certificate[];
}

/** Clients' jwks_uri sets, cached per URL as their Cache-Control allows; a cache this process may lose. */
const remoteKeySets = new RemoteJwksCache();

/**
 * SMART Backend Services token request (client_credentials with a private_key_jwt assertion, RFC 7523).
 * With certificateThumbprint (the verified client certificate of the request's connection) the
 * token is bound to that certificate (RFC 8705 §3).
 */
export async function issueToken(ctx: TokenContext, form: URLSearchParams, certificateThumbprint?: string): Promise<TokenResponse> {
  const grantType = form.get('grant_type');
  if (!grantType) throw new OAuthError('invalid_request', 'grant_type is required');
  if (grantType !== 'client_credentials') throw new OAuthError('unsupported_grant_type', 'only client_credentials is supported');
  if (form.get('client_assertion_type') !== ASSERTION_TYPE) throw new OAuthError('invalid_request', `client_assertion_type must be ${ASSERTION_TYPE}`);
  const assertion = form.get('client_assertion');
  if (!assertion) throw new OAuthError('invalid_request', 'client_assertion is required');
  const scope = form.get('scope');
  // UDAP IG §7.5 (8): a UDAP token request (udap=1) may leave scope out; it is granted the registered scopes.
  if (!scope?.trim() && form.get('udap') !== '1') throw new OAuthError('invalid_request', 'scope is required');

  const client = await authenticateClient(ctx, assertion);
  const granted = grantScopes(splitScopes(scope?.trim() || client.scope), splitScopes(client.scope));
  if (granted.length === 0) throw new OAuthError('invalid_scope', 'none of the requested scopes is registered for this client');

  const accessToken = await signAccessToken(await ctx.signingKeys(), ctx.fhirBaseUrl, {
    clientId: client.client_id,
    kind: client.kind,
    scopes: granted,
    certificateThumbprint,
    organization: client.organization.identifier,
  });
  return { access_token: accessToken, token_type: 'bearer', expires_in: ACCESS_TOKEN_LIFETIME_SECONDS, scope: granted.join(' ') };
}

/** RFC 7523 §3 client authentication; every failure is invalid_client (§3.2), with no detail of the assertion logged. */
async function authenticateClient(ctx: TokenContext, assertion: string): Promise<RegisteredClient> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  let claims: JWTPayload;
  try {
    header = decodeProtectedHeader(assertion);
    claims = decodeJwt(assertion);
  } catch {
    throw new OAuthError('invalid_client', 'client_assertion is not a JWT');
  }
  if (typeof claims.iss !== 'string' || !claims.iss) throw new OAuthError('invalid_client', 'client_assertion needs iss (the client_id)');
  const client = await findActiveClient(ctx.db, claims.iss);
  if (!client) throw new OAuthError('invalid_client', 'unknown or disabled client');
  // UDAP JWT-based client authentication: a client registered through UDAP proves itself with its certificate chain (x5c), never by a JWKS.
  const udapRegistration = await findUdapRegistration(ctx.db, client.client_id);
  if (udapRegistration) {
    const udapContext = { db: ctx.db, tokenUrl: authUrls(ctx.fhirBaseUrl).tokenUrl, trustAnchors: ctx.udapTrustAnchors, now: new Date() };
    await authenticateUdapClient(udapContext, assertion, udapRegistration);
    return client;
  }
  if (typeof header.alg !== 'string' || !ASSERTION_ALGORITHMS.includes(header.alg)) {
    throw new OAuthError('invalid_client', `client_assertion must be signed with ${ASSERTION_ALGORITHMS.join(' or ')}`);
  }
  if (typeof header.kid !== 'string' || !header.kid) throw new OAuthError('invalid_client', 'client_assertion header needs a kid');
  // SMART Backend Services: a jku header is honoured only when it names the registered JWKS URL.
  if (header.jku !== undefined && header.jku !== client.jwks_uri) throw new OAuthError('invalid_client', 'jku does not match the registered jwks_uri');

  let verified: JWTPayload;
  try {
    ({ payload: verified } = await jwtVerify(assertion, keySet(client), { algorithms: ASSERTION_ALGORITHMS }));
  } catch (error) {
    throw new OAuthError('invalid_client', verificationFailure(error));
  }
  const { tokenUrl } = authUrls(ctx.fhirBaseUrl);
  const problem = assertionClaimProblem(verified, { clientId: client.client_id, tokenUrl, now: Math.floor(Date.now() / 1000) });
  if (problem) throw new OAuthError('invalid_client', problem);
  if (!(await recordAssertionJti(ctx.db, client.client_id, verified.jti as string, verified.exp as number))) {
    throw new OAuthError('invalid_client', 'jti has been used before');
  }
  return client;
}

function keySet(client: RegisteredClient): JWTVerifyGetKey {
  if (client.jwks) return createLocalJWKSet(client.jwks as Parameters<typeof createLocalJWKSet>[0]);
  return remoteKeySets.keySet(client.jwks_uri as string);
}

/** jose's error codes, phrased for the client; the assertion itself never appears. */
function verificationFailure(error: unknown): string {
  switch ((error as { code?: string }).code) {
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'no registered key matches the assertion kid';
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return 'more than one registered key matches the assertion kid';
    case 'ERR_JWT_EXPIRED':
      return 'the assertion has expired';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'signature verification failed';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return `client_assertion must be signed with ${ASSERTION_ALGORITHMS.join(' or ')}`;
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JOSE_GENERIC':
      return 'the registered jwks_uri could not be read';
    default:
      return 'client_assertion could not be verified';
  }
}
