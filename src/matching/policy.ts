import policyV2 from '../../config/matching/policy-v2.json' with { type: 'json' };
import { FIELD_LEVELS, type FieldLevel, MATCH_FIELDS, type MatchField, TERM_FREQUENCY_FIELDS, type TermFrequencyField } from './fields.ts';
import { VETO_RULES, type VetoRule } from './vetoes.ts';

/**
 * The matching policy: everything that tunes identity resolution, versioned as data
 * (config/matching/policy-v*.json, loaded into the control plane). Every decision names the
 * policy id and version it was made under.
 */
export interface MatchingPolicy {
  id: string;
  version: number;
  description?: string;
  comparison: ComparisonSettings;
  /** Fellegi-Sunter m (P(level | same person)) and u (P(level | different people)) per field and level. */
  fields: { [F in MatchField]: { levels: Record<FieldLevel<F>, LevelProbabilities> } };
  termFrequency: Partial<Record<TermFrequencyField, TermFrequencyPolicy>>;
  vetoes: Record<VetoRule, VetoEffect>;
  useCases: Record<string, UseCasePolicy>;
}

export interface LevelProbabilities {
  m: number;
  u: number;
}

export interface ComparisonSettings {
  /** Jaro-Winkler similarity from which two names are `jw-high`, and from which `jw-mid`. */
  nameJaroWinklerHigh: number;
  nameJaroWinklerMid: number;
  /** Jaro-Winkler similarity of two streets (same house number) from which an address is `street`. */
  streetJaroWinkler: number;
  /** Birth dates at most this many days apart are `near`. */
  birthDateNearDays: number;
}

/**
 * Term-frequency adjustment: an exact agreement on a value shared by a share `f` of members is
 * worth log2(u / f) bits more (less, when the value is common), with f at least
 * `minFrequency` and the gain at most `maxBoost` bits.
 */
export interface TermFrequencyPolicy {
  levels: string[];
  minFrequency: number;
  maxBoost: number;
}

/** `exclude`: the candidate is out of the decision. `review`: it can reach manual review, never a match. */
export type VetoEffect = 'exclude' | 'review';

export interface UseCasePolicy {
  description?: string;
  /** Score (bits) from which a candidate may be matched automatically. */
  autoThreshold: number;
  /** Score from which a candidate goes to manual review. */
  reviewThreshold: number;
  /** Bits by which a match must lead every other candidate still in the decision. */
  margin: number;
  /** Whether exact agreement of identifier, names and birth date matches regardless of the threshold. */
  deterministic: boolean;
}

export class PolicyError extends Error {
  override name = 'PolicyError';
  constructor(readonly problems: string[]) {
    super(`invalid matching policy: ${problems.join('; ')}`);
  }
}

/** The weight of a level in bits: log2(m / u). */
export function levelWeight(probabilities: LevelProbabilities): number {
  return Math.log2(probabilities.m / probabilities.u);
}

export function useCasePolicy(policy: MatchingPolicy, useCase: string): UseCasePolicy {
  const found = Object.hasOwn(policy.useCases, useCase) ? policy.useCases[useCase] : undefined;
  if (!found) throw new PolicyError([`use case "${useCase}" is not defined (defined: ${Object.keys(policy.useCases).join(', ')})`]);
  return found;
}

const SUM_TOLERANCE = 1e-6;
const COMPARISON_KEYS = ['nameJaroWinklerHigh', 'nameJaroWinklerMid', 'streetJaroWinkler', 'birthDateNearDays'] as const;

/**
 * Validates a policy read from JSON and returns it typed; every problem found is listed in the
 * PolicyError, with its path, so a bad edit is refused before it can decide anything.
 */
export function parsePolicy(value: unknown): MatchingPolicy {
  const problems: string[] = [];
  const problem = (path: string, message: string) => problems.push(`${path}: ${message}`);
  if (!isRecord(value)) throw new PolicyError(['policy: must be an object']);

  onlyKeys(value, ['id', 'version', 'description', 'comparison', 'fields', 'termFrequency', 'vetoes', 'useCases'], 'policy', problem);
  if (typeof value.id !== 'string' || value.id.trim() === '') problem('id', 'must be a non-empty string');
  if (!Number.isInteger(value.version) || (value.version as number) < 1) problem('version', 'must be an integer ≥ 1');
  if (value.description !== undefined && typeof value.description !== 'string') problem('description', 'must be a string');

  checkComparison(value.comparison, problem);
  checkFields(value.fields, problem);
  checkTermFrequency(value.termFrequency, problem);
  checkVetoes(value.vetoes, problem);
  checkUseCases(value.useCases, problem);

  if (problems.length > 0) throw new PolicyError(problems);
  return { ...value, vetoes: { ...LATER_VETO_DEFAULTS, ...(value.vetoes as object) } } as unknown as MatchingPolicy;
}

type Report = (path: string, message: string) => void;

function checkComparison(comparison: unknown, problem: Report): void {
  if (!isRecord(comparison)) return problem('comparison', 'must be an object');
  onlyKeys(comparison, COMPARISON_KEYS, 'comparison', problem);
  for (const key of ['nameJaroWinklerHigh', 'nameJaroWinklerMid', 'streetJaroWinkler'] as const) {
    if (!isNumber(comparison[key]) || comparison[key] <= 0 || comparison[key] > 1) problem(`comparison.${key}`, 'must be a similarity in (0, 1]');
  }
  if (isNumber(comparison.nameJaroWinklerHigh) && isNumber(comparison.nameJaroWinklerMid) && comparison.nameJaroWinklerMid >= comparison.nameJaroWinklerHigh) {
    problem('comparison.nameJaroWinklerMid', 'must be below nameJaroWinklerHigh');
  }
  if (!Number.isInteger(comparison.birthDateNearDays) || (comparison.birthDateNearDays as number) < 1) problem('comparison.birthDateNearDays', 'must be an integer ≥ 1');
}

function checkFields(fields: unknown, problem: Report): void {
  if (!isRecord(fields)) return problem('fields', 'must be an object');
  onlyKeys(fields, MATCH_FIELDS, 'fields', problem);
  for (const field of MATCH_FIELDS) {
    const path = `fields.${field}`;
    const fieldPolicy = fields[field];
    if (!isRecord(fieldPolicy) || !isRecord(fieldPolicy.levels)) {
      problem(path, 'must be an object with "levels"');
      continue;
    }
    onlyKeys(fieldPolicy, ['levels'], path, problem);
    const levels = fieldPolicy.levels;
    const expected: readonly string[] = FIELD_LEVELS[field];
    onlyKeys(levels, expected, `${path}.levels`, problem);
    let mSum = 0;
    let uSum = 0;
    let complete = true;
    for (const level of expected) {
      const probabilities = levels[level];
      if (!isRecord(probabilities) || !isProbability(probabilities.m) || !isProbability(probabilities.u)) {
        problem(`${path}.levels.${level}`, 'must have m and u in (0, 1]');
        complete = false;
        continue;
      }
      onlyKeys(probabilities, ['m', 'u'], `${path}.levels.${level}`, problem);
      mSum += probabilities.m;
      uSum += probabilities.u;
    }
    // Each comparison lands on exactly one level, so m (and u) over the levels are distributions.
    if (complete && Math.abs(mSum - 1) > SUM_TOLERANCE) problem(`${path}.levels`, `m must sum to 1 over the levels (sums to ${mSum})`);
    if (complete && Math.abs(uSum - 1) > SUM_TOLERANCE) problem(`${path}.levels`, `u must sum to 1 over the levels (sums to ${uSum})`);
  }
}

function checkTermFrequency(termFrequency: unknown, problem: Report): void {
  if (!isRecord(termFrequency)) return problem('termFrequency', 'must be an object');
  onlyKeys(termFrequency, TERM_FREQUENCY_FIELDS, 'termFrequency', problem);
  for (const field of TERM_FREQUENCY_FIELDS) {
    const settings = termFrequency[field];
    if (settings === undefined) continue;
    const path = `termFrequency.${field}`;
    if (!isRecord(settings)) {
      problem(path, 'must be an object');
      continue;
    }
    onlyKeys(settings, ['levels', 'minFrequency', 'maxBoost'], path, problem);
    const levels: readonly string[] = FIELD_LEVELS[field];
    if (!Array.isArray(settings.levels) || settings.levels.some((level) => !levels.includes(level as string))) problem(`${path}.levels`, `must list levels of ${field}`);
    if (!isProbability(settings.minFrequency)) problem(`${path}.minFrequency`, 'must be in (0, 1]');
    if (!isNumber(settings.maxBoost) || settings.maxBoost < 0) problem(`${path}.maxBoost`, 'must be a number ≥ 0');
  }
}

/**
 * Veto rules added after policy version 1, with the effect they take in a policy written before
 * them: that policy stays valid, and the rule holds candidates for review.
 */
export const LATER_VETO_DEFAULTS: Partial<Record<VetoRule, VetoEffect>> = { 'multiple-birth': 'review' };

function checkVetoes(vetoes: unknown, problem: Report): void {
  if (!isRecord(vetoes)) return problem('vetoes', 'must be an object');
  onlyKeys(vetoes, VETO_RULES, 'vetoes', problem);
  for (const rule of VETO_RULES) {
    const effect = vetoes[rule] ?? LATER_VETO_DEFAULTS[rule];
    if (effect !== 'exclude' && effect !== 'review') problem(`vetoes.${rule}`, 'must be "exclude" or "review"');
  }
}

function checkUseCases(useCases: unknown, problem: Report): void {
  if (!isRecord(useCases) || Object.keys(useCases).length === 0) return problem('useCases', 'must define at least one use case');
  for (const [name, useCase] of Object.entries(useCases)) {
    const path = `useCases.${name}`;
    if (!isRecord(useCase)) {
      problem(path, 'must be an object');
      continue;
    }
    onlyKeys(useCase, ['description', 'autoThreshold', 'reviewThreshold', 'margin', 'deterministic'], path, problem);
    for (const key of ['autoThreshold', 'reviewThreshold', 'margin'] as const) if (!isNumber(useCase[key])) problem(`${path}.${key}`, 'must be a number');
    if (isNumber(useCase.autoThreshold) && isNumber(useCase.reviewThreshold) && useCase.reviewThreshold >= useCase.autoThreshold) {
      problem(`${path}.reviewThreshold`, 'must be below autoThreshold');
    }
    if (isNumber(useCase.margin) && useCase.margin < 0) problem(`${path}.margin`, 'must be ≥ 0');
    if (typeof useCase.deterministic !== 'boolean') problem(`${path}.deterministic`, 'must be true or false');
  }
}

function onlyKeys(object: Record<string, unknown>, allowed: readonly string[], path: string, problem: Report): void {
  for (const key of Object.keys(object)) if (!allowed.includes(key)) problem(`${path}.${key}`, 'is not a known setting');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isProbability(value: unknown): value is number {
  return isNumber(value) && value > 0 && value <= 1;
}

/** The latest policy shipped, config/matching/policy-v2.json, validated at load. */
export const defaultPolicy: MatchingPolicy = parsePolicy(policyV2);
