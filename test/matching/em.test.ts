import { describe, expect, it } from 'vitest';
import { compareRecords } from '../../src/matching/compare.ts';
import { type ComparisonVector, comparisonVector, estimateMU, estimatesOf, policyWithEstimates, uFromRandomPairs } from '../../src/matching/em.ts';
import type { MatchField } from '../../src/matching/fields.ts';
import { normalizeRecord } from '../../src/matching/normalize.ts';
import { defaultPolicy } from '../../src/matching/policy.ts';
import { member, queryOf } from './members.ts';

/** Seeded PRNG (mulberry32) so the synthetic population is the same on every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Truth = Partial<Record<MatchField, Record<string, { m: number; u: number }>>>;

const truth: Truth = {
  identifier: { exact: { m: 0.8, u: 0.01 }, different: { m: 0.2, u: 0.99 } },
  family: { exact: { m: 0.85, u: 0.05 }, phonetic: { m: 0.1, u: 0.1 }, different: { m: 0.05, u: 0.85 } },
  given: { exact: { m: 0.8, u: 0.04 }, nickname: { m: 0.15, u: 0.06 }, different: { m: 0.05, u: 0.9 } },
  birthDate: { exact: { m: 0.9, u: 0.02 }, typo: { m: 0.07, u: 0.08 }, different: { m: 0.03, u: 0.9 } },
  gender: { exact: { m: 0.97, u: 0.5 }, different: { m: 0.03, u: 0.5 } },
};
const trueShare = 0.3;

function draw(levels: Record<string, { m: number; u: number }>, which: 'm' | 'u', r: number): string {
  let cumulative = 0;
  for (const [level, p] of Object.entries(levels)) {
    cumulative += p[which];
    if (r < cumulative) return level;
  }
  return Object.keys(levels).at(-1) as string;
}

function synthetic(count: number): ComparisonVector[] {
  const next = random(42);
  return Array.from({ length: count }, () => {
    const which = next() < trueShare ? 'm' : 'u';
    const vector: ComparisonVector = {};
    for (const [field, levels] of Object.entries(truth) as [MatchField, Record<string, { m: number; u: number }>][]) {
      if (next() < 0.05) continue; // a missing field
      vector[field] = draw(levels, which, next());
    }
    return vector;
  });
}

describe('EM estimation of m and u', () => {
  it('recovers m, u and the share of matches from unlabelled synthetic comparison vectors', () => {
    const initial = estimatesOf(defaultPolicy);
    const estimate = estimateMU(synthetic(20_000), { initial, prior: 0.05 });
    expect(estimate.converged).toBe(true);
    expect(estimate.prior).toBeCloseTo(trueShare, 1);
    for (const [field, levels] of Object.entries(truth) as [MatchField, Record<string, { m: number; u: number }>][]) {
      for (const [level, p] of Object.entries(levels)) {
        expect(Math.abs(estimate.fields[field][level].m - p.m), `${field} ${level} m`).toBeLessThan(0.03);
        expect(Math.abs(estimate.fields[field][level].u - p.u), `${field} ${level} u`).toBeLessThan(0.03);
      }
    }
    // Fields the data never shows keep the starting values.
    expect(estimate.fields.address).toEqual(initial.address);
  });

  it('estimates m alone with u measured on random pairs, leaving out the blocking field', () => {
    const next = random(7);
    // Random pairs: different people, drawn with the true u.
    const randomPairs = Array.from({ length: 20_000 }, () => {
      const vector: ComparisonVector = {};
      for (const [field, levels] of Object.entries(truth) as [MatchField, Record<string, { m: number; u: number }>][]) vector[field] = draw(levels, 'u', next());
      return vector;
    });
    const initial = uFromRandomPairs(randomPairs, estimatesOf(defaultPolicy));
    expect(initial.family.exact.u).toBeCloseTo(0.05, 2);
    // Pairs a birth-date key returned: all agree on birth date, whatever their status.
    const blocked = synthetic(20_000).map((vector) => ({ ...vector, birthDate: 'exact' }));
    const estimate = estimateMU(blocked, { initial, prior: 0.05, estimate: 'm', exclude: ['birthDate'] });
    expect(estimate.prior).toBeCloseTo(trueShare, 1);
    expect(estimate.fields.given.exact.m).toBeCloseTo(0.8, 1);
    expect(estimate.fields.given.exact.u).toBe(initial.given.exact.u);
    expect(estimate.fields.birthDate).toEqual(initial.birthDate);
  });

  it('writes the estimate as the next, valid policy version', () => {
    const estimate = estimateMU(synthetic(2_000), { initial: estimatesOf(defaultPolicy), prior: 0.1 });
    const next = policyWithEstimates(defaultPolicy, estimate);
    expect(next.version).toBe(defaultPolicy.version + 1);
    expect(next.fields.family.levels.exact.m).toBeCloseTo(estimate.fields.family.exact.m, 12);
    expect(next.useCases).toEqual(defaultPolicy.useCases);
  });

  it('reads comparison vectors off comparisons, leaving missing fields out', () => {
    const margaret = member('margaret');
    const comparison = compareRecords(normalizeRecord(queryOf(margaret, { phones: [], names: [{ family: 'Okafor', given: ['Peggy'] }] })), { id: 'margaret', ...normalizeRecord(margaret) }, { policy: defaultPolicy });
    expect(comparisonVector(comparison)).toEqual({ identifier: 'exact', family: 'exact', given: 'nickname', birthDate: 'exact', gender: 'exact', address: 'exact', payer: 'exact' });
  });

  it('refuses a level the field does not have', () => {
    expect(() => estimateMU([{ family: 'similar' }], { initial: estimatesOf(defaultPolicy), prior: 0.1 })).toThrow('"similar" is not a level of family');
    expect(() => uFromRandomPairs([{ zip: 'exact' } as ComparisonVector], estimatesOf(defaultPolicy))).toThrow('"zip" is not a field');
  });
});
