import { defaultPolicy } from '../../src/matching/policy.ts';
import { normalizeCandidate } from '../../src/matching/normalize.ts';
import { resolveMember } from '../../src/matching/resolve.ts';
import type { TermFrequencies } from '../../src/matching/score.ts';
import type { CandidateRecord, MatchQuery } from '../../src/matching/types.ts';

/**
 * A household on one family card (subscriber W123456789, dependents -01, -02…) for building
 * query variants and hard negatives. Attribute shapes follow what from-fhir.ts produces.
 */
export function member(id: string, overrides: Partial<Omit<CandidateRecord, 'id'>> = {}): CandidateRecord {
  return {
    id,
    names: [{ family: 'Okafor', given: ['Margaret', 'Ann'] }],
    birthDate: '1979-04-09',
    gender: 'female',
    addresses: [{ line: ['742 Evergreen Terrace', 'Apt 4B'], city: 'Springfield', state: 'IL', postalCode: '62704-1234' }],
    phones: [{ value: '(217) 555-0143' }],
    memberIds: [{ value: 'W123456789-01' }],
    subscriberIds: [{ value: 'W123456789' }],
    payers: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '9876543210' }],
    ...overrides,
  };
}

/** The query a partner would send for `record`, with some attributes replaced. */
export function queryOf(record: CandidateRecord, overrides: Partial<MatchQuery> = {}): MatchQuery {
  const { id: _id, ...attributes } = record;
  return { ...attributes, ...overrides };
}

export function resolve(query: MatchQuery, candidates: CandidateRecord[], useCase = 'coverage-check', termFrequencies?: TermFrequencies) {
  return resolveMember(query, candidates.map(normalizeCandidate), { policy: defaultPolicy, useCase, ...(termFrequencies ? { termFrequencies } : {}) });
}

export function levelOf(decision: ReturnType<typeof resolve>, candidateId: string, field: string): string | undefined {
  return decision.candidates.find((c) => c.candidateId === candidateId)?.fields.find((f) => f.field === field)?.level;
}
