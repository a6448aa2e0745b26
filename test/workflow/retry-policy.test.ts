import { describe, expect, it } from 'vitest';
import { PartnerError } from '../../src/workflow/partner/types.ts';
import { seeded } from '../support/fake-partner.ts';
import { DEFAULT_RETRY_POLICY, type RetryPolicy, RetryPolicyError, decideRetry, parseRetryPolicy } from '../../src/workflow/retry-policy.ts';

const POLICY: RetryPolicy = { maxAttempts: 5, budgetMs: 60_000, baseMs: 1000, capMs: 8000, byCode: { throttled: { baseMs: 4000 } } };
const unavailable = new PartnerError('retryable', 'unavailable', 'partner answered 503', { status: 503 });
const at = (number: number, elapsedMs = 0) => ({ number, firstAttemptAtMs: 1_000_000, nowMs: 1_000_000 + elapsedMs });
const always = (value: number) => () => value;

describe('decideRetry', () => {
  it.each([
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [4, 8000],
  ])('the ceiling of attempt %i is min(cap, base × 2^(n−1)) = %i ms', (number, ceiling) => {
    expect(decideRetry(POLICY, at(number), unavailable, always(0.999999))).toEqual({ retry: true, delayMs: ceiling - 1 });
    expect(decideRetry(POLICY, at(number), unavailable, always(0))).toEqual({ retry: true, delayMs: 0 });
  });

  it('never waits longer than the cap', () => {
    const patient: RetryPolicy = { ...POLICY, maxAttempts: 20, budgetMs: 10_000_000 };
    expect(decideRetry(patient, at(12), unavailable, always(0.5))).toEqual({ retry: true, delayMs: 4000 });
  });

  it('spreads delays over the whole range with full jitter (seeded)', () => {
    const random = seeded(42);
    const delays = Array.from({ length: 200 }, () => {
      const decision = decideRetry(POLICY, at(4), unavailable, random);
      if (!decision.retry) throw new Error('expected a retry');
      return decision.delayMs;
    });
    expect(Math.min(...delays)).toBeLessThan(800);
    expect(Math.max(...delays)).toBeGreaterThan(7200);
    expect(new Set(delays).size).toBeGreaterThan(150);
    // The same seed gives the same delays.
    const again = seeded(42);
    expect(decideRetry(POLICY, at(4), unavailable, again)).toEqual({ retry: true, delayMs: delays[0] });
  });

  it('uses the override of the error code', () => {
    const throttled = new PartnerError('retryable', 'throttled', 'partner answered 429', { status: 429 });
    expect(decideRetry(POLICY, at(1), throttled, always(0.5))).toEqual({ retry: true, delayMs: 2000 });
    // The cap of the policy still holds for the code that overrides only the base.
    expect(decideRetry(POLICY, at(3), throttled, always(0.999999))).toEqual({ retry: true, delayMs: 7999 });
  });

  it('waits at least the Retry-After the partner asked for', () => {
    const throttled = new PartnerError('retryable', 'throttled', 'partner answered 429', { status: 429, retryAfterMs: 30_000 });
    expect(decideRetry(POLICY, at(1), throttled, always(0.5))).toEqual({ retry: true, delayMs: 30_000 });
  });

  it('gives up when the Retry-After ends past the budget', () => {
    const throttled = new PartnerError('retryable', 'throttled', 'partner answered 429', { status: 429, retryAfterMs: 30_000 });
    expect(decideRetry(POLICY, at(2, 40_000), throttled, always(0.5))).toEqual({ retry: false, reason: 'budget-exhausted' });
  });

  it('holds the jitter range to the budget left, so a late attempt still fits', () => {
    expect(decideRetry(POLICY, at(4, 59_000), unavailable, always(0.999999))).toEqual({ retry: true, delayMs: 999 });
  });

  it('gives up once the budget is spent', () => {
    expect(decideRetry(POLICY, at(2, 60_000), unavailable, always(0))).toEqual({ retry: false, reason: 'budget-exhausted' });
  });

  it('gives up after maxAttempts', () => {
    expect(decideRetry(POLICY, at(4), unavailable, always(0))).toMatchObject({ retry: true });
    expect(decideRetry(POLICY, at(5), unavailable, always(0))).toEqual({ retry: false, reason: 'attempts-exhausted' });
  });

  it.each([
    ['non-retryable', new PartnerError('non-retryable', 'no-match', 'no unique member', { status: 422 })],
    ['manual', new PartnerError('manual', 'ambiguous', 'several members', { status: 422 })],
  ] as const)('never retries a %s error', (reason, error) => {
    expect(decideRetry(POLICY, at(1), error, always(0))).toEqual({ retry: false, reason });
  });

  it('retries by default with more room for throttling and the breaker', () => {
    const circuitOpen = new PartnerError('retryable', 'circuit-open', 'circuit open', { retryAfterMs: 12_000 });
    expect(decideRetry(DEFAULT_RETRY_POLICY, at(1), circuitOpen, always(0))).toEqual({ retry: true, delayMs: 12_000 });
    expect(decideRetry(DEFAULT_RETRY_POLICY, at(1), circuitOpen, always(0.999999))).toEqual({ retry: true, delayMs: 12_000 });
    expect(decideRetry(DEFAULT_RETRY_POLICY, at(2), circuitOpen, always(0.999999))).toEqual({ retry: true, delayMs: 19_999 });
  });
});

describe('parseRetryPolicy', () => {
  it('overrides the default field by field, from text or parsed JSON', () => {
    const policy = parseRetryPolicy('{"maxAttempts": 3, "byCode": {"throttled": {"capMs": 600000}, "timeout": {"baseMs": 2000}}}');
    expect(policy).toEqual({
      ...DEFAULT_RETRY_POLICY,
      maxAttempts: 3,
      byCode: { ...DEFAULT_RETRY_POLICY.byCode, throttled: { baseMs: 5000, capMs: 600_000 }, timeout: { baseMs: 2000 } },
    });
    expect(parseRetryPolicy({ budgetMs: 5000 }, POLICY)).toEqual({ ...POLICY, budgetMs: 5000 });
  });

  it('leaves the base policy unchanged', () => {
    parseRetryPolicy({ byCode: { throttled: { baseMs: 1 } } });
    expect(DEFAULT_RETRY_POLICY.byCode.throttled).toEqual({ baseMs: 5000 });
  });

  it.each([
    ['{maxAttempts: 3}', 'it is not JSON'],
    ['[1]', 'it must be a JSON object'],
    [{ maxAttempts: 0 }, 'maxAttempts must be a positive integer'],
    [{ budgetMs: 1.5 }, 'budgetMs must be a positive integer'],
    [{ baseMs: '1000' }, 'baseMs must be a positive integer'],
    [{ retries: 3 }, 'unknown fields retries'],
    [{ baseMs: 10_000, capMs: 5000 }, 'capMs (5000) must be at least baseMs (10000)'],
    [{ byCode: { throttle: { baseMs: 100 } } }, 'byCode.throttle is not a PartnerError code'],
    [{ byCode: { throttled: 100 } }, 'byCode.throttled must be an object'],
    [{ byCode: { throttled: { base: 100 } } }, 'byCode.throttled has unknown fields base'],
    [{ byCode: { timeout: { baseMs: 600_000 } } }, 'byCode.timeout: capMs (300000) must be at least baseMs (600000)'],
    [{ byCode: [] }, 'byCode must be an object'],
  ])('refuses %j: %s', (input, problem) => {
    expect(() => parseRetryPolicy(input)).toThrow(RetryPolicyError);
    expect(() => parseRetryPolicy(input)).toThrow(problem);
  });

  it('names every problem at once', () => {
    try {
      parseRetryPolicy({ maxAttempts: -1, budgetMs: 0 });
      expect.unreachable();
    } catch (error) {
      expect((error as RetryPolicyError).problems).toEqual(['maxAttempts must be a positive integer', 'budgetMs must be a positive integer']);
    }
  });
});
