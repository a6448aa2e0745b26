import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type Database } from '../../src/db/connection.ts';
import { FhirError } from '../../src/fhir/errors.ts';
import type { MatchQuery } from '../../src/matching/types.ts';
import {
  type AttemptKeys,
  attemptKeys,
  bruteForceRefusal,
  checkAttempt,
  guardMatchAttempt,
  sweepExpiredAttempts,
} from '../../src/operations/member-match/brute-force.ts';
import { createMetrics } from '../../src/ops/metrics.ts';
import { member, queryOf } from '../matching/members.ts';
import { startBaton, type TestBaton } from '../support/baton.ts';

const hashKey = randomBytes(32);
const margaret = queryOf(member('margaret'));
const keysOf = (overrides: Partial<MatchQuery>) => attemptKeys({ ...margaret, ...overrides }, hashKey);
const base = attemptKeys(margaret, hashKey);

describe('attempt keys', () => {
  it.each<[string, Partial<MatchQuery>]>([
    ['case, accents and spacing of the name', { names: [{ family: '  ÓKAFOR ', given: ['márgaret'] }] }],
    ['a family name spelled the way it sounds', { names: [{ family: 'Okaphor', given: ['Margaret'] }] }],
    ['another given name after the first, or none', { names: [{ family: 'Okafor', given: ['Margaret'] }] }],
    ['the first given name shortened', { names: [{ family: 'Okafor', given: ['Marg.', 'A.'] }] }],
    ['a title written before the given name', { names: [{ family: 'Okafor', given: ['Dr Margaret'] }] }],
    ['day and month exchanged', { birthDate: '1979-09-04' }],
    ['the birth date as a dateTime', { birthDate: '1979-04-09T00:00:00Z' }],
    ['another gender, address and phone', { gender: 'unknown', addresses: [{ postalCode: '10001' }], phones: [{ value: '212-555-0100' }] }],
  ])('gives the same demographics key despite %s', (_, overrides) => {
    expect(keysOf(overrides).demographics).toBe(base.demographics);
  });

  it.each<[string, Partial<MatchQuery>]>([
    ['another birth date', { birthDate: '1979-04-10' }],
    ['another birth year', { birthDate: '1980-04-09' }],
    ['another family name', { names: [{ family: 'Brown', given: ['Margaret'] }] }],
    ['another first given initial', { names: [{ family: 'Okafor', given: ['Ann', 'Margaret'] }] }],
  ])('gives another demographics key for %s', (_, overrides) => {
    expect(keysOf(overrides).demographics).not.toBe(base.demographics);
  });

  it.each<[string, Partial<MatchQuery>]>([
    ['the dependent suffix written with a star', { memberIds: [{ value: 'w123456789 *01' }] }],
    ['the dependent number in its own field', { memberIds: [{ value: 'W123456789', dependent: '01' }] }],
    ['separators and leading zeros', { memberIds: [{ value: '00-W12-345-6789-01' }], subscriberIds: [{ value: 'W 123 456 789' }] }],
    ['the ids in another order and role', { memberIds: [{ value: 'W123456789' }], subscriberIds: [{ value: 'W123456789-01' }] }],
    ['the payer NPI under its OID', { payers: [{ system: 'urn:oid:2.16.840.1.113883.4.6', value: '9876543210' }] }],
    ['another name and birth date', { names: [{ family: 'Brown', given: ['Ann'] }], birthDate: '1990-01-01' }],
  ])('gives the same card key despite %s', (_, overrides) => {
    expect(keysOf(overrides).card).toBe(base.card);
  });

  it.each<[string, Partial<MatchQuery>]>([
    ['another member id', { memberIds: [{ value: 'W123456780-01' }] }],
    ['another dependent on the same card', { memberIds: [{ value: 'W123456789-02' }] }],
    ['another subscriber id', { subscriberIds: [{ value: 'W987654321' }] }],
    ['another payer', { payers: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' }] }],
    ['no ids at all', { memberIds: [], subscriberIds: [] }],
  ])('gives another card key for %s', (_, overrides) => {
    expect(keysOf(overrides).card).not.toBe(base.card);
  });

  it('holds no demographics or ids: keyed hashes that change with the key', () => {
    for (const key of [base.demographics, base.card]) expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(base.demographics).not.toBe(base.card);
    const other = attemptKeys(margaret, randomBytes(32));
    expect(other.demographics).not.toBe(base.demographics);
    expect(other.card).not.toBe(base.card);
  });

  it('refuses a hash key shorter than 32 bytes', () => {
    expect(() => attemptKeys(margaret, Buffer.alloc(0))).toThrow(TypeError);
    expect(() => attemptKeys(margaret, randomBytes(31))).toThrow(TypeError);
  });
});

describe('brute-force refusal', () => {
  it('is a 429 throttled outcome with Retry-After and nothing about the person', () => {
    const error = bruteForceRefusal(120);
    expect(error).toBeInstanceOf(FhirError);
    expect(error.status).toBe(429);
    expect(error.headers).toEqual({ 'Retry-After': '120' });
    expect(error.outcome.issue?.[0]).toMatchObject({ severity: 'error', code: 'throttled' });
    expect(JSON.stringify(error.outcome)).not.toMatch(/okafor|margaret|1979|W123456789/i);
  });
});

describe('attempt check', () => {
  let baton: TestBaton;
  /** A second connection pool on the same database: another Baton process, on PostgreSQL. */
  let other: Database;
  beforeAll(async () => {
    baton = await startBaton();
    other = baton.databaseUrl ? await connectDatabase({ databaseUrl: baton.databaseUrl, dataDir: 'memory://', maxConnections: 4 }) : baton.db;
  });
  afterAll(async () => {
    if (other !== baton.db) await other.close();
    await baton.close();
  });

  const limits = { maxCards: 3, windowSeconds: 3600 };
  const T = Date.parse('2026-03-01T12:00:00Z');
  const at = (seconds: number) => new Date(T + seconds * 1000);
  const person = (name: string): string => attemptKeys({ ...margaret, names: [{ family: name, given: ['Margaret'] }] }, hashKey).demographics;
  const keys = (demographics: string, card: string): AttemptKeys => ({ demographics, card: `card-${card}` });
  const check = (clientId: string, demographics: string, card: string, seconds: number, db: Database = baton.db) =>
    checkAttempt(db, { clientId, keys: keys(demographics, card) }, limits, at(seconds));
  const rowsOf = async (clientId: string) =>
    (await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM match_attempts WHERE client_id = ${clientId}`))[0].n;

  it('allows maxCards different cards, then refuses the next with the time until the oldest card leaves the window', async () => {
    const d = person('Limit');
    expect(await check('limit', d, '1', 0)).toEqual({ allowed: true });
    expect(await check('limit', d, '2', 10)).toEqual({ allowed: true });
    expect(await check('limit', d, '3', 20)).toEqual({ allowed: true });
    expect(await check('limit', d, '4', 30)).toEqual({ allowed: false, retryAfterSeconds: 3570 });
    expect(await check('limit', d, '4', 3599)).toEqual({ allowed: false, retryAfterSeconds: 1 });
    // Card 1 has left the window: card 4 is the third card of the window.
    expect(await check('limit', d, '4', 3600)).toEqual({ allowed: true });
    expect(await check('limit', d, '5', 3601)).toEqual({ allowed: false, retryAfterSeconds: 9 });
  });

  it('allows the same card retried any number of times, keeping one row per card', async () => {
    const d = person('Retry');
    for (const card of ['1', '2', '3']) expect(await check('retry', d, card, 0)).toEqual({ allowed: true });
    for (let i = 1; i <= 10; i++) expect(await check('retry', d, String((i % 3) + 1), i * 60)).toEqual({ allowed: true });
    expect(await rowsOf('retry')).toBe(3);
    expect((await check('retry', d, '4', 700)).allowed).toBe(false);
  });

  it('counts each client and each person apart', async () => {
    const d = person('Apart');
    for (const card of ['1', '2', '3']) await check('apart-a', d, card, 0);
    expect((await check('apart-a', d, '4', 1)).allowed).toBe(false);
    expect(await check('apart-b', d, '4', 1)).toEqual({ allowed: true });
    expect(await check('apart-a', person('Apartment'), '4', 1)).toEqual({ allowed: true });
  });

  it('keeps refusing a client that keeps trying new cards, and lets it through a window after it stops', async () => {
    const d = person('Persistent');
    for (const card of ['1', '2', '3']) await check('persistent', d, card, 0);
    // A new card every 10 minutes for three windows: each refused attempt counts.
    for (let i = 1; i <= 18; i++) expect((await check('persistent', d, `new-${i}`, i * 600)).allowed).toBe(false);
    const refused = await check('persistent', d, 'again', 18 * 600 + 1);
    // Retrying is allowed once only two other cards remain: when new-16 (tried at 9600) leaves the window.
    expect(refused).toEqual({ allowed: false, retryAfterSeconds: 9600 + 3600 - (18 * 600 + 1) });
    expect(await check('persistent', d, 'again', 9600 + 3600 - 1)).toMatchObject({ allowed: false });
    expect(await check('persistent', d, 'again', 9600 + 3600)).toEqual({ allowed: true });
  });

  it('forgets attempts once the window has passed, and prunes them', async () => {
    const d = person('Expiry');
    for (const card of ['1', '2', '3']) await check('expiry', d, card, 0);
    expect((await check('expiry', d, '4', 100)).allowed).toBe(false);
    expect(await check('expiry', d, '5', 100 + 3600)).toEqual({ allowed: true });
    expect(await rowsOf('expiry')).toBe(1);
  });

  it('lets exactly one of two processes checking at once through for the last card', async () => {
    for (let round = 0; round < 20; round++) {
      const d = `race-${round}`;
      await check('race', d, '1', 0);
      await check('race', d, '2', 0);
      const verdicts = await Promise.all([check('race', d, `3a`, 1, baton.db), check('race', d, `3b`, 1, other)]);
      expect(verdicts.filter((v) => v.allowed)).toHaveLength(1);
    }
  });

  it('sweeps expired attempts of every client, in batches, and keeps the others', async () => {
    const insert = (clientId: string, demographics: string, seconds: number) =>
      baton.db.execute(sql`INSERT INTO match_attempts (client_id, demographics, card, at) VALUES (${clientId}, ${demographics}, 'card-1', ${at(seconds).toISOString()}::timestamptz)`);
    await insert('sweep-old', person('Sweep'), -7200);
    await insert('sweep-old', person('Sweep2'), -3600);
    await insert('sweep-new', person('Sweep'), -3599);
    expect(await sweepExpiredAttempts(baton.db, 3600, at(0), 1)).toBe(1);
    expect(await rowsOf('sweep-old')).toBe(1);
    expect(await sweepExpiredAttempts(baton.db, 3600, at(0))).toBe(1);
    expect(await sweepExpiredAttempts(baton.db, 3600, at(0))).toBe(0);
    expect(await rowsOf('sweep-old')).toBe(0);
    expect(await rowsOf('sweep-new')).toBe(1);
  });

  it('guardMatchAttempt throws the 429 and counts it in baton_member_match_throttled_total', async () => {
    const metrics = createMetrics();
    const d = person('Guard');
    const guard = (card: string, seconds: number) =>
      guardMatchAttempt(baton.db, { clientId: 'guard', keys: keys(d, card) }, { maxCards: 1, windowSeconds: 60 }, metrics, at(seconds));
    await expect(guard('1', 0)).resolves.toBeUndefined();
    expect((await metrics.memberMatchThrottled.get()).values[0].value).toBe(0);
    const error = await guard('2', 15).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FhirError);
    expect((error as FhirError).status).toBe(429);
    expect((error as FhirError).headers['Retry-After']).toBe('45');
    expect((await metrics.memberMatchThrottled.get()).values[0].value).toBe(1);
    expect(await metrics.registry.metrics()).toContain('baton_member_match_throttled_total 1');
  });
});
