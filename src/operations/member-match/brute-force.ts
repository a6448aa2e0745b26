import { createHmac } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../../db/connection.ts';
import { FhirError, outcome } from '../../fhir/errors.ts';
import { normalizeRecord } from '../../matching/normalize.ts';
import type { MatchQuery } from '../../matching/types.ts';
import type { Metrics } from '../../ops/metrics.ts';

/**
 * Brute-force guard (HRex mm-7): a client that keeps the demographics of one person and varies
 * the card (member, subscriber or payer ids) is guessing cards. Each $member-match records
 * (client, demographics key, card key, time) in match_attempts; more than `maxCards` different
 * cards for one client and demographics within the window are refused with 429. The guard runs
 * before matching, so whether it refuses says nothing about whether the person is a member.
 *
 * Refused attempts are recorded too: a client that keeps trying stays refused, and one that stops
 * for a window (Retry-After says how long) gets through again.
 */

export interface AttemptKeys {
  /** Keyed hash of the birth date, family name sound and first given initial. */
  demographics: string;
  /** Keyed hash of the member/subscriber ids and payers of the request. */
  card: string;
}

export interface AttemptLimits {
  /** Different cards one client may try for the same demographics within the window. */
  maxCards: number;
  windowSeconds: number;
}

export type AttemptVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/** Short keys are a wiring mistake (an empty buffer, a missing setting), not a choice. */
const MIN_HASH_KEY_BYTES = 32;
/** Bumped when what goes into a key changes: rows hashed the old way then stop counting, which only loosens the guard for one window. */
const KEY_VERSION = 'v1';

/**
 * The two keys of an attempt, as HMAC-SHA-256 (base64url) under `hashKey`, so match_attempts
 * holds no demographics or member ids. The caller supplies `hashKey`: at least 32 secret random
 * bytes, the same in every Baton process sharing the database and across restarts (a different
 * key counts the same person as someone else, which resets the guard). There is no table for
 * such a key, so where it comes from is the caller's choice.
 *
 * Demographics are only what the matcher cannot do without and a genuine retry does not change:
 * the birth date with day and month in ascending order (a swapped day and month still matches, so
 * it must not open a fresh count), the Double Metaphone code of the family name (Smith and Smyth,
 * accents, case, spaces and hyphens collapse) and the first letter of the first given name
 * (Jon and John count as one person). Gender, address and phone stay out: an attacker could vary
 * them freely without losing the match.
 *
 * The card is every member and subscriber id of the request (card and MemberPatient), compared
 * as the matcher compares them (no separators, case or leading zeros; dependent suffix however
 * written), plus the payer identifiers.
 */
export function attemptKeys(query: MatchQuery, hashKey: Uint8Array): AttemptKeys {
  if (hashKey.length < MIN_HASH_KEY_BYTES) throw new TypeError(`attemptKeys: the hash key must have at least ${MIN_HASH_KEY_BYTES} bytes`);
  const record = normalizeRecord(query);
  const name = record.names[0];
  const birth = record.birthDate;
  const monthDay = birth ? [birth.month, birth.day].filter((n) => n !== undefined).sort((a, b) => a - b) : [];
  const demographics = [birth ? [birth.year, ...monthDay].join('-') : '', name?.familyPhonetic[0] ?? '', name?.first.charAt(0) ?? ''];
  const ids = [...record.memberIds, ...record.subscriberIds].map((id) => (id.dependent === undefined ? id.base : `${id.base}*${id.dependent}`));
  const card = [[...new Set(ids)].sort().join(','), [...record.payers].sort().join(',')];
  return { demographics: keyedHash(hashKey, 'demographics', demographics), card: keyedHash(hashKey, 'card', card) };
}

function keyedHash(hashKey: Uint8Array, purpose: string, parts: string[]): string {
  // The purpose keeps a demographics key from ever equalling a card key; \u0000 cannot occur in the parts.
  return createHmac('sha256', hashKey).update([KEY_VERSION, purpose, ...parts].join('\u0000')).digest('base64url');
}

/** One in this many checks also sweeps expired rows of every client (rows of people never tried again). */
const SWEEP_EVERY = 64;
const SWEEP_BATCH = 1000;

/**
 * Records the attempt and says whether it may proceed: refused when the client has tried more
 * than `maxCards` different cards for these demographics within the window, this one included
 * (retrying a card already tried is not a new guess).
 *
 * Runs in a transaction of its own, committed whatever the match then answers: an attempt that
 * ends in 422 must still count. So call it outside any transaction of the caller (on PGlite a
 * transaction inside another would wait for it). Processes sharing the database serialize on a
 * transaction-scoped advisory lock per client and demographics, then count in a statement that
 * starts after the lock is held, so two of them cannot both let the (maxCards+1)th card through.
 * `now` is for tests; by default the database clock is used, so processes share one clock.
 */
export async function checkAttempt(db: Database, attempt: { clientId: string; keys: AttemptKeys }, limits: AttemptLimits, now?: Date): Promise<AttemptVerdict> {
  const { clientId, keys } = attempt;
  const clock = now?.toISOString() ?? null;
  const otherCards = await db.transaction(async (tx) => {
    // The demographics key has a fixed length and no '|', so the lock name is unambiguous whatever the client id holds.
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${`baton.match_attempts|${keys.demographics}|${clientId}`}, 0))`);
    // One row per card: this card's earlier rows and the expired rows of these demographics go,
    // this attempt is added. The SELECT sees the rows as they were before the statement, so it
    // filters out the expired ones and this card itself.
    return tx.execute<{ expires_in: number }>(sql`
      WITH clock AS (SELECT coalesce(${clock}::timestamptz, now()) AS t),
      pruned AS (
        DELETE FROM match_attempts USING clock
        WHERE client_id = ${clientId} AND demographics = ${keys.demographics}
          AND (card = ${keys.card} OR at <= clock.t - make_interval(secs => ${limits.windowSeconds}))
      ),
      recorded AS (INSERT INTO match_attempts (client_id, demographics, card, at) SELECT ${clientId}, ${keys.demographics}, ${keys.card}, t FROM clock)
      SELECT extract(epoch FROM max(at) + make_interval(secs => ${limits.windowSeconds}) - clock.t)::float8 AS expires_in
      FROM match_attempts, clock
      WHERE client_id = ${clientId} AND demographics = ${keys.demographics} AND card <> ${keys.card}
        AND at > clock.t - make_interval(secs => ${limits.windowSeconds})
      GROUP BY card, clock.t
      ORDER BY expires_in DESC`);
  });
  if (Math.random() * SWEEP_EVERY < 1) await sweepExpiredAttempts(db, limits.windowSeconds, now);
  if (otherCards.length + 1 <= limits.maxCards) return { allowed: true };
  // Retrying this card succeeds once at most maxCards - 1 other cards remain in the window,
  // that is when the maxCards-th most recently tried other card expires.
  const expiresIn = otherCards[limits.maxCards - 1].expires_in;
  return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(expiresIn)) };
}

/**
 * Deletes up to `limit` attempts older than the window, of any client: checkAttempt prunes the
 * demographics it checks, this removes those nobody asks about again. Returns how many went.
 */
export async function sweepExpiredAttempts(q: Queryable, windowSeconds: number, now?: Date, limit = SWEEP_BATCH): Promise<number> {
  const rows = await q.execute<{ deleted: number }>(sql`
    WITH swept AS (
      DELETE FROM match_attempts WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM match_attempts WHERE at <= coalesce(${now?.toISOString() ?? null}::timestamptz, now()) - make_interval(secs => ${windowSeconds}) LIMIT ${limit}
      ))
      RETURNING 1
    )
    SELECT count(*)::int AS deleted FROM swept`);
  return rows[0].deleted;
}

/** The 429 of a refused attempt: says when to retry and nothing about the person asked for. */
export function bruteForceRefusal(retryAfterSeconds: number): FhirError {
  return new FhirError(
    429,
    outcome('error', 'throttled', `Too many $member-match requests with different coverage for the same demographics; retry after ${retryAfterSeconds} seconds`),
    { 'Retry-After': String(retryAfterSeconds) },
  );
}

/**
 * checkAttempt for the operation: returns when the attempt may proceed; otherwise counts the
 * refusal in baton_member_match_throttled_total (the alert's signal) and throws the 429.
 */
export async function guardMatchAttempt(
  db: Database,
  attempt: { clientId: string; keys: AttemptKeys },
  limits: AttemptLimits,
  metrics: Pick<Metrics, 'memberMatchThrottled'>,
  now?: Date,
): Promise<void> {
  const verdict = await checkAttempt(db, attempt, limits, now);
  if (verdict.allowed) return;
  metrics.memberMatchThrottled.inc();
  throw bruteForceRefusal(verdict.retryAfterSeconds);
}
