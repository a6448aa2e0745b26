import { PARTNER_ERROR_CODES, type PartnerError } from './partner/types.ts';

/** Exponential backoff of one kind of failure: attempt n waits a random time up to min(capMs, baseMs × 2^(n−1)). */
export interface Backoff {
  baseMs: number;
  capMs: number;
}

/**
 * When a failed partner call is tried again. Pure data: the default below, overridden per
 * partner from configuration through parseRetryPolicy.
 */
export interface RetryPolicy extends Backoff {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** No retry may start later than this long after the first attempt. */
  budgetMs: number;
  /** Backoff per PartnerError code, e.g. longer for throttled or circuit-open. */
  byCode: Record<string, Partial<Backoff>>;
}

export interface AttemptTiming {
  /** 1-based: the attempt that just failed. */
  number: number;
  firstAttemptAtMs: number;
  nowMs: number;
}

export type RetryDecision = { retry: true; delayMs: number } | { retry: false; reason: 'non-retryable' | 'manual' | 'attempts-exhausted' | 'budget-exhausted' };

/**
 * Ten attempts within an hour, 1 s doubling to 5 min between them (on average half that: full
 * jitter). A partner throttling or tripping the breaker is given more room from the start; one
 * whose match awaits its own manual review is asked again in minutes, not seconds.
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 10,
  budgetMs: 60 * 60_000,
  baseMs: 1000,
  capMs: 5 * 60_000,
  byCode: {
    throttled: { baseMs: 5000 },
    'circuit-open': { baseMs: 10_000 },
    'under-review': { baseMs: 5 * 60_000, capMs: 30 * 60_000 },
  },
};

/**
 * Whether to try a failed call again, and after how long. Only retryable errors are retried,
 * at most maxAttempts in all. The delay is "full jitter" (random × the exponential ceiling), so
 * many callers that failed together do not come back together; the ceiling is also held to the
 * budget left, so a late attempt still fits. A Retry-After (or the breaker's time to half-open)
 * is a floor: the partner said not before then. If that floor ends past the budget, no retry.
 */
export function decideRetry(policy: RetryPolicy, attempt: AttemptTiming, error: PartnerError, random: () => number = Math.random): RetryDecision {
  if (error.errorClass === 'non-retryable') return { retry: false, reason: 'non-retryable' };
  if (error.errorClass === 'manual') return { retry: false, reason: 'manual' };
  if (attempt.number >= policy.maxAttempts) return { retry: false, reason: 'attempts-exhausted' };
  const remainingMs = attempt.firstAttemptAtMs + policy.budgetMs - attempt.nowMs;
  if (remainingMs <= 0) return { retry: false, reason: 'budget-exhausted' };
  const { baseMs, capMs } = { baseMs: policy.baseMs, capMs: policy.capMs, ...policy.byCode[error.code] };
  const ceilingMs = Math.min(capMs, baseMs * 2 ** (attempt.number - 1), remainingMs);
  const delayMs = Math.max(Math.floor(random() * ceilingMs), error.retryAfterMs ?? 0);
  if (delayMs > remainingMs) return { retry: false, reason: 'budget-exhausted' };
  return { retry: true, delayMs };
}

/** A retry policy in configuration that cannot be used; the message lists every problem. */
export class RetryPolicyError extends Error {
  override readonly name = 'RetryPolicyError';
  constructor(readonly problems: string[]) {
    super(`Invalid retry policy: ${problems.join('; ')}`);
  }
}

const POLICY_FIELDS = ['maxAttempts', 'budgetMs', 'baseMs', 'capMs', 'byCode'];
const BACKOFF_FIELDS = ['baseMs', 'capMs'];

/**
 * A partner's retry policy from configuration: JSON (text or parsed) whose fields override
 * `base` (by default DEFAULT_RETRY_POLICY); `byCode` entries override the base's entry for
 * that code field by field. Every field is a positive integer (milliseconds, or attempts), a
 * cap is at least its base, and codes are PartnerError codes; anything else throws
 * RetryPolicyError naming each problem.
 */
export function parseRetryPolicy(json: unknown, base: RetryPolicy = DEFAULT_RETRY_POLICY): RetryPolicy {
  let input = json;
  if (typeof input === 'string') {
    try {
      input = JSON.parse(input) as unknown;
    } catch {
      throw new RetryPolicyError(['it is not JSON']);
    }
  }
  if (!isObject(input)) throw new RetryPolicyError(['it must be a JSON object']);
  const problems: string[] = [];
  const unknownFields = Object.keys(input).filter((key) => !POLICY_FIELDS.includes(key));
  if (unknownFields.length > 0) problems.push(`unknown fields ${unknownFields.join(', ')} (known: ${POLICY_FIELDS.join(', ')})`);
  const integer = (value: unknown, path: string): number | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      problems.push(`${path} must be a positive integer`);
      return undefined;
    }
    return value;
  };
  const policy: RetryPolicy = {
    maxAttempts: integer(input.maxAttempts, 'maxAttempts') ?? base.maxAttempts,
    budgetMs: integer(input.budgetMs, 'budgetMs') ?? base.budgetMs,
    baseMs: integer(input.baseMs, 'baseMs') ?? base.baseMs,
    capMs: integer(input.capMs, 'capMs') ?? base.capMs,
    byCode: { ...base.byCode },
  };
  if (input.byCode !== undefined && !isObject(input.byCode)) problems.push('byCode must be an object of PartnerError codes to {baseMs, capMs}');
  for (const [code, override] of Object.entries(isObject(input.byCode) ? input.byCode : {})) {
    if (!(PARTNER_ERROR_CODES as readonly string[]).includes(code)) problems.push(`byCode.${code} is not a PartnerError code (${PARTNER_ERROR_CODES.join(', ')})`);
    if (!isObject(override)) {
      problems.push(`byCode.${code} must be an object with baseMs and/or capMs`);
      continue;
    }
    const unknownBackoff = Object.keys(override).filter((key) => !BACKOFF_FIELDS.includes(key));
    if (unknownBackoff.length > 0) problems.push(`byCode.${code} has unknown fields ${unknownBackoff.join(', ')}`);
    const baseMs = integer(override.baseMs, `byCode.${code}.baseMs`);
    const capMs = integer(override.capMs, `byCode.${code}.capMs`);
    policy.byCode[code] = { ...policy.byCode[code], ...(baseMs === undefined ? {} : { baseMs }), ...(capMs === undefined ? {} : { capMs }) };
  }
  if (policy.capMs < policy.baseMs) problems.push(`capMs (${policy.capMs}) must be at least baseMs (${policy.baseMs})`);
  for (const [code, override] of Object.entries(policy.byCode)) {
    const { baseMs, capMs } = { baseMs: policy.baseMs, capMs: policy.capMs, ...override };
    if (capMs < baseMs) problems.push(`byCode.${code}: capMs (${capMs}) must be at least baseMs (${baseMs})`);
  }
  if (problems.length > 0) throw new RetryPolicyError(problems);
  return policy;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
