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
import { defaultPolicy, type MatchingPolicy, parsePolicy, PolicyError, useCasePolicy } from '../src/matching/policy.ts';
import { evaluateMatching } from '../src/seed/match-evaluation.ts';
import { PopulationOptionsError, populationOptions } from '../src/seed/population.ts';

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
  return { population, queries: wholeNumber(values.queries, '--queries', 1), useCase: values['use-case'], policy, policyFile: values.policy ?? 'default (src/matching/policy.ts)' };
}

try {
  const settings = settingsFrom(process.argv.slice(2));
  process.stderr.write(`eval:matching: ${settings.population.members} members, ${settings.queries} requests, ${settings.useCase}\n`);
  const { policyFile, ...options } = settings;
  const evaluation = evaluateMatching(options);
  process.stdout.write(`${JSON.stringify({ ...evaluation, policy: { ...evaluation.policy, file: policyFile } }, null, 2)}\n`);
} catch (error) {
  if (error instanceof UsageError || error instanceof PolicyError || error instanceof PopulationOptionsError) {
    process.stderr.write(`eval:matching: ${error.message}\nusage: ${USAGE}\n`);
    process.exit(2);
  }
  throw error;
}
