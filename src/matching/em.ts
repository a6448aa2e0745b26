import type { CandidateComparison } from './compare.ts';
import { FIELD_LEVELS, MATCH_FIELDS, type MatchField } from './fields.ts';
import { type LevelProbabilities, type MatchingPolicy, parsePolicy } from './policy.ts';

/**
 * Expectation-maximisation for Fellegi-Sunter (Winkler 1988): estimates m, u and the share of
 * true matches from comparison vectors of unlabelled candidate pairs (what blocking returns),
 * assuming fields independent given match status. A vector lists one level per field; missing
 * fields are left out of both the likelihood and the estimates.
 */
export type ComparisonVector = Partial<Record<MatchField, string>>;

export type FieldEstimates = Record<MatchField, Record<string, LevelProbabilities>>;

export interface EmOptions {
  /** Starting m and u (usually the policy in force). */
  initial: FieldEstimates;
  /** Starting share of pairs that are true matches. */
  prior: number;
  maxIterations?: number;
  /** Stop when no probability moves by more than this. */
  tolerance?: number;
  /**
   * Fields left out of the estimation: not in the likelihood, m and u kept as given. Leave out
   * the fields the pairs' blocking key is built from (every blocked pair agrees on them by
   * construction), and fields a household shares when households dominate the pairs.
   */
  exclude?: readonly MatchField[];
  /**
   * `m`: keep every u as given (measured on random pairs, see uFromRandomPairs) and estimate m
   * only. Blocked pairs agree far more often than random ones, so u estimated on them is not
   * the u the weights need.
   */
  estimate?: 'm' | 'm-and-u';
}

export interface EmEstimate {
  fields: FieldEstimates;
  prior: number;
  iterations: number;
  converged: boolean;
  logLikelihood: number;
}

/** No level's probability drops to 0: an unseen level must not make a weight infinite. */
const FLOOR = 1e-9;

export function comparisonVector(comparison: CandidateComparison): ComparisonVector {
  const vector: ComparisonVector = {};
  for (const field of MATCH_FIELDS) {
    const level = comparison.fields[field].level;
    if (level !== 'missing') vector[field] = level;
  }
  return vector;
}

export function estimateMU(vectors: readonly ComparisonVector[], options: EmOptions): EmEstimate {
  const excluded = new Set(options.exclude ?? []);
  const patterns = countPatterns(vectors.map((vector) => Object.fromEntries(Object.entries(vector).filter(([field]) => !excluded.has(field as MatchField)))));
  let fields = cloneEstimates(options.initial);
  let prior = options.prior;
  const maxIterations = options.maxIterations ?? 200;
  const tolerance = options.tolerance ?? 1e-6;
  let logLikelihood = -Infinity;

  for (let iteration = 1; iteration <= maxIterations; iteration++) {
    // E-step: posterior probability that each pattern is a match.
    const matchCounts = emptyCounts();
    const nonMatchCounts = emptyCounts();
    let expectedMatches = 0;
    let total = 0;
    logLikelihood = 0;
    for (const { vector, count } of patterns) {
      const logMatch = Math.log(prior) + logProbability(vector, fields, 'm');
      const logNonMatch = Math.log(1 - prior) + logProbability(vector, fields, 'u');
      const logEvidence = logSumExp(logMatch, logNonMatch);
      const posterior = Math.exp(logMatch - logEvidence);
      logLikelihood += count * logEvidence;
      expectedMatches += count * posterior;
      total += count;
      for (const [field, level] of Object.entries(vector) as [MatchField, string][]) {
        matchCounts[field][level] = (matchCounts[field][level] ?? 0) + count * posterior;
        nonMatchCounts[field][level] = (nonMatchCounts[field][level] ?? 0) + count * (1 - posterior);
      }
    }
    // M-step: m and u as the posterior-weighted level frequencies, the prior as the mean posterior.
    const next = emptyEstimates();
    let largestChange = 0;
    for (const field of MATCH_FIELDS) {
      if (excluded.has(field)) {
        next[field] = fields[field];
        continue;
      }
      const m = distribution(field, matchCounts[field], fields[field], 'm');
      const u = options.estimate === 'm' ? Object.fromEntries(Object.entries(fields[field]).map(([level, p]) => [level, p.u])) : distribution(field, nonMatchCounts[field], fields[field], 'u');
      for (const level of FIELD_LEVELS[field]) {
        next[field][level] = { m: m[level], u: u[level] };
        largestChange = Math.max(largestChange, Math.abs(m[level] - fields[field][level].m), Math.abs(u[level] - fields[field][level].u));
      }
    }
    const nextPrior = Math.min(1 - FLOOR, Math.max(FLOOR, expectedMatches / Math.max(total, 1)));
    largestChange = Math.max(largestChange, Math.abs(nextPrior - prior));
    fields = next;
    prior = nextPrior;
    if (largestChange < tolerance) return { fields, prior, iterations: iteration, converged: true, logLikelihood };
  }
  return { fields, prior, iterations: maxIterations, converged: false, logLikelihood };
}

/**
 * u measured on random pairs of records (almost all of them different people): each level's share
 * among the pairs where the field is present, floored. Fields absent from every pair keep
 * `initial`'s values.
 */
export function uFromRandomPairs(vectors: readonly ComparisonVector[], initial: FieldEstimates): FieldEstimates {
  const counts = emptyCounts();
  for (const vector of vectors) {
    for (const [field, level] of Object.entries(vector) as [MatchField, string][]) {
      assertLevel(field, level);
      counts[field][level] = (counts[field][level] ?? 0) + 1;
    }
  }
  const estimates = cloneEstimates(initial);
  for (const field of MATCH_FIELDS) {
    const u = distribution(field, counts[field], initial[field], 'u');
    for (const level of FIELD_LEVELS[field]) estimates[field][level].u = u[level];
  }
  return estimates;
}

/** The policy with m and u replaced by an estimate, as the next version (validated). */
export function policyWithEstimates(policy: MatchingPolicy, estimate: EmEstimate): MatchingPolicy {
  const fields = Object.fromEntries(MATCH_FIELDS.map((field) => [field, { levels: estimate.fields[field] }]));
  return parsePolicy({ ...policy, version: policy.version + 1, fields });
}

export function estimatesOf(policy: MatchingPolicy): FieldEstimates {
  return cloneEstimates(Object.fromEntries(MATCH_FIELDS.map((field) => [field, policy.fields[field].levels])) as FieldEstimates);
}

function logProbability(vector: ComparisonVector, fields: FieldEstimates, which: 'm' | 'u'): number {
  let sum = 0;
  for (const [field, level] of Object.entries(vector) as [MatchField, string][]) {
    assertLevel(field, level);
    sum += Math.log(fields[field][level][which]);
  }
  return sum;
}

function assertLevel(field: string, level: string): void {
  const levels: readonly string[] | undefined = (FIELD_LEVELS as Record<string, readonly string[]>)[field];
  if (!levels) throw new RangeError(`comparison vector: "${field}" is not a field`);
  if (!levels.includes(level)) throw new RangeError(`comparison vector: "${level}" is not a level of ${field}`);
}

/** Normalized level frequencies, floored; a field never observed keeps its previous values. */
function distribution(field: MatchField, counts: Record<string, number>, previous: Record<string, LevelProbabilities>, which: 'm' | 'u'): Record<string, number> {
  const levels: readonly string[] = FIELD_LEVELS[field];
  const total = levels.reduce((sum, level) => sum + (counts[level] ?? 0), 0);
  if (total <= 0) return Object.fromEntries(levels.map((level) => [level, previous[level][which]]));
  const floored = levels.map((level) => Math.max(FLOOR, (counts[level] ?? 0) / total));
  const norm = floored.reduce((sum, value) => sum + value, 0);
  return Object.fromEntries(levels.map((level, i) => [level, floored[i] / norm]));
}

function countPatterns(vectors: readonly ComparisonVector[]): { vector: ComparisonVector; count: number }[] {
  const patterns = new Map<string, { vector: ComparisonVector; count: number }>();
  for (const vector of vectors) {
    const key = MATCH_FIELDS.map((field) => vector[field] ?? '').join('|');
    const pattern = patterns.get(key);
    if (pattern) pattern.count++;
    else patterns.set(key, { vector, count: 1 });
  }
  return [...patterns.values()];
}

function logSumExp(a: number, b: number): number {
  const max = Math.max(a, b);
  return max + Math.log(Math.exp(a - max) + Math.exp(b - max));
}

function emptyCounts(): Record<MatchField, Record<string, number>> {
  return Object.fromEntries(MATCH_FIELDS.map((field) => [field, {}])) as Record<MatchField, Record<string, number>>;
}

function emptyEstimates(): FieldEstimates {
  return Object.fromEntries(MATCH_FIELDS.map((field) => [field, {}])) as FieldEstimates;
}

function cloneEstimates(estimates: FieldEstimates): FieldEstimates {
  return Object.fromEntries(
    MATCH_FIELDS.map((field) => [field, Object.fromEntries(FIELD_LEVELS[field].map((level) => [level, { ...estimates[field][level] }]))]),
  ) as FieldEstimates;
}
