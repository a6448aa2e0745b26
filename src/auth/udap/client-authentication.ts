import type { X509Certificate } from 'node:crypto';
import type { Queryable } from '../../db/connection.ts';
import { MAX_ASSERTION_LIFETIME_SECONDS, assertionClaimProblem } from '../assertion-claims.ts';
import { recordAssertionJti } from '../clients.ts';
import { OAuthError } from '../oauth-error.ts';
import { b2bExtensionProblem } from './b2b-extension.ts';
import { uriSubjectAltNames } from './certificate-chain.ts';
import type { UdapRegistration } from './registrations.ts';
import { type VerifiedX5cJwt, verifyX5cJwt } from './x5c-jwt.ts';

export interface UdapAuthenticationContext {
  db: Queryable;
  tokenUrl: string;
  /** Undefined when UDAP is off: clients registered through it cannot authenticate then. */
  trustAnchors: readonly X509Certificate[] | undefined;
  now: Date;
}

/**
 * UDAP JWT-Based Client Authentication (UDAP IG §5.2) for a client registered through UDAP:
 * the assertion is signed with the key of its x5c certificate, which must chain to the trust
 * anchor of the registration and name the registered client URI; a renewed certificate of the
 * same application is accepted. Every failure is invalid_client, except a missing or malformed
 * hl7-b2b extension, which is about the authorization asked for (invalid_grant).
 */
export async function authenticateUdapClient(ctx: UdapAuthenticationContext, assertion: string, registration: UdapRegistration): Promise<void> {
  if (!ctx.trustAnchors) throw new OAuthError('invalid_client', 'this client was registered through UDAP, which this server no longer offers');
  let verified: VerifiedX5cJwt;
  try {
    verified = await verifyX5cJwt(assertion, ctx.trustAnchors, ctx.now);
  } catch (error) {
    throw new OAuthError('invalid_client', `client_assertion: ${(error as Error).message}`);
  }
  const { payload, leaf, anchor } = verified;
  if (anchor.fingerprint256 !== registration.community) throw new OAuthError('invalid_client', 'the x5c certificate is not from the trust community this client registered in');
  if (!uriSubjectAltNames(leaf).includes(registration.san)) throw new OAuthError('invalid_client', 'the x5c certificate does not carry the registered client URI');
  const now = Math.floor(ctx.now.getTime() / 1000);
  const problem = assertionClaimProblem(payload, { clientId: registration.clientId, tokenUrl: ctx.tokenUrl, now });
  if (problem) throw new OAuthError('invalid_client', problem);
  // UDAP IG §5.2.1: iat is required and the token lives at most 5 minutes.
  if (typeof payload.iat !== 'number' || (payload.exp as number) - payload.iat > MAX_ASSERTION_LIFETIME_SECONDS) {
    throw new OAuthError('invalid_client', 'iat is required and exp must be at most 5 minutes after it');
  }
  // UDAP IG §5.2.1.1: client_credentials clients carry the B2B authorization extension object; this server requires it.
  const b2bProblem = b2bExtensionProblem(payload.extensions);
  if (b2bProblem) throw new OAuthError('invalid_grant', b2bProblem);
  if (!(await recordAssertionJti(ctx.db, registration.clientId, payload.jti as string, payload.exp as number))) {
    throw new OAuthError('invalid_client', 'jti has been used before');
  }
}
