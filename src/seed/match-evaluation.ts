import { type AccuracyReport, accuracyReport, type LabelledOutcome } from '../matching/evaluation.ts';
import { candidateFromMember, queryFromMemberMatch } from '../matching/from-fhir.ts';
import { MemoryBlockingIndex } from '../matching/memory-blocking-index.ts';
import type { MatchingPolicy } from '../matching/policy.ts';
import { resolveMember } from '../matching/resolve.ts';
import { termFrequenciesFrom } from '../matching/term-frequencies.ts';
import type { CandidateRecord } from '../matching/types.ts';
import { groundTruth } from './ground-truth.ts';
import { generateMatchQueries, HARD_NEGATIVE_STRATA, type MatchQueryOptions } from './match-queries.ts';
import { memberCoverage, memberPatient } from './member-resources.ts';
import { generateHouseholds, type PopulationOptions } from './population.ts';

/*
 * Identity resolution measured on a synthetic population (npm run eval:matching): every member
 * as the data holder keeps them (Patient + Coverage → candidate, filed in a blocking index like
 * the database's), term frequencies from the population, labelled requests from
 * match-queries.ts, each resolved under the policy and use case, then tallied.
 */

export interface MatchEvaluationOptions {
  population: PopulationOptions;
  queries: number;
  policy: MatchingPolicy;
  useCase: string;
  /** Shares of the strata, when not match-queries.ts's defaults. */
  shares?: MatchQueryOptions['shares'];
}

export interface MatchEvaluation extends AccuracyReport {
  population: { members: number; seed: number; asOf: string };
  useCase: string;
  policy: { id: string; version: number };
  queries: { total: number; hardNegativeShare: number; nonMemberShare: number };
  blocking: { meanCandidates: number; maxCandidates: number };
  timing: { buildMs: number; resolveMsPerQuery: number };
}

export function evaluateMatching({ population, queries: count, policy, useCase, shares }: MatchEvaluationOptions): MatchEvaluation {
  const started = performance.now();
  const index = new MemoryBlockingIndex();
  const candidates: CandidateRecord[] = [];
  for (const household of generateHouseholds(population)) {
    for (const member of household.members) {
      const candidate = candidateFromMember(memberPatient(member), [memberCoverage(household, member, population.idPrefix)]);
      candidates.push(candidate);
      index.add(candidate);
    }
  }
  const termFrequencies = termFrequenciesFrom(candidates);
  const truth = [...groundTruth(population)];
  const twinsOf = new Map(truth.map((m) => [m.patientId, m.relations.filter((r) => r.kind === 'twin').map((r) => r.patientId)]));
  const queries = generateMatchQueries(truth, { queries: count, seed: population.seed, asOf: population.asOf, ...(shares ? { shares } : {}) });
  const built = performance.now();

  const outcomes: LabelledOutcome[] = [];
  let candidatesConsidered = 0;
  let mostCandidates = 0;
  for (const labelled of queries) {
    const query = queryFromMemberMatch(labelled.memberPatient, labelled.coverageToMatch);
    const found = index.candidates(query);
    candidatesConsidered += found.length;
    mostCandidates = Math.max(mostCandidates, found.length);
    const decision = resolveMember(query, found, { policy, useCase, termFrequencies });
    // The person's twins; for a request about a twin who is not a member, the member twin and that twin's own twins.
    const twinDecoy = labelled.decoy?.kind === 'twin' ? [labelled.decoy.patientId, ...(twinsOf.get(labelled.decoy.patientId) ?? [])] : [];
    outcomes.push({
      stratum: labelled.stratum,
      ...(labelled.patientId ? { patientId: labelled.patientId } : {}),
      twins: [...(labelled.patientId ? (twinsOf.get(labelled.patientId) ?? []) : []), ...twinDecoy],
      decision,
      blocked: labelled.patientId === undefined || found.some((c) => c.id === labelled.patientId),
    });
  }
  const resolved = performance.now();
  const share = (part: number) => round(part / Math.max(1, outcomes.length));
  return {
    population: { members: index.size, seed: population.seed, asOf: population.asOf },
    useCase,
    policy: { id: policy.id, version: policy.version },
    queries: {
      total: outcomes.length,
      hardNegativeShare: share(outcomes.filter((o) => (HARD_NEGATIVE_STRATA as readonly string[]).includes(o.stratum)).length),
      nonMemberShare: share(outcomes.filter((o) => o.patientId === undefined).length),
    },
    blocking: { meanCandidates: share(candidatesConsidered), maxCandidates: mostCandidates },
    timing: { buildMs: Math.round(built - started), resolveMsPerQuery: share(resolved - built) },
    ...accuracyReport(outcomes),
  };
}

const round = (value: number) => Math.round(value * 1000) / 1000;
