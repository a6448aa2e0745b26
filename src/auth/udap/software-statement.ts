import type { JWTPayload } from 'jose';
import { MAX_ASSERTION_LIFETIME_SECONDS } from '../assertion-claims.ts';
import { grantScopes, splitScopes } from '../scopes.ts';

/** Clients' clocks run a little ahead of ours (the same allowance as for SMART assertions). */
const CLOCK_SKEW_SECONDS = 30;

const MAX_CLIENT_NAME_LENGTH = 200;

export interface StatementExpectation {
  /** The registration endpoint URL: the statement's audience. */
  registrationUrl: string;
  /** Seconds since the epoch. */
  now: number;
}

/**
 * UDAP IG §3.1 software statement JWT claims (iss, sub, aud, exp, iat, jti); the first
 * broken rule, or undefined. That iss names the certificate is checked by the caller.
 */
export function statementClaimProblem(payload: JWTPayload, expected: StatementExpectation): string | undefined {
  if (typeof payload.iss !== 'string' || !payload.iss) return 'iss must be the client URI';
  if (payload.sub !== payload.iss) return 'sub must equal iss';
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (!audiences.includes(expected.registrationUrl)) return `aud must be the registration endpoint ${expected.registrationUrl}`;
  if (typeof payload.exp !== 'number' || typeof payload.iat !== 'number') return 'exp and iat are required numbers';
  if (payload.exp <= expected.now) return 'the software statement has expired';
  if (payload.iat > expected.now + CLOCK_SKEW_SECONDS) return 'iat is in the future';
  if (payload.exp - payload.iat > MAX_ASSERTION_LIFETIME_SECONDS) return 'exp must be at most 5 minutes after iat';
  if (typeof payload.jti !== 'string' || !payload.jti) return 'jti is required';
  return undefined;
}

/** What a valid statement asks for: a registration (new or replacing the previous one) or its cancellation. */
export type RequestedRegistration =
  | { cancel: true }
  | { cancel: false; clientName: string; contacts: string[]; logoUri: string | undefined; scopes: string[] };

/**
 * UDAP IG §3.1 registration parameters for a client_credentials (B2B) client, the only kind
 * Baton serves; §3.4: an empty grant_types cancels. Scopes are the requested ones narrowed to
 * `allowedScopes` (IG §7.5: the server may grant a subset). Returns the problem when invalid.
 */
export function requestedRegistration(payload: JWTPayload, allowedScopes: readonly string[]): RequestedRegistration | { problem: string } {
  const grantTypes = payload.grant_types;
  if (!Array.isArray(grantTypes) || !grantTypes.every((g) => typeof g === 'string')) return { problem: 'grant_types must be an array of strings' };
  if (grantTypes.length === 0) return { cancel: true };
  if (grantTypes.includes('authorization_code')) return { problem: 'authorization_code is not supported: Baton registers client_credentials (B2B) clients only' };
  if (grantTypes.length !== 1 || grantTypes[0] !== 'client_credentials') return { problem: 'grant_types must be ["client_credentials"]' };
  // §3.1: redirect_uris and response_types belong to authorization_code clients and are absent otherwise.
  if (payload.redirect_uris !== undefined || payload.response_types !== undefined) return { problem: 'redirect_uris and response_types must be absent for client_credentials' };
  if (payload.token_endpoint_auth_method !== 'private_key_jwt') return { problem: 'token_endpoint_auth_method must be "private_key_jwt"' };

  const clientName = typeof payload.client_name === 'string' ? payload.client_name.trim() : '';
  if (!clientName || clientName.length > MAX_CLIENT_NAME_LENGTH) return { problem: `client_name must be a non-empty string of at most ${MAX_CLIENT_NAME_LENGTH} characters` };
  const contacts = payload.contacts;
  if (!Array.isArray(contacts) || !contacts.every((c) => typeof c === 'string') || !contacts.some((c) => /^mailto:[^@\s]+@[^@\s]+$/.test(c))) {
    return { problem: 'contacts must be an array of URIs with at least one mailto: address' };
  }
  const logoUri = payload.logo_uri;
  if (logoUri !== undefined && typeof logoUri !== 'string') return { problem: 'logo_uri must be a string' };
  if (typeof payload.scope !== 'string' || !payload.scope.trim()) return { problem: 'scope must be a space-separated list of scopes' };
  const scopes = grantScopes(splitScopes(payload.scope), [...allowedScopes]);
  if (scopes.length === 0) return { problem: `none of the requested scopes is available; scopes_supported: ${allowedScopes.join(' ')}` };
  return { cancel: false, clientName, contacts: contacts as string[], logoUri, scopes };
}
