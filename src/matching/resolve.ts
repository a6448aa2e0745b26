import { compareRecords } from './compare.ts';
import { decideMatch, type MatchDecision } from './decide.ts';
import type { NicknameIndex } from './nicknames.ts';
import { type NormalizedCandidate, normalizeRecord } from './normalize.ts';
import type { MatchingPolicy } from './policy.ts';
import { scoreComparison, type TermFrequencies } from './score.ts';
import type { MatchQuery } from './types.ts';

export interface ResolveOptions {
  policy: MatchingPolicy;
  /** A use case of the policy (`coverage-check`, `clinical-history-release`…): its thresholds apply. */
  useCase: string;
  termFrequencies?: TermFrequencies;
  nicknames?: NicknameIndex;
}

/**
 * Identity resolution for one request: normalize → compare → score → decide. `candidates` are
 * the members the blocking index returned for the query's keys (queryBlockingKeys), normalized
 * when they were indexed; a member listed twice is considered once.
 */
export function resolveMember(query: MatchQuery, candidates: readonly NormalizedCandidate[], options: ResolveOptions): MatchDecision {
  const normalizedQuery = normalizeRecord(query);
  const unique = [...new Map(candidates.map((candidate) => [candidate.id, candidate])).values()];
  const scored = unique.map((candidate) =>
    scoreComparison(
      compareRecords(normalizedQuery, candidate, { policy: options.policy, ...(options.nicknames ? { nicknames: options.nicknames } : {}) }),
      options.policy,
      options.termFrequencies,
    ),
  );
  return decideMatch(scored, options.policy, options.useCase);
}
