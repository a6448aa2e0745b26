import type { JWTPayload } from 'jose';

/** SMART Backend Services: the client signs with RS384 or ES384; nothing else is accepted (never `none`, never HMAC). */
export const ASSERTION_ALGORITHMS = ['RS384', 'ES384'];

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** SMART Backend Services: `exp` no more than five minutes in the future. */
export const MAX_ASSERTION_LIFETIME_SECONDS = 300;

/** Clients' clocks run a little ahead of ours; an assertion made "5 minutes from now" must still pass. */
const CLOCK_SKEW_SECONDS = 30;

export interface AssertionExpectation {
  clientId: string;
  tokenUrl: string;
  /** Seconds since the epoch. */
  now: number;
}

/**
 * The claim rules of RFC 7523 §3 and SMART Backend Services that jose's signature check does
 * not cover; the first broken rule, or undefined when the claims are acceptable.
 */
export function assertionClaimProblem(payload: JWTPayload, expected: AssertionExpectation): string | undefined {
  if (payload.iss !== expected.clientId || payload.sub !== expected.clientId) return 'iss and sub must both be the client_id';
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (!audiences.includes(expected.tokenUrl)) return `aud must be the token endpoint ${expected.tokenUrl}`;
  if (typeof payload.exp !== 'number') return 'exp is required';
  if (payload.exp <= expected.now) return 'the assertion has expired';
  if (payload.exp > expected.now + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) return 'exp must be at most 5 minutes in the future';
  if (typeof payload.jti !== 'string' || !payload.jti) return 'jti is required';
  return undefined;
}
