import type { X509Certificate } from 'node:crypto';
import { type JWTPayload, decodeProtectedHeader, jwtVerify } from 'jose';
import { UntrustedChainError, parseX5c, trustAnchorOf } from './certificate-chain.ts';

/**
 * UDAP IG §7.1.2: RS256 is required, ES256 recommended, RS384 and ES384 allowed. Never `none`,
 * never HMAC: the key always comes from the x5c certificate.
 */
export const UDAP_SIGNING_ALGORITHMS = ['RS256', 'ES256', 'RS384', 'ES384'];

/** A JWT whose x5c chain leads to a trust anchor and whose signature the leaf's key verifies. */
export interface VerifiedX5cJwt {
  payload: JWTPayload;
  /** The signer's certificate (x5c[0]). */
  leaf: X509Certificate;
  /** The trust anchor the chain leads to: it identifies the trust community. */
  anchor: X509Certificate;
}

/**
 * Why a JWT was refused. `malformed`: not a JWT with an acceptable alg and x5c;
 * `untrusted`: the chain does not lead to a valid anchor; `invalid`: the signature or a
 * registered claim (exp, nbf) fails.
 */
export class X5cJwtError extends Error {
  constructor(
    readonly reason: 'malformed' | 'untrusted' | 'invalid',
    message: string,
  ) {
    super(message);
  }
}

/** UDAP IG §7.1: validates a JWT signed with the key of its x5c leaf certificate, chained to one of `anchors`. */
export async function verifyX5cJwt(jwt: string, anchors: readonly X509Certificate[], now: Date): Promise<VerifiedX5cJwt> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(jwt);
  } catch {
    throw new X5cJwtError('malformed', 'not a signed JWT in compact serialization');
  }
  if (typeof header.alg !== 'string' || !UDAP_SIGNING_ALGORITHMS.includes(header.alg)) {
    throw new X5cJwtError('malformed', `the JWT must be signed with one of ${UDAP_SIGNING_ALGORITHMS.join(', ')}`);
  }
  if (header.x5c === undefined) throw new X5cJwtError('malformed', 'the JWT header has no x5c certificate chain');
  let chain: X509Certificate[];
  try {
    chain = parseX5c(header.x5c);
  } catch (error) {
    throw new X5cJwtError('malformed', (error as Error).message);
  }
  let anchor: X509Certificate;
  try {
    anchor = trustAnchorOf(chain, anchors, now);
  } catch (error) {
    if (error instanceof UntrustedChainError) throw new X5cJwtError('untrusted', error.message);
    throw error;
  }
  try {
    const { payload } = await jwtVerify(jwt, chain[0].publicKey, { algorithms: [header.alg], currentDate: now });
    return { payload, leaf: chain[0], anchor };
  } catch (error) {
    throw new X5cJwtError('invalid', verificationFailure(error));
  }
}

/** jose's error codes, phrased for the client (a key that does not fit the alg is a TypeError without one). */
function verificationFailure(error: unknown): string {
  switch ((error as { code?: string }).code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'the signature does not verify with the x5c certificate key';
    case 'ERR_JWT_EXPIRED':
      return 'the JWT has expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return 'the JWT is not yet valid (nbf) or has a malformed registered claim';
    case 'ERR_JWT_INVALID':
    case 'ERR_JWS_INVALID':
      return 'the JWT is malformed';
    default:
      return 'the JWT could not be verified with the x5c certificate key (does the alg fit the key?)';
  }
}
