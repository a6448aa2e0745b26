import { type MatchingPolicy, useCasePolicy, type VetoEffect } from './policy.ts';
import type { FieldScore, ScoredCandidate } from './score.ts';
import type { VetoRule } from './vetoes.ts';

/**
 * The tiers, in order: deterministic (identifier, family name, given name and birth date agree
 * exactly), probabilistic (score at or above the use case's auto threshold), manual review
 * (between the review and auto thresholds, or held back by a veto or by ambiguity), no match.
 * A match must also lead every other candidate still in the decision by the use case's margin:
 * candidates that cannot be told apart are never matched (HRex: several matches → no match).
 */
export type MatchTier = 'deterministic' | 'probabilistic' | 'review' | 'no-match';

export type CandidateStatus = 'matched' | 'review' | 'excluded' | 'not-matched';

export interface CandidateAssessment {
  candidateId: string;
  score: number;
  status: CandidateStatus;
  /** Identifier, family and given name and birth date agree exactly, and gender does not conflict. */
  deterministic: boolean;
  fields: FieldScore[];
  vetoes: { rule: VetoRule; effect: VetoEffect }[];
}

export type DecisionReasonCode =
  | 'no-candidates'
  | 'vetoed'
  | 'deterministic'
  | 'above-auto-threshold'
  | 'margin'
  | 'ambiguous'
  | 'review-band'
  | 'below-review-threshold';

/** Why, in words an operator can read; never a name, date, address or identifier of the person. */
export interface DecisionReason {
  code: DecisionReasonCode;
  candidateId?: string;
  text: string;
}

export interface MatchDecision {
  tier: MatchTier;
  /** The matched member (deterministic and probabilistic tiers only). */
  candidateId?: string;
  /** The matched member's score, or the best score considered. */
  score?: number;
  /** Candidates an operator must choose between (review tier). */
  reviewCandidateIds: string[];
  useCase: string;
  policy: { id: string; version: number };
  thresholds: { auto: number; review: number; margin: number };
  /** Every candidate considered, best score first. */
  candidates: CandidateAssessment[];
  reasons: DecisionReason[];
}

const DETERMINISTIC_FIELDS = ['identifier', 'family', 'given', 'birthDate'] as const;

export function isDeterministic(fields: readonly FieldScore[]): boolean {
  const level = (field: string) => fields.find((f) => f.field === field)?.level;
  return DETERMINISTIC_FIELDS.every((field) => level(field) === 'exact') && level('gender') !== 'different';
}

const levelOf = (candidate: ScoredCandidate, field: string) => candidate.fields.find((f) => f.field === field)?.level;
const SHARED_CARD = new Set<string | undefined>(['exact', 'base', 'dependent-conflict', 'household']);
const SHARED_HOME = new Set<string | undefined>(['exact', 'street']);
const FIRST_NAME_AGREES = new Set<string | undefined>(['exact', 'nickname']);

/**
 * The `multiple-birth` veto (see vetoes.ts), which needs every candidate: when one candidate is a
 * twin of the person asked about (the `twin` veto) and shares their card, home or phone, every
 * other candidate born that day must agree on the first name exactly or as a nickname.
 */
export function multipleBirthVetoes(scored: readonly ScoredCandidate[]): ScoredCandidate[] {
  const twinAtHome = scored.some(
    (candidate) =>
      candidate.vetoes.includes('twin') && (SHARED_CARD.has(levelOf(candidate, 'identifier')) || SHARED_HOME.has(levelOf(candidate, 'address')) || levelOf(candidate, 'phone') === 'exact'),
  );
  if (!twinAtHome) return [...scored];
  return scored.map((candidate) =>
    candidate.vetoes.includes('twin') || levelOf(candidate, 'birthDate') === 'different' || FIRST_NAME_AGREES.has(levelOf(candidate, 'given'))
      ? candidate
      : { ...candidate, vetoes: [...candidate.vetoes, 'multiple-birth'] },
  );
}

export function decideMatch(scored: readonly ScoredCandidate[], policy: MatchingPolicy, useCase: string): MatchDecision {
  const settings = useCasePolicy(policy, useCase);
  const thresholds = { auto: settings.autoThreshold, review: settings.reviewThreshold, margin: settings.margin };
  const reasons: DecisionReason[] = [];
  const assessments = multipleBirthVetoes(scored)
    .sort((a, b) => b.score - a.score || a.candidateId.localeCompare(b.candidateId))
    .map((candidate): CandidateAssessment => {
      const vetoes = candidate.vetoes.map((rule) => ({ rule, effect: policy.vetoes[rule] }));
      const excluded = vetoes.some((veto) => veto.effect === 'exclude');
      if (vetoes.length > 0) {
        const rules = vetoes.map((veto) => `${veto.rule} (${veto.effect})`).join(', ');
        reasons.push({ code: 'vetoed', candidateId: candidate.candidateId, text: `${rules}: ${excluded ? 'excluded from the decision' : 'may go to review, never matched'}` });
      }
      return {
        candidateId: candidate.candidateId,
        score: candidate.score,
        status: excluded ? 'excluded' : 'not-matched',
        deterministic: isDeterministic(candidate.fields),
        fields: candidate.fields,
        vetoes,
      };
    });
  const decision = (tier: MatchTier, extra: Partial<MatchDecision> = {}): MatchDecision => ({
    tier,
    reviewCandidateIds: [],
    useCase,
    policy: { id: policy.id, version: policy.version },
    thresholds,
    candidates: assessments,
    reasons,
    ...extra,
  });

  if (assessments.length === 0) {
    reasons.push({ code: 'no-candidates', text: 'no member shares a blocking key with the request' });
    return decision('no-match');
  }
  const inDecision = assessments.filter((candidate) => candidate.status !== 'excluded');
  const matchable = (candidate: CandidateAssessment) =>
    candidate.vetoes.length === 0 && ((settings.deterministic && candidate.deterministic) || candidate.score >= settings.autoThreshold);

  const best = inDecision.find(matchable);
  if (best) {
    const runnerUp = inDecision.find((candidate) => candidate !== best);
    const lead = runnerUp ? best.score - runnerUp.score : Infinity;
    if (lead >= settings.margin) {
      best.status = 'matched';
      const tier = settings.deterministic && best.deterministic ? 'deterministic' : 'probabilistic';
      reasons.push(
        tier === 'deterministic'
          ? { code: 'deterministic', candidateId: best.candidateId, text: 'identifier, family name, given name and birth date agree exactly; gender does not conflict' }
          : { code: 'above-auto-threshold', candidateId: best.candidateId, text: `score ${bits(best.score)} ≥ auto threshold ${thresholds.auto}` },
        {
          code: 'margin',
          candidateId: best.candidateId,
          text: runnerUp ? `leads the next candidate ${runnerUp.candidateId} (score ${bits(runnerUp.score)}) by ${bits(lead)} ≥ margin ${thresholds.margin}` : 'no other candidate remains',
        },
      );
      return decision(tier, { candidateId: best.candidateId, score: best.score });
    }
    const rivals = inDecision.filter((candidate) => best.score - candidate.score < settings.margin);
    reasons.push({
      code: 'ambiguous',
      text: `${rivals.length} candidates within margin ${thresholds.margin} of the best score ${bits(best.score)}: ${rivals.map((c) => c.candidateId).join(', ')}`,
    });
    return review(decision, inDecision.filter((c) => rivals.includes(c) || c.score >= settings.reviewThreshold), best.score);
  }

  const reviewable = inDecision.filter((candidate) => candidate.score >= settings.reviewThreshold);
  if (reviewable.length > 0) {
    reasons.push({
      code: 'review-band',
      text: `best score ${bits(reviewable[0].score)} ≥ review threshold ${thresholds.review}, but no candidate can be matched automatically (below auto threshold ${thresholds.auto} or held by a veto)`,
    });
    return review(decision, reviewable, reviewable[0].score);
  }
  const top = inDecision[0];
  reasons.push({
    code: 'below-review-threshold',
    text: top ? `best score ${bits(top.score)} < review threshold ${thresholds.review}` : 'every candidate was excluded by a veto',
  });
  return decision('no-match', top ? { score: top.score } : {});
}

function review(decision: (tier: MatchTier, extra: Partial<MatchDecision>) => MatchDecision, candidates: CandidateAssessment[], score: number): MatchDecision {
  for (const candidate of candidates) candidate.status = 'review';
  return decision('review', { reviewCandidateIds: candidates.map((candidate) => candidate.candidateId), score });
}

function bits(score: number): string {
  return score.toFixed(1);
}
