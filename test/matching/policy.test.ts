import { describe, expect, it } from 'vitest';
import policyV1 from '../../config/matching/policy-v1.json' with { type: 'json' };
import policyV2 from '../../config/matching/policy-v2.json' with { type: 'json' };
import { FIELD_LEVELS, MATCH_FIELDS } from '../../src/matching/fields.ts';
import { defaultPolicy, levelWeight, parsePolicy, PolicyError, useCasePolicy } from '../../src/matching/policy.ts';
import { VETO_RULES } from '../../src/matching/vetoes.ts';

type Mutable = Record<string, any>;
const mutated = (change: (policy: Mutable) => void): Mutable => {
  const copy = structuredClone(policyV2) as Mutable;
  change(copy);
  return copy;
};

function problemsOf(value: unknown): string[] {
  try {
    parsePolicy(value);
  } catch (error) {
    if (error instanceof PolicyError) return error.problems;
    throw error;
  }
  return [];
}

describe('shipped policies', () => {
  it('keeps v1 valid: a veto added since (multiple-birth) takes its default effect', () => {
    expect(problemsOf(policyV1)).toEqual([]);
    expect(Object.keys(policyV1.vetoes)).not.toContain('multiple-birth');
    expect(parsePolicy(policyV1).vetoes['multiple-birth']).toBe('review');
  });

  it('decides under v2 by default, which names every veto itself', () => {
    expect(Object.keys(policyV2.vetoes).sort()).toEqual([...VETO_RULES].sort());
  });

  it('is valid, covers every field level and veto, and defines both use cases', () => {
    expect(problemsOf(policyV2)).toEqual([]);
    expect(defaultPolicy).toMatchObject({ id: 'baton-member-match', version: 2 });
    for (const field of MATCH_FIELDS) expect(Object.keys(defaultPolicy.fields[field].levels).sort()).toEqual([...FIELD_LEVELS[field]].sort());
    expect(Object.keys(defaultPolicy.vetoes).sort()).toEqual([...VETO_RULES].sort());
    expect(Object.keys(defaultPolicy.useCases).sort()).toEqual(['clinical-history-release', 'coverage-check']);
  });

  it('is stricter for releasing clinical history than for checking coverage', () => {
    const coverage = useCasePolicy(defaultPolicy, 'coverage-check');
    const clinical = useCasePolicy(defaultPolicy, 'clinical-history-release');
    expect(clinical.autoThreshold).toBeGreaterThan(coverage.autoThreshold);
    expect(clinical.reviewThreshold).toBeGreaterThan(coverage.reviewThreshold);
    expect(clinical.margin).toBeGreaterThan(coverage.margin);
  });

  it('weighs agreement positively and disagreement negatively for every field', () => {
    for (const field of MATCH_FIELDS) {
      const levels = defaultPolicy.fields[field].levels as Record<string, { m: number; u: number }>;
      expect(levelWeight(levels.exact), field).toBeGreaterThan(0);
      expect(levelWeight(levels.different), field).toBeLessThan(0);
    }
  });
});

describe('policy validation', () => {
  it.each<[string, (policy: Mutable) => void, string]>([
    ['no id', (p) => delete p.id, 'id: must be a non-empty string'],
    ['version 0', (p) => (p.version = 0), 'version: must be an integer ≥ 1'],
    ['version "2"', (p) => (p.version = '2'), 'version: must be an integer ≥ 1'],
    ['an unknown top-level setting', (p) => (p.threshold = 3), 'policy.threshold: is not a known setting'],
    ['a missing field', (p) => delete p.fields.phone, 'fields.phone: must be an object with "levels"'],
    ['an unknown field', (p) => (p.fields.email = { levels: {} }), 'fields.email: is not a known setting'],
    ['a missing level', (p) => delete p.fields.given.levels.nickname, 'fields.given.levels.nickname: must have m and u in (0, 1]'],
    ['an unknown level', (p) => (p.fields.gender.levels.similar = { m: 0.1, u: 0.1 }), 'fields.gender.levels.similar: is not a known setting'],
    ['m = 0', (p) => (p.fields.gender.levels.exact.m = 0), 'fields.gender.levels.exact: must have m and u in (0, 1]'],
    ['m not summing to 1', (p) => (p.fields.gender.levels.exact.m = 0.5), 'fields.gender.levels: m must sum to 1 over the levels (sums to 0.53)'],
    ['u not summing to 1', (p) => (p.fields.phone.levels.different.u = 0.5), 'fields.phone.levels: u must sum to 1 over the levels'],
    ['Jaro-Winkler bands inverted', (p) => (p.comparison.nameJaroWinklerMid = 0.95), 'comparison.nameJaroWinklerMid: must be below nameJaroWinklerHigh'],
    ['a similarity above 1', (p) => (p.comparison.streetJaroWinkler = 1.2), 'comparison.streetJaroWinkler: must be a similarity in (0, 1]'],
    ['near days not an integer', (p) => (p.comparison.birthDateNearDays = 2.5), 'comparison.birthDateNearDays: must be an integer ≥ 1'],
    ['a term-frequency level of another field', (p) => (p.termFrequency.family.levels = ['nickname']), 'termFrequency.family.levels: must list levels of family'],
    ['a negative maxBoost', (p) => (p.termFrequency.given.maxBoost = -1), 'termFrequency.given.maxBoost: must be a number ≥ 0'],
    ['a veto switched off', (p) => (p.vetoes.twin = 'off'), 'vetoes.twin: must be "exclude" or "review"'],
    ['a veto missing', (p) => delete p.vetoes['gender-conflict'], 'vetoes.gender-conflict: must be "exclude" or "review"'],
    ['a later veto switched off', (p) => (p.vetoes['multiple-birth'] = 'off'), 'vetoes.multiple-birth: must be "exclude" or "review"'],
    ['an unknown veto', (p) => (p.vetoes.zodiac = 'exclude'), 'vetoes.zodiac: is not a known setting'],
    ['no use cases', (p) => (p.useCases = {}), 'useCases: must define at least one use case'],
    ['review above auto', (p) => (p.useCases['coverage-check'].reviewThreshold = 40), 'useCases.coverage-check.reviewThreshold: must be below autoThreshold'],
    ['a negative margin', (p) => (p.useCases['coverage-check'].margin = -1), 'useCases.coverage-check.margin: must be ≥ 0'],
    ['deterministic not a boolean', (p) => (p.useCases['coverage-check'].deterministic = 'yes'), 'useCases.coverage-check.deterministic: must be true or false'],
  ])('refuses %s with a message naming the setting', (_, change, message) => {
    const problems = problemsOf(mutated(change));
    expect(problems.some((problem) => problem.startsWith(message))).toBe(true);
  });

  it('lists every problem at once', () => {
    const policy = mutated((p) => {
      p.version = -1;
      p.vetoes.twin = 'maybe';
    });
    expect(() => parsePolicy(policy)).toThrow(/^invalid matching policy: version: .*; vetoes\.twin: /);
  });

  it.each([null, [], 'policy'])('refuses %o', (value) => {
    expect(problemsOf(value)).toEqual(['policy: must be an object']);
  });

  it('names the defined use cases when asked for another', () => {
    expect(() => useCasePolicy(defaultPolicy, 'toString')).toThrow('use case "toString" is not defined (defined: coverage-check, clinical-history-release)');
  });
});
