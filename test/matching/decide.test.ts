import { describe, expect, it } from 'vitest';
import { decideMatch } from '../../src/matching/decide.ts';
import { defaultPolicy, PolicyError } from '../../src/matching/policy.ts';
import type { ScoredCandidate } from '../../src/matching/score.ts';
import type { MatchQuery } from '../../src/matching/types.ts';
import { levelOf, member, queryOf, resolve } from './members.ts';

// One household on family card W123456789: Margaret (-01), her twin sister Martha (-02).
const margaret = member('margaret');
const martha = member('martha', { names: [{ family: 'Okafor', given: ['Martha'] }], memberIds: [{ value: 'W123456789-02' }] });
const spouse = queryOf(member('chidi', { names: [{ family: 'Okafor', given: ['Chidi'] }], birthDate: '1976-11-23', gender: 'male', memberIds: [{ value: 'W123456789-00' }] }));
const moved = { addresses: [{ line: ['18 Harbor Rd'], city: 'Peoria', state: 'IL', postalCode: '61602' }], phones: [{ value: '309-555-0100' }] };
const newCard = { memberIds: [{ value: 'ZX-998877' }], subscriberIds: [] };

describe('tiers', () => {
  it.each<[string, MatchQuery, string, string, string | undefined]>([
    ['exact identifier and demographics', queryOf(margaret), 'clinical-history-release', 'deterministic', 'margaret'],
    ['exact identifier and demographics', queryOf(margaret), 'coverage-check', 'deterministic', 'margaret'],
    ['nickname, moved, same card', queryOf(margaret, { names: [{ family: 'Okafor', given: ['Peggy'] }], ...moved }), 'clinical-history-release', 'probabilistic', 'margaret'],
    ['day/month swapped, card without dependent number', queryOf(margaret, { birthDate: '1979-09-04', memberIds: [{ value: 'W123456789' }] }), 'clinical-history-release', 'probabilistic', 'margaret'],
    ['married name not on file, moved, same card', queryOf(margaret, { names: [{ family: 'Brown', given: ['Margaret'] }], ...moved }), 'clinical-history-release', 'probabilistic', 'margaret'],
    ['name and birth date, unknown card, same ZIP', queryOf(margaret, { ...newCard, addresses: [{ line: ['9 Elm St'], postalCode: '62704' }], phones: [] }), 'coverage-check', 'probabilistic', 'margaret'],
    ['name and birth date, unknown card, same ZIP', queryOf(margaret, { ...newCard, addresses: [{ line: ['9 Elm St'], postalCode: '62704' }], phones: [] }), 'clinical-history-release', 'review', undefined],
    ['name and birth date only, unknown card, moved', queryOf(margaret, { ...newCard, ...moved }), 'coverage-check', 'review', undefined],
    ['gender differs, everything else exact', queryOf(margaret, { gender: 'male' }), 'coverage-check', 'review', undefined],
    ['birth date differs, card and names agree', queryOf(margaret, { names: [{ family: 'Okafor', given: ['Margarita'] }], birthDate: '1985-10-30' }), 'coverage-check', 'review', undefined],
    ['a stranger born the same day', queryOf(member('x', { names: [{ family: 'Lindqvist', given: ['Ingrid'] }], ...newCard, ...moved })), 'coverage-check', 'no-match', undefined],
    ['the spouse on the same card', spouse, 'coverage-check', 'no-match', undefined],
  ])('%s → %s: %s', (_, query, useCase, tier, candidateId) => {
    const decision = resolve(query, [margaret], useCase);
    expect(decision.tier).toBe(tier);
    expect(decision.candidateId).toBe(candidateId);
    if (tier === 'review') expect(decision.reviewCandidateIds).toEqual(['margaret']);
  });

  it('answers no match when blocking found nobody', () => {
    const decision = resolve(queryOf(margaret), []);
    expect(decision).toMatchObject({ tier: 'no-match', candidates: [], reasons: [{ code: 'no-candidates' }] });
  });

  it('refuses a use case the policy does not define', () => {
    expect(() => resolve(queryOf(margaret), [margaret], 'marketing')).toThrow(PolicyError);
  });
});

describe('vetoes', () => {
  it('never matches a twin: same card, surname, birth date and address, another given name', () => {
    const decision = resolve(queryOf(martha), [margaret]);
    expect(decision.tier).toBe('no-match');
    expect(decision.candidates[0]).toMatchObject({
      candidateId: 'margaret',
      status: 'excluded',
      vetoes: [
        { rule: 'twin', effect: 'exclude' },
        { rule: 'dependent-conflict', effect: 'review' },
      ],
    });
    expect(decision.candidates[0].score).toBeGreaterThan(defaultPolicy.useCases['coverage-check'].autoThreshold);
  });

  it('matches the right twin when both are members', () => {
    const decision = resolve(queryOf(martha), [margaret, martha]);
    expect(decision).toMatchObject({ tier: 'deterministic', candidateId: 'martha' });
    expect(decision.candidates.find((c) => c.candidateId === 'margaret')?.status).toBe('excluded');
  });

  it('sends twins on a card without dependent numbers to review when only an initial tells them apart', () => {
    const shared = { memberIds: [{ value: 'W123456789' }], subscriberIds: [] };
    const query = queryOf(margaret, { names: [{ family: 'Okafor', given: ['M'] }], ...shared });
    const decision = resolve(query, [member('margaret', shared), member('martha', { ...shared, names: [{ family: 'Okafor', given: ['Martha'] }] })]);
    expect(decision.tier).toBe('review');
    expect(decision.candidateId).toBeUndefined();
    expect(decision.reviewCandidateIds.sort()).toEqual(['margaret', 'martha']);
    expect(decision.reasons.map((r) => r.code)).toContain('ambiguous');
  });

  const johnSr = member('john-sr', { names: [{ family: 'Okafor', given: ['John'], suffix: ['Sr'] }], birthDate: '1950-02-11', gender: 'male', memberIds: [{ value: 'K44556677' }] });
  const johnJr = member('john-jr', { names: [{ family: 'Okafor', given: ['John'], suffix: ['Jr'] }], birthDate: '1978-06-30', gender: 'male', memberIds: [{ value: 'K44556677' }] });

  it('never matches Sr for Jr: suffixes conflict and birth dates differ', () => {
    const decision = resolve(queryOf(johnJr), [johnSr, johnJr]);
    expect(decision).toMatchObject({ tier: 'deterministic', candidateId: 'john-jr' });
    const senior = decision.candidates.find((c) => c.candidateId === 'john-sr');
    expect(senior?.status).toBe('excluded');
    expect(senior?.vetoes.map((v) => v.rule)).toEqual(['generational-suffix-conflict', 'namesake-birth-date']);
  });

  it('never matches a namesake on the same card when no suffix is written', () => {
    const query = queryOf(johnJr, { names: [{ family: 'Okafor', given: ['John'] }] });
    const decision = resolve(query, [{ ...johnSr, names: [{ family: 'Okafor', given: ['John'] }] }]);
    expect(decision.tier).toBe('no-match');
    expect(decision.candidates[0].vetoes.map((v) => v.rule)).toEqual(['namesake-birth-date']);
  });

  it('never matches a sibling whose birth date is one keystroke away', () => {
    const sibling = queryOf(member('ada', { names: [{ family: 'Okafor', given: ['Ada'] }], birthDate: '1979-04-19', memberIds: [{ value: 'W123456789-03' }] }));
    const decision = resolve(sibling, [margaret]);
    expect(decision.tier).toBe('no-match');
    expect(decision.candidates[0].vetoes.map((v) => v.rule)).toEqual(['person-evidence', 'dependent-conflict']);
  });

  it('holds a loosely similar given name for review: a typo in a short name, or twins named alike', () => {
    const mila = member('mila', { names: [{ family: 'Okafor', given: ['Mila'] }] });
    const decision = resolve(queryOf(mila, { names: [{ family: 'Okafor', given: ['Mira'] }] }), [mila]);
    expect(levelOf(decision, 'mila', 'given')).toBe('jw-mid');
    expect(decision).toMatchObject({ tier: 'review', reviewCandidateIds: ['mila'] });
    expect(decision.candidates[0].vetoes).toEqual([{ rule: 'given-name-conflict', effect: 'review' }]);
  });

  describe('multiple births', () => {
    const familyCard = { memberIds: [{ value: 'W123456789' }], subscriberIds: [{ value: 'W123456789' }] };

    it('holds for review a first name that is only the member’s middle name when her twin is on the card: it may be a third sibling', () => {
      const decision = resolve(queryOf(margaret, { names: [{ family: 'Okafor', given: ['Ann'] }], ...familyCard }), [margaret, martha], 'clinical-history-release');
      expect(levelOf(decision, 'margaret', 'given')).toBe('middle');
      expect(decision).toMatchObject({ tier: 'review', reviewCandidateIds: ['margaret'] });
      expect(decision.candidates.find((c) => c.candidateId === 'margaret')?.vetoes).toEqual([{ rule: 'multiple-birth', effect: 'review' }]);
      expect(decision.candidates.find((c) => c.candidateId === 'martha')?.status).toBe('excluded');
    });

    it('matches the same request when no twin shares the card: she is known by her middle name', () => {
      const decision = resolve(queryOf(margaret, { names: [{ family: 'Okafor', given: ['Ann'] }], ...familyCard }), [margaret], 'clinical-history-release');
      expect(decision).toMatchObject({ tier: 'probabilistic', candidateId: 'margaret' });
    });

    it('holds a twin’s misspelt first name for review, and matches it spelt right', () => {
      const misspelt = resolve(queryOf(martha, { names: [{ family: 'Okafor', given: ['Marhta'] }], ...familyCard }), [margaret, martha], 'clinical-history-release');
      expect(levelOf(misspelt, 'martha', 'given')).toBe('jw-high');
      expect(misspelt).toMatchObject({ tier: 'review', reviewCandidateIds: ['martha'] });
      const right = resolve(queryOf(martha, familyCard), [margaret, martha], 'clinical-history-release');
      expect(right).toMatchObject({ tier: 'probabilistic', candidateId: 'martha' });
    });

    it('leaves candidates born on another day alone', () => {
      const mother = member('ngozi', { names: [{ family: 'Okafor', given: ['Ann'] }], birthDate: '1950-02-11', memberIds: [{ value: 'W123456789-00' }] });
      const decision = resolve(queryOf(margaret, { names: [{ family: 'Okafor', given: ['Ann'] }], ...familyCard }), [margaret, martha, mother]);
      expect(decision.candidates.find((c) => c.candidateId === 'ngozi')?.vetoes.map((v) => v.rule)).not.toContain('multiple-birth');
    });
  });

  it('holds a gender conflict for review instead of refusing or matching', () => {
    const decision = resolve(queryOf(margaret, { gender: 'male' }), [margaret]);
    expect(decision.candidates[0]).toMatchObject({ status: 'review', deterministic: false, vetoes: [{ rule: 'gender-conflict', effect: 'review' }] });
  });
});

describe('ambiguity', () => {
  const duplicateA = member('dup-a', { memberIds: [{ value: 'A-1000001' }], subscriberIds: [] });
  const duplicateB = member('dup-b', { memberIds: [{ value: 'B-2000002' }], subscriberIds: [] });

  it.each(['coverage-check', 'clinical-history-release'])('never auto-matches two near-identical candidates (%s)', (useCase) => {
    const decision = resolve(queryOf(duplicateA, { memberIds: [], subscriberIds: [] }), [duplicateA, duplicateB], useCase);
    expect(decision.tier).toBe('review');
    expect(decision.candidateId).toBeUndefined();
    expect(decision.reviewCandidateIds.sort()).toEqual(['dup-a', 'dup-b']);
    expect(decision.candidates.every((c) => c.score >= decision.thresholds.auto)).toBe(true);
  });

  it('matches when the card tells them apart by more than the margin', () => {
    const decision = resolve(queryOf(duplicateA), [duplicateA, duplicateB]);
    expect(decision).toMatchObject({ tier: 'deterministic', candidateId: 'dup-a' });
    expect(decision.reasons.find((r) => r.code === 'margin')?.text).toMatch(/^leads the next candidate dup-b/);
  });

  it('requires the margin over a candidate held for review by a veto', () => {
    const scored = (candidateId: string, score: number, vetoes: ScoredCandidate['vetoes'] = []): ScoredCandidate => ({ candidateId, score, fields: [], vetoes });
    const close = decideMatch([scored('a', 40), scored('b', 37, ['gender-conflict'])], defaultPolicy, 'coverage-check');
    expect(close).toMatchObject({ tier: 'review', reviewCandidateIds: ['a', 'b'] });
    const clear = decideMatch([scored('a', 40), scored('b', 20, ['gender-conflict'])], defaultPolicy, 'coverage-check');
    expect(clear).toMatchObject({ tier: 'probabilistic', candidateId: 'a' });
    const excludedRival = decideMatch([scored('a', 40), scored('b', 39, ['twin'])], defaultPolicy, 'coverage-check');
    expect(excludedRival).toMatchObject({ tier: 'probabilistic', candidateId: 'a' });
  });
});

describe('term frequencies', () => {
  const query = queryOf(margaret, { ...newCard, ...moved });

  it('lowers the weight of agreeing on a common surname', () => {
    const plain = resolve(query, [margaret]);
    const common = resolve(query, [margaret], 'coverage-check', { family: new Map([['okafor', 0.012]]) });
    const family = common.candidates[0].fields.find((f) => f.field === 'family');
    expect(family?.termFrequency?.frequency).toBe(0.012);
    expect(family?.termFrequency?.adjustment).toBeLessThan(-2);
    expect(common.candidates[0].score).toBeLessThan(plain.candidates[0].score - 2);
  });

  it('raises a rare name by at most the policy’s maxBoost', () => {
    const rare = resolve(query, [margaret], 'coverage-check', { family: new Map([['okafor', 1e-7]]), given: new Map([['margaret', 1e-7]]) });
    const adjustments = rare.candidates[0].fields.map((f) => f.termFrequency?.adjustment).filter((a) => a !== undefined);
    expect(adjustments).toEqual([defaultPolicy.termFrequency.family?.maxBoost, defaultPolicy.termFrequency.given?.maxBoost]);
  });

  it('adjusts exact agreements only', () => {
    const decision = resolve(queryOf(margaret, { names: [{ family: 'Okafor', given: ['Peggy'] }] }), [margaret], 'coverage-check', { given: new Map([['margaret', 0.3], ['peggy', 0.3]]) });
    expect(decision.candidates[0].fields.find((f) => f.field === 'given')?.termFrequency).toBeUndefined();
  });
});

describe('explanation', () => {
  it('records the policy, thresholds, every field’s level, m, u and weight, and the reasons', () => {
    const decision = resolve(queryOf(margaret, { names: [{ family: 'Okafor', given: ['Peggy'] }], ...moved }), [margaret, martha]);
    expect(decision).toMatchObject({
      tier: 'probabilistic',
      candidateId: 'margaret',
      useCase: 'coverage-check',
      policy: { id: defaultPolicy.id, version: defaultPolicy.version },
      thresholds: { auto: 28, review: 12, margin: 6 },
    });
    const chosen = decision.candidates.find((c) => c.candidateId === 'margaret');
    expect(chosen?.status).toBe('matched');
    expect(chosen?.fields.map((f) => f.field)).toEqual(['identifier', 'family', 'given', 'birthDate', 'gender', 'address', 'phone', 'payer']);
    const given = chosen?.fields.find((f) => f.field === 'given');
    expect(given).toMatchObject({ level: 'nickname', m: 0.05, u: 0.001 });
    expect(given?.weight).toBeCloseTo(Math.log2(50), 6);
    expect(chosen?.score).toBeCloseTo(chosen?.fields.reduce((sum, f) => sum + f.weight, 0) ?? NaN, 9);
    expect(levelOf(decision, 'martha', 'given')).toBe('different');
    expect(decision.reasons.map((r) => r.code)).toEqual(['vetoed', 'above-auto-threshold', 'margin']);
  });

  it('says nothing personal in its reasons', () => {
    const decision = resolve(queryOf(martha), [{ ...margaret, id: 'p1' }, { ...martha, id: 'p2' }, { ...margaret, id: 'p3', gender: 'male' }]);
    const text = JSON.stringify(decision.reasons).toLowerCase();
    expect(decision.reasons.length).toBeGreaterThan(2);
    for (const personal of ['okafor', 'martha', 'margaret', '1979', 'w123456789', 'evergreen', '555', '62704']) expect(text).not.toContain(personal);
  });
});
