import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { ASSERTION_TYPE } from '../../auth/assertion-claims.ts';
import type { OutboundClientKey } from './client-keys.ts';
import type { PartnerEndpoint } from './types.ts';

/**
 * An assertion lives four minutes: SMART Backend Services allows at most five, and a partner's
 * clock running behind ours must not see more than that.
 */
const ASSERTION_LIFETIME_SECONDS = 240;

/** SMART Backend Services caps access tokens at five minutes; a partner that does not say is taken at that. */
const DEFAULT_TOKEN_SECONDS = 300;

/** A token is renewed this long before it expires (at most a fifth of its lifetime), so no request goes out with one about to lapse. */
const RENEW_BEFORE_SECONDS = 30;

interface CachedToken {
  accessToken: string;
  renewAtMs: number;
}

/** A fresh access token from the partner's token endpoint; the partner client supplies it, with its HTTP handling. */
export type TokenRequest = (form: URLSearchParams) => Promise<{ accessToken: string; expiresInSeconds: number | undefined }>;

/**
 * Access tokens Baton holds at partners, one per endpoint (and client id, scope and key), kept
 * until shortly before they expire. Concurrent callers needing a token share one request. A
 * cache of this process that may be lost: a new token is one request away.
 */
export class PartnerTokens {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<string>>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A valid access token for the endpoint, requested with a client assertion signed by `key` when none is held. */
  async get(endpoint: PartnerEndpoint, key: () => Promise<OutboundClientKey>, request: TokenRequest): Promise<string> {
    const id = cacheKey(endpoint);
    const cached = this.tokens.get(id);
    if (cached && this.now() < cached.renewAtMs) return cached.accessToken;
    let pending = this.pending.get(id);
    if (!pending) {
      pending = this.fetch(id, endpoint, key, request).finally(() => this.pending.delete(id));
      this.pending.set(id, pending);
    }
    return pending;
  }

  /** Forgets `accessToken` (the partner refused it), unless a newer token has replaced it already. */
  invalidate(endpoint: PartnerEndpoint, accessToken: string): void {
    const id = cacheKey(endpoint);
    if (this.tokens.get(id)?.accessToken === accessToken) this.tokens.delete(id);
  }

  private async fetch(id: string, endpoint: PartnerEndpoint, key: () => Promise<OutboundClientKey>, request: TokenRequest): Promise<string> {
    const assertion = await signClientAssertion(endpoint, await key());
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      scope: endpoint.scope,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion,
    });
    const requestedAtMs = this.now();
    const { accessToken, expiresInSeconds } = await request(form);
    const lifetime = expiresInSeconds ?? DEFAULT_TOKEN_SECONDS;
    const renewAtMs = requestedAtMs + (lifetime - Math.min(RENEW_BEFORE_SECONDS, lifetime / 5)) * 1000;
    this.tokens.set(id, { accessToken, renewAtMs });
    return accessToken;
  }
}

/** RFC 7523 / SMART Backend Services client assertion: iss = sub = client id, aud = token URL, a fresh jti, kid in the header. */
function signClientAssertion(endpoint: PartnerEndpoint, key: OutboundClientKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuer(endpoint.clientId)
    .setSubject(endpoint.clientId)
    .setAudience(endpoint.tokenUrl)
    .setIssuedAt(now)
    .setExpirationTime(now + ASSERTION_LIFETIME_SECONDS)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

function cacheKey(endpoint: PartnerEndpoint): string {
  return JSON.stringify([endpoint.id, endpoint.tokenUrl, endpoint.clientId, endpoint.scope, endpoint.keyId]);
}
