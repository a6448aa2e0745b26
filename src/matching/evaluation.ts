import type { MatchDecision } from './decide.ts';

/**
 * Accuracy of identity resolution over labelled requests (npm run eval:matching): per stratum
 * and overall, how often a match is right, how many members are found automatically or through
 * review, how much goes to review, and the false matches that matter most (a twin taken for the
 * other). Issue 5 sets the targets.
 */

export interface LabelledOutcome {
  stratum: string;
  /** The member the request is about; absent when that person is not a member. */
  patientId?: string;
  /** Members the request must never be matched to: the decoy of a hard negative, the twins of the person. */
  twins: readonly string[];
  decision: Pick<MatchDecision, 'tier' | 'candidateId' | 'reviewCandidateIds'>;
  /** Whether the true member was among the candidates blocking returned. */
  blocked: boolean;
}

export interface AccuracyFigures {
  queries: number;
  /** Requests about a member (the others are about people who are not members). */
  memberQueries: number;
  autoMatches: number;
  /** Right automatic matches / automatic matches. */
  autoMatchPrecision: number | null;
  /** Right automatic matches / requests about a member. */
  autoRecall: number | null;
  /** (Right automatic matches + reviews offering the right member) / requests about a member. */
  autoOrReviewRecall: number | null;
  /** Requests sent to review / requests. */
  reviewRate: number;
  /** Requests about a member answered "no match" / requests about a member. */
  wronglyRefused: number | null;
  falseMatches: number;
  twinFalseMatches: number;
  /** Requests about a member whose member blocking did not return (a recall loss no score can repair). */
  notBlocked: number;
}

export interface MatchingTargets {
  minQueries: number;
  minAutoMatchPrecision: number;
  maxTwinFalseMatches: number;
  minAutoRecall: number;
  minAutoOrReviewRecall: number;
  maxReviewRate: number;
}

/** Issue 5, "Synthetic data and accuracy". */
export const MATCHING_TARGETS: MatchingTargets = {
  minQueries: 20_000,
  minAutoMatchPrecision: 0.9995,
  maxTwinFalseMatches: 0,
  minAutoRecall: 0.9,
  minAutoOrReviewRecall: 0.98,
  maxReviewRate: 0.05,
};

export type TargetsMet = Record<keyof MatchingTargets, boolean> & { all: boolean };

export interface AccuracyReport {
  overall: AccuracyFigures;
  strata: Record<string, AccuracyFigures>;
  targets: MatchingTargets;
  met: TargetsMet;
}

const ratio = (part: number, whole: number): number | null => (whole === 0 ? null : round(part / whole));
const round = (value: number) => Math.round(value * 1e6) / 1e6;

export function accuracyOf(outcomes: readonly LabelledOutcome[]): AccuracyFigures {
  let memberQueries = 0;
  let autoMatches = 0;
  let rightAuto = 0;
  let rightReview = 0;
  let reviews = 0;
  let refused = 0;
  let twinFalseMatches = 0;
  let notBlocked = 0;
  for (const { patientId, twins, decision, blocked } of outcomes) {
    const auto = decision.tier === 'deterministic' || decision.tier === 'probabilistic';
    if (patientId !== undefined) memberQueries++;
    if (patientId !== undefined && !blocked) notBlocked++;
    if (decision.tier === 'review') reviews++;
    if (auto) {
      autoMatches++;
      if (decision.candidateId === patientId) rightAuto++;
      else if (decision.candidateId !== undefined && twins.includes(decision.candidateId)) twinFalseMatches++;
    }
    if (patientId === undefined) continue;
    if (decision.tier === 'review' && decision.reviewCandidateIds.includes(patientId)) rightReview++;
    if (decision.tier === 'no-match') refused++;
  }
  return {
    queries: outcomes.length,
    memberQueries,
    autoMatches,
    autoMatchPrecision: ratio(rightAuto, autoMatches),
    autoRecall: ratio(rightAuto, memberQueries),
    autoOrReviewRecall: ratio(rightAuto + rightReview, memberQueries),
    reviewRate: ratio(reviews, outcomes.length) ?? 0,
    wronglyRefused: ratio(refused, memberQueries),
    falseMatches: autoMatches - rightAuto,
    twinFalseMatches,
    notBlocked,
  };
}

export function targetsMet(figures: AccuracyFigures, targets: MatchingTargets = MATCHING_TARGETS): TargetsMet {
  const met = {
    minQueries: figures.queries >= targets.minQueries,
    minAutoMatchPrecision: (figures.autoMatchPrecision ?? 1) >= targets.minAutoMatchPrecision,
    maxTwinFalseMatches: figures.twinFalseMatches <= targets.maxTwinFalseMatches,
    minAutoRecall: (figures.autoRecall ?? 0) >= targets.minAutoRecall,
    minAutoOrReviewRecall: (figures.autoOrReviewRecall ?? 0) >= targets.minAutoOrReviewRecall,
    maxReviewRate: figures.reviewRate <= targets.maxReviewRate,
  };
  return { ...met, all: Object.values(met).every(Boolean) };
}

export function accuracyReport(outcomes: readonly LabelledOutcome[], targets: MatchingTargets = MATCHING_TARGETS): AccuracyReport {
  const byStratum = new Map<string, LabelledOutcome[]>();
  for (const outcome of outcomes) {
    const list = byStratum.get(outcome.stratum);
    if (list) list.push(outcome);
    else byStratum.set(outcome.stratum, [outcome]);
  }
  const overall = accuracyOf(outcomes);
  return {
    overall,
    strata: Object.fromEntries([...byStratum].map(([stratum, list]) => [stratum, accuracyOf(list)])),
    targets,
    met: targetsMet(overall, targets),
  };
}
