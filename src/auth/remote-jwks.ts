import { type JSONWebKeySet, type JWTVerifyGetKey, createLocalJWKSet, errors } from 'jose';

export interface RemoteJwksOptions {
  /** Least time a fetched set is kept and least time between two fetches of one URL, whatever the response says. */
  cooldownSeconds?: number;
  /** Longest time a fetched set is kept, whatever the response says. */
  maxAgeSeconds?: number;
  /** Time a set is kept when its response carries no freshness information. */
  defaultMaxAgeSeconds?: number;
  /** Connect, headers and body together. */
  timeoutMs?: number;
  /** Largest JWKS body read; a key set is a few kilobytes. */
  maxBytes?: number;
  /** Milliseconds since the epoch; tests move it. */
  now?: () => number;
}

interface FetchedSet {
  getKey: ReturnType<typeof createLocalJWKSet>;
  freshUntil: number;
}

interface UrlState {
  fetched?: FetchedSet;
  /** When the last fetch started; fetches of one URL are at least a cooldown apart. */
  lastAttempt: number;
  /** The last fetch's failure, answered again until the cooldown allows another try. */
  failure?: unknown;
  pending?: Promise<FetchedSet>;
}

/**
 * Clients' JWKS fetched from their registered jwks_uri, one cached set per URL, kept as long as
 * the response's Cache-Control allows (RFC 9111 §4.2) within [cooldown, maxAge]. An assertion
 * naming a kid the set lacks triggers one refetch per cooldown, so a client that rotates its key
 * is accepted at once while unknown kids cannot make Baton hammer the client's server.
 */
export class RemoteJwksCache {
  private readonly states = new Map<string, UrlState>();
  private readonly cooldownMs: number;
  private readonly maxAgeMs: number;
  private readonly defaultMaxAgeMs: number;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly now: () => number;

  constructor(options: RemoteJwksOptions = {}) {
    this.cooldownMs = (options.cooldownSeconds ?? 30) * 1000;
    this.maxAgeMs = (options.maxAgeSeconds ?? 24 * 3600) * 1000;
    this.defaultMaxAgeMs = (options.defaultMaxAgeSeconds ?? 300) * 1000;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.maxBytes = options.maxBytes ?? 256 * 1024;
    this.now = options.now ?? Date.now;
  }

  /** The key resolver for jose's jwtVerify of assertions from the client registered with this URL. */
  keySet(url: string): JWTVerifyGetKey {
    return async (header, token) => {
      const state = this.state(url);
      const fetched = await this.current(state, url);
      try {
        return await fetched.getKey(header, token);
      } catch (error) {
        if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
        const refetched = await this.refetchForUnknownKid(state, url, fetched);
        if (!refetched) throw error;
        return refetched.getKey(header, token);
      }
    };
  }

  private state(url: string): UrlState {
    let state = this.states.get(url);
    if (!state) {
      state = { lastAttempt: -Infinity };
      this.states.set(url, state);
    }
    return state;
  }

  private current(state: UrlState, url: string): Promise<FetchedSet> {
    if (state.pending) return state.pending;
    if (state.fetched && this.now() < state.fetched.freshUntil) return Promise.resolve(state.fetched);
    if (state.failure !== undefined && this.now() - state.lastAttempt < this.cooldownMs) return Promise.reject(state.failure);
    return this.fetch(state, url);
  }

  /** A newer set than `seen`, fetched now unless the last fetch is under a cooldown old; undefined when none may be fetched. */
  private async refetchForUnknownKid(state: UrlState, url: string, seen: FetchedSet): Promise<FetchedSet | undefined> {
    if (state.pending) return state.pending;
    if (state.fetched !== seen) return state.fetched;
    if (this.now() - state.lastAttempt < this.cooldownMs) return undefined;
    return this.fetch(state, url);
  }

  private fetch(state: UrlState, url: string): Promise<FetchedSet> {
    state.lastAttempt = this.now();
    state.pending = fetchJwks(url, this.timeoutMs, this.maxBytes)
      .then(({ jwks, freshSeconds }) => {
        const lifetime = Math.min(Math.max((freshSeconds ?? this.defaultMaxAgeMs / 1000) * 1000, this.cooldownMs), this.maxAgeMs);
        // A refetch that fails leaves the previous set in place until it goes stale.
        state.fetched = { getKey: createLocalJWKSet(jwks), freshUntil: state.lastAttempt + lifetime };
        state.failure = undefined;
        return state.fetched;
      })
      .catch((error: unknown) => {
        state.failure = error;
        throw error;
      })
      .finally(() => {
        state.pending = undefined;
      });
    return state.pending;
  }
}

/**
 * Seconds a response may be reused (RFC 9111 §4.2.1 max-age less the Age header, §4.2.3): 0 for
 * no-store, no-cache or an unreadable max-age; undefined when Cache-Control says nothing of it.
 */
export function responseFreshness(cacheControl: string | null, age: string | null): number | undefined {
  const directives = new Map<string, string>();
  for (const part of (cacheControl ?? '').split(',')) {
    const [name, value = ''] = part.split('=', 2).map((s) => s.trim());
    if (name) directives.set(name.toLowerCase(), value.replace(/^"(.*)"$/, '$1'));
  }
  if (directives.has('no-store') || directives.has('no-cache')) return 0;
  const maxAge = directives.get('max-age');
  if (maxAge === undefined) return undefined;
  if (!/^\d+$/.test(maxAge)) return 0;
  const ageSeconds = age !== null && /^\d+$/.test(age.trim()) ? Number(age.trim()) : 0;
  return Math.max(Number(maxAge) - ageSeconds, 0);
}

/** GETs a JWKS; failures are jose errors (JWKSTimeout, or JOSEError with the reason) so token.ts phrases them as for any key set. */
async function fetchJwks(url: string, timeoutMs: number, maxBytes: number): Promise<{ jwks: JSONWebKeySet; freshSeconds: number | undefined }> {
  try {
    const response = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      // A key set that moved is re-registered, not followed: a redirect could leave https.
      redirect: 'error',
      headers: { accept: 'application/jwk-set+json, application/json' },
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new errors.JOSEError(`the JWKS answered HTTP ${response.status}`);
    }
    const jwks = parseJwks(await boundedText(response, maxBytes));
    return { jwks, freshSeconds: responseFreshness(response.headers.get('cache-control'), response.headers.get('age')) };
  } catch (error) {
    if (error instanceof errors.JOSEError) throw error;
    if ((error as { name?: string }).name === 'TimeoutError') throw new errors.JWKSTimeout();
    throw new errors.JOSEError('the JWKS could not be fetched', { cause: error });
  }
}

async function boundedText(response: Response, maxBytes: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    // Leaving the loop by throwing cancels the stream.
    if (size > maxBytes) throw new errors.JOSEError(`the JWKS is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJwks(text: string): JSONWebKeySet {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new errors.JOSEError('the JWKS is not JSON');
  }
  const keys = (value as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || !keys.every((key) => typeof key === 'object' && key !== null && !Array.isArray(key))) {
    throw new errors.JOSEError('the JWKS is not a JWK Set');
  }
  return value as JSONWebKeySet;
}
