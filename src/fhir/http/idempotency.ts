import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'drizzle-orm';
import type { MiddlewareHandler } from 'hono';
import type { Database, Queryable } from '../../db/connection.ts';
import type { Logger } from '../../logger.ts';
import { FhirError, badRequest, outcome, unprocessable } from '../errors.ts';
import type { FhirEnv } from './routes.ts';

/**
 * Idempotency-Key on POST (draft-ietf-httpapi-idempotency-key-header): a client that retries a
 * POST with the key of the first attempt gets the first attempt's response instead of a second
 * create, match or export. Keys are scoped per client, kept in the database (idempotency_keys)
 * so every process sharing it honours them, and claimed atomically so that of concurrent
 * duplicates exactly one does the work.
 */
export interface IdempotencyOptions {
  db: Database;
  logger: Logger;
  /** How long a key's response is replayed (BATON_IDEMPOTENCY_RETENTION_HOURS). */
  retentionHours: number;
  /** How long a duplicate waits for the request holding the key before it is answered 409. */
  waitMs?: number;
  /** A claim lasts this long unless its request, still running, renews it; a dead process's claim frees up after it. */
  leaseSeconds?: number;
}

/** Long enough for a create or a match; a transaction Bundle running longer answers its duplicates 409 + Retry-After. */
const WAIT_MS = 5_000;
const POLL_MS = 50;
const LEASE_SECONDS = 30;
const MAX_KEY_LENGTH = 255;

/**
 * The key of an Idempotency-Key header: the draft's sf-string (`"…"`, RFC 8941 §3.3.3), or, as
 * Stripe-style clients send it, the bare characters. Either way 1 to 255 printable ASCII
 * characters; a bare key has no spaces, quotes or commas (two header fields arrive joined by a
 * comma and are refused as the draft asks). Anything else is a 400 that does not echo the value.
 */
export function parseIdempotencyKey(header: string): string {
  const value = header.trim();
  let key: string | undefined;
  if (value.startsWith('"')) {
    const quoted = /^"((?:[\x20\x21\x23-\x5B\x5D-\x7E]|\\["\\])*)"$/.exec(value);
    key = quoted?.[1].replace(/\\(["\\])/g, '$1');
  } else if (/^[\x21\x23-\x2B\x2D-\x7E]+$/.test(value)) {
    key = value;
  }
  if (!key || key.length > MAX_KEY_LENGTH) {
    throw badRequest(`Idempotency-Key must be one string of 1 to ${MAX_KEY_LENGTH} printable ASCII characters, such as "8e03978e-40d5-43e8-bc93-6894a57f9324"`);
  }
  return key;
}

/** What makes two requests under one key the same request: method, path, query and body, as a hash (the body is never stored). */
export function requestFingerprint(method: string, path: string, search: string, body: Uint8Array): string {
  const bodyHash = createHash('sha256').update(body).digest('hex');
  return createHash('sha256').update(JSON.stringify([method, path, search, bodyHash])).digest('hex');
}

/**
 * Statuses that say nothing about the request, only about the moment: the key is released so
 * that the client's retry (RFC 9110 invites one after a 429 or a 5xx) does the work. Every
 * other response, 4xx included, is stored and replayed, as the draft and Stripe do.
 */
export function releasesKey(status: number): boolean {
  return status >= 500 || status === 429;
}

/** Headers that belong to one transmission, not to the response: the replay gets its own. */
const TRANSMISSION_HEADERS = new Set(['content-length', 'date', 'x-request-id', 'set-cookie', 'connection', 'transfer-encoding', 'keep-alive']);
/** Statuses whose response cannot have a body (the Response constructor refuses one). */
const NULL_BODY = new Set([101, 204, 205, 304]);

interface StoredRow {
  fingerprint: string;
  status: number | null;
  headers: [string, string][] | null;
  body: Uint8Array | null;
}

type Scope = { clientId: string; key: string };

/** The middleware, for POST under /fhir after authentication; requests without the header pass untouched. */
export function idempotency(options: IdempotencyOptions): MiddlewareHandler<FhirEnv> {
  const { db, logger, retentionHours } = options;
  const waitMs = options.waitMs ?? WAIT_MS;
  const leaseSeconds = options.leaseSeconds ?? LEASE_SECONDS;
  return async (c, next) => {
    const header = c.req.header('idempotency-key');
    // A POST search reads: nothing to protect, and its results (PHI) are not worth keeping.
    if (header === undefined || c.req.method !== 'POST' || /\/_search\/?$/.test(c.req.path)) return next();
    const key = parseIdempotencyKey(header);
    // Baton's own calls (no caller) form one scope of their own.
    const scope: Scope = { clientId: c.get('access').caller?.clientId ?? '', key };
    const url = new URL(c.req.url);
    // Read through the body limit before anything is claimed: a body too large is refused unclaimed.
    const fingerprint = requestFingerprint(c.req.method, url.pathname, url.search, new Uint8Array(await c.req.arrayBuffer()));
    const claim = randomUUID();
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (await claimKey(db, scope, fingerprint, claim, leaseSeconds, retentionHours)) break;
      const row = await storedRow(db, scope);
      if (row && row.fingerprint !== fingerprint) {
        throw unprocessable('This Idempotency-Key was already used for a different request (method, URL or body); a new request needs a new key');
      }
      if (row?.status != null) return replay(row);
      if (Date.now() >= deadline) {
        throw new FhirError(409, outcome('error', 'conflict', 'A request with this Idempotency-Key is still being processed; retry once it has completed'), { 'Retry-After': '1' });
      }
      // No row: released (its request failed) or expired since the claim was tried; try again at once.
      if (row) await sleep(POLL_MS);
    }

    const renewal = setInterval(() => {
      renewClaim(db, scope, claim, leaseSeconds).catch((error: unknown) => logger.warn({ err: errorSummary(error) }, 'idempotency key lease renewal failed'));
    }, (leaseSeconds * 1000) / 3);
    renewal.unref();
    try {
      await next();
    } finally {
      clearInterval(renewal);
    }
    // The client gets this response whatever happens to the bookkeeping: failing it now, after
    // the work is done, would only invite a retry. A claim left behind frees up with its lease.
    try {
      const response = c.res;
      if (releasesKey(response.status)) await releaseClaim(db, scope, claim);
      else await storeResponse(db, scope, claim, response.status, storedHeaders(response.headers), new Uint8Array(await response.clone().arrayBuffer()));
    } catch (error) {
      logger.error({ err: errorSummary(error), status: c.res.status }, 'idempotency key: response not stored');
    }
  };
}

/**
 * Takes the key for this request: a new key, one whose retention has ended, or a claim whose
 * lease ran out (its process died) for the same request. One statement, so of concurrent
 * duplicates exactly one gets true.
 */
async function claimKey(q: Queryable, scope: Scope, fingerprint: string, claim: string, leaseSeconds: number, retentionHours: number): Promise<boolean> {
  const rows = await q.execute(sql`
    INSERT INTO idempotency_keys (client_id, key, fingerprint, claim, lease_until, expires)
    VALUES (${scope.clientId}, ${scope.key}, ${fingerprint}, ${claim}, now() + ${leaseSeconds} * interval '1 second', now() + ${retentionHours} * interval '1 hour')
    ON CONFLICT (client_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, claim = excluded.claim, lease_until = excluded.lease_until,
      status = NULL, headers = NULL, body = NULL, created = now(), expires = excluded.expires
    WHERE idempotency_keys.expires <= now()
       OR (idempotency_keys.status IS NULL AND idempotency_keys.lease_until <= now() AND idempotency_keys.fingerprint = excluded.fingerprint)
    RETURNING 1`);
  return rows.length === 1;
}

async function storedRow(q: Queryable, scope: Scope): Promise<StoredRow | undefined> {
  const rows = await q.execute<StoredRow>(sql`
    SELECT fingerprint, status, headers, body FROM idempotency_keys
    WHERE client_id = ${scope.clientId} AND key = ${scope.key} AND expires > now()`);
  return rows[0];
}

async function renewClaim(q: Queryable, scope: Scope, claim: string, leaseSeconds: number): Promise<void> {
  await q.execute(sql`
    UPDATE idempotency_keys SET lease_until = now() + ${leaseSeconds} * interval '1 second'
    WHERE client_id = ${scope.clientId} AND key = ${scope.key} AND claim = ${claim} AND status IS NULL`);
}

async function releaseClaim(q: Queryable, scope: Scope, claim: string): Promise<void> {
  await q.execute(sql`DELETE FROM idempotency_keys WHERE client_id = ${scope.clientId} AND key = ${scope.key} AND claim = ${claim} AND status IS NULL`);
}

async function storeResponse(q: Queryable, scope: Scope, claim: string, status: number, headers: [string, string][], body: Uint8Array): Promise<void> {
  await q.execute(sql`
    UPDATE idempotency_keys SET status = ${status}, headers = ${JSON.stringify(headers)}::jsonb, body = ${body}
    WHERE client_id = ${scope.clientId} AND key = ${scope.key} AND claim = ${claim} AND status IS NULL`);
}

function storedHeaders(headers: Headers): [string, string][] {
  return [...headers.entries()].filter(([name]) => !TRANSMISSION_HEADERS.has(name));
}

/** The stored response, as first sent, marked as a replay. */
function replay(row: StoredRow): Response {
  const status = row.status as number;
  const headers = new Headers(row.headers ?? []);
  headers.set('Idempotent-Replayed', 'true');
  // A copy: postgres.js answers a Buffer, PGlite a Uint8Array; Response takes either as its own bytes.
  return new Response(NULL_BODY.has(status) ? null : new Uint8Array(row.body ?? []), { status, headers });
}

/**
 * Deletes up to `limit` keys whose retention has ended (lookups already ignore them), so that
 * stored responses, which can hold PHI, last no longer than the retention window. Returns how
 * many it deleted.
 */
export async function purgeExpiredIdempotencyKeys(q: Queryable, limit = 1000): Promise<number> {
  const rows = await q.execute(sql`
    DELETE FROM idempotency_keys WHERE (client_id, key) IN (
      SELECT client_id, key FROM idempotency_keys WHERE expires <= now() ORDER BY expires LIMIT ${limit})
    RETURNING 1`);
  return rows.length;
}

function errorSummary(error: unknown): { name: string; code?: string } {
  const code = (error as { code?: string }).code;
  return { name: (error as Error).name, ...(code ? { code } : {}) };
}
