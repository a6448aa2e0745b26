/**
 * npm run eval:matching [-- --members 50000 --queries 20000 --seed 1 --use-case clinical-history-release
 *                          --policy config/matching/policy-v2.json]
 *   Accuracy of identity resolution on a synthetic payer population (issue 5): builds the
 *   population in memory (src/seed), files every member in an in-memory blocking index like the
 *   database's, generates labelled $member-match requests with FEBRL-style corruption and hard
 *   negatives (src/seed/match-queries.ts), resolves each one and prints, per stratum and overall,
 *   auto-match precision, auto recall, auto + review recall, review rate, the share of members
 *   wrongly refused and the false matches (twins apart), with the targets and whether each is met.
 *   Progress on stderr, one JSON object on stdout. Exit code 0 whatever the figures; 2 on bad arguments.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { accuracyReport, type LabelledOutcome } from '../src/matching/evaluation.ts';
import { candidateFromMember, queryFromMemberMatch } from '../src/matching/from-fhir.ts';
import { MemoryBlockingIndex } from '../src/matching/memory-blocking-index.ts';
import { defaultPolicy, type MatchingPolicy, parsePolicy, PolicyError, useCasePolicy } from '../src/matching/policy.ts';
import { resolveMember } from '../src/matching/resolve.ts';
import { termFrequenciesFrom } from '../src/matching/term-frequencies.ts';
import type { CandidateRecord } from '../src/matching/types.ts';
import { groundTruth } from '../src/seed/ground-truth.ts';
import { generateMatchQueries, HARD_NEGATIVE_STRATA } from '../src/seed/match-queries.ts';
import { memberCoverage, memberPatient } from '../src/seed/member-resources.ts';
import { generateHouseholds, PopulationOptionsError, populationOptions } from '../src/seed/population.ts';

const USAGE = 'npm run eval:matching -- [--members N] [--queries N] [--seed S] [--use-case <name>] [--policy <file>]';

class UsageError extends Error {}

function wholeNumber(text: string, name: string, min: number): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < min) throw new UsageError(`${name} must be a whole number of at least ${min}`);
  return Number(text);
}

function settingsFrom(args: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        members: { type: 'string', default: '50000' },
        queries: { type: 'string', default: '20000' },
        seed: { type: 'string', default: '1' },
        'use-case': { type: 'string', default: 'clinical-history-release' },
        policy: { type: 'string' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  let policy: MatchingPolicy = defaultPolicy;
  if (values.policy !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(values.policy, 'utf8'));
    } catch (error) {
      throw new UsageError(`--policy: cannot read ${values.policy} as JSON (${(error as Error).message})`);
    }
    policy = parsePolicy(json);
  }
  useCasePolicy(policy, values['use-case']);
  const population = populationOptions({ members: wholeNumber(values.members, '--members', 1), seed: wholeNumber(values.seed, '--seed', 0), clinical: false });
  return { population, queries: wholeNumber(values.queries, '--queries', 1), useCase: values['use-case'], policy, policyFile: values.policy ?? 'default' };
}

function evaluate(settings: ReturnType<typeof settingsFrom>) {
  const { population, policy, useCase } = settings;
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
  const queries = generateMatchQueries(truth, { queries: settings.queries, seed: population.seed, asOf: population.asOf });
  const built = performance.now();
  process.stderr.write(`population of ${index.size} members and ${queries.length} requests built in ${Math.round(built - started)} ms\n`);

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
    const twins = [...(labelled.patientId ? (twinsOf.get(labelled.patientId) ?? []) : []), ...twinDecoy];
    outcomes.push({
      stratum: labelled.stratum,
      ...(labelled.patientId ? { patientId: labelled.patientId } : {}),
      twins,
      decision,
      blocked: labelled.patientId === undefined || found.some((c) => c.id === labelled.patientId),
    });
  }
  const resolved = performance.now();
  const report = accuracyReport(outcomes);
  const hardNegatives = outcomes.filter((o) => (HARD_NEGATIVE_STRATA as readonly string[]).includes(o.stratum)).length;
  return {
    population: { members: index.size, seed: population.seed, asOf: population.asOf },
    useCase,
    policy: { id: policy.id, version: policy.version, file: settings.policyFile },
    queries: { total: outcomes.length, hardNegativeShare: round(hardNegatives / outcomes.length), nonMemberShare: round(outcomes.filter((o) => !o.patientId).length / outcomes.length) },
    blocking: { meanCandidates: round(candidatesConsidered / outcomes.length), maxCandidates: mostCandidates },
    timing: { buildMs: Math.round(built - started), resolveMsPerQuery: round((resolved - built) / outcomes.length) },
    ...report,
  };
}

const round = (value: number) => Math.round(value * 1000) / 1000;

try {
  const settings = settingsFrom(process.argv.slice(2));
  process.stdout.write(`${JSON.stringify(evaluate(settings), null, 2)}\n`);
} catch (error) {
  if (error instanceof UsageError || error instanceof PolicyError || error instanceof PopulationOptionsError) {
    process.stderr.write(`eval:matching: ${error.message}\nusage: ${USAGE}\n`);
    process.exit(2);
  }
  throw error;
}
