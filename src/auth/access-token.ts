import { randomUUID } from 'node:crypto';
import { type JWTPayload, SignJWT, createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { ClientKind } from './client-registration.ts';
import type { Principal } from './access-policy.ts';
import { type SigningKeyStore, type SigningKeys, TOKEN_SIGNING_ALGORITHM } from './signing-keys.ts';
import { authUrls } from './smart-configuration.ts';

/** SMART Backend Services: access tokens live at most five minutes. */
export const ACCESS_TOKEN_LIFETIME_SECONDS = 300;

export interface AccessTokenSubject {
  clientId: string;
  kind: ClientKind;
  scopes: readonly string[];
  /** x5t#S256 of the client certificate the token was requested over (mutual TLS); the token is bound to it. */
  certificateThumbprint?: string;
  /** The client's Organization identifiers: Provenance names the organization behind a write. */
  organization?: readonly { system: string; value: string }[];
}

/** An access token (RFC 9068 JWT profile) for the FHIR base URL, signed with Baton's current key. */
export async function signAccessToken(keys: SigningKeys, fhirBaseUrl: string, subject: AccessTokenSubject): Promise<string> {
  // RFC 8705 §3.1: a certificate-bound token names its certificate in the cnf claim.
  const cnf = subject.certificateThumbprint === undefined ? {} : { cnf: { 'x5t#S256': subject.certificateThumbprint } };
  const organization = subject.organization?.length ? { client_org: subject.organization } : {};
  return new SignJWT({ scope: subject.scopes.join(' '), client_id: subject.clientId, client_kind: subject.kind, ...organization, ...cnf })
    .setProtectedHeader({ alg: keys.current.alg, kid: keys.current.kid, typ: 'at+jwt' })
    .setIssuer(authUrls(fhirBaseUrl).issuer)
    .setAudience(fhirBaseUrl)
    .setSubject(subject.clientId)
    .setIssuedAt()
    .setExpirationTime(`${ACCESS_TOKEN_LIFETIME_SECONDS}s`)
    .setJti(randomUUID())
    .sign(keys.current.privateKey);
}

/** Why a presented token was refused; the message goes to the caller (RFC 6750 error_description). */
export class InvalidTokenError extends Error {}

/** Verified tokens kept per process; losing them costs one signature check each. */
const CACHE_LIMIT = 10_000;

/**
 * Checks bearer tokens on every request: signature with one of Baton's keys, issuer, audience
 * (this FHIR base), expiry, type. A token's signature is checked once per process; later calls
 * find it in a bounded cache and only re-check its expiry, which keeps verification off the
 * hot path (an ES384 verification costs more than a whole read).
 */
export class AccessTokenVerifier {
  private readonly verified = new Map<string, { principal: Principal; expiresMs: number }>();

  constructor(
    private readonly keys: SigningKeyStore,
    private readonly fhirBaseUrl: string,
  ) {}

  async verify(token: string): Promise<Principal> {
    const cached = this.verified.get(token);
    if (cached) {
      if (cached.expiresMs > Date.now()) return cached.principal;
      this.verified.delete(token);
      throw new InvalidTokenError('the access token has expired');
    }
    const payload = await this.checkSignatureAndClaims(token);
    const principal = principalOf(payload);
    if (this.verified.size >= CACHE_LIMIT) this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(token, { principal, expiresMs: (payload.exp as number) * 1000 });
    return principal;
  }

  private async checkSignatureAndClaims(token: string): Promise<JWTPayload> {
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw new InvalidTokenError('the access token is not a JWT');
    }
    const keys = await this.keys.including(kid);
    try {
      const { payload } = await jwtVerify(token, createLocalJWKSet(keys.jwks), {
        algorithms: [TOKEN_SIGNING_ALGORITHM],
        issuer: authUrls(this.fhirBaseUrl).issuer,
        audience: this.fhirBaseUrl,
        typ: 'at+jwt',
        requiredClaims: ['exp', 'sub', 'scope', 'client_id', 'client_kind'],
      });
      return payload;
    } catch (error) {
      throw new InvalidTokenError(failure(error));
    }
  }
}

function principalOf(payload: JWTPayload): Principal {
  const { client_id: clientId, client_kind: kind, scope, cnf, jti, client_org: organization } = payload;
  if (typeof clientId !== 'string' || (kind !== 'partner' && kind !== 'internal') || typeof scope !== 'string') {
    throw new InvalidTokenError('the access token lacks Baton claims');
  }
  const principal: Principal = {
    clientId,
    kind,
    scopes: scope.split(' ').filter(Boolean),
    ...(typeof jti === 'string' ? { tokenId: jti } : {}),
    ...(isIdentifierList(organization) ? { organization } : {}),
  };
  if (cnf === undefined) return principal;
  const thumbprint = (cnf as Record<string, unknown> | null)?.['x5t#S256'];
  if (typeof thumbprint !== 'string' || !thumbprint) throw new InvalidTokenError('the access token has a cnf claim without x5t#S256');
  return { ...principal, certificateThumbprint: thumbprint };
}

function failure(error: unknown): string {
  switch ((error as { code?: string }).code) {
    case 'ERR_JWT_EXPIRED':
      return 'the access token has expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return `the access token's ${(error as { claim?: string }).claim ?? ''} claim is not valid here`.replace('  ', ' ');
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'the access token was not signed by this server';
    default:
      return 'the access token could not be verified';
  }
}

function isIdentifierList(value: unknown): value is { system: string; value: string }[] {
  return Array.isArray(value) && value.every((i) => typeof i?.system === 'string' && typeof i?.value === 'string');
}
