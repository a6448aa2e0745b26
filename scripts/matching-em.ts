/**
 * npm run matching:em -- --pairs <file.ndjson> [--random <file.ndjson>] [--exclude <field,…>]
 *                        [--policy config/matching/policy-v2.json] [--prior 0.05] [--max-iterations 200] [--out <file>]
 *   Estimates the policy's m and u with EM from unlabelled candidate pairs and writes the next
 *   policy version (stdout, or --out). Each line of a pairs file is either
 *   {"query": MatchQuery, "candidate": CandidateRecord} or {"levels": {"family": "exact", …}}
 *   (a comparison vector computed elsewhere). A summary goes to stderr.
 *
 *   Fields are not independent within a household (card, surname, address and phone are shared),
 *   so EM left free on every blocked pair learns "same household". The sound recipe:
 *   --random: pairs of records drawn at random; u is measured on them and held, EM estimates m.
 *   --pairs: the pairs one blocking key returned (e.g. `dob:`), with --exclude naming the fields
 *   that key is built from (birthDate): their agreement was forced by blocking and says nothing.
 *   Run once per key family and merge the fields each run could estimate.
 * Exit code 1 on any failure, with a message saying what was wrong.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { compareRecords } from '../src/matching/compare.ts';
import { type ComparisonVector, comparisonVector, estimateMU, estimatesOf, policyWithEstimates, uFromRandomPairs } from '../src/matching/em.ts';
import { MATCH_FIELDS, type MatchField } from '../src/matching/fields.ts';
import { normalizeRecord } from '../src/matching/normalize.ts';
import { levelWeight, type MatchingPolicy, parsePolicy } from '../src/matching/policy.ts';
import type { CandidateRecord, MatchQuery } from '../src/matching/types.ts';

class UsageError extends Error {}

function vectorsFrom(file: string, policy: MatchingPolicy): ComparisonVector[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const vectors: ComparisonVector[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    let entry: { levels?: ComparisonVector; query?: MatchQuery; candidate?: CandidateRecord };
    try {
      entry = JSON.parse(line);
    } catch {
      throw new UsageError(`${file}:${index + 1}: not JSON`);
    }
    if (entry.levels) vectors.push(entry.levels);
    else if (entry.query && entry.candidate) {
      vectors.push(comparisonVector(compareRecords(normalizeRecord(entry.query), { id: entry.candidate.id, ...normalizeRecord(entry.candidate) }, { policy })));
    } else throw new UsageError(`${file}:${index + 1}: expected {"query", "candidate"} or {"levels"}`);
  });
  return vectors;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      pairs: { type: 'string' },
      policy: { type: 'string', default: 'config/matching/policy-v2.json' },
      prior: { type: 'string', default: '0.05' },
      random: { type: 'string' },
      exclude: { type: 'string', default: '' },
      'max-iterations': { type: 'string', default: '200' },
      out: { type: 'string' },
    },
  });
  if (!values.pairs) throw new UsageError('--pairs <file.ndjson> is required');
  const prior = Number(values.prior);
  if (!(prior > 0 && prior < 1)) throw new UsageError('--prior must be a number between 0 and 1');
  const maxIterations = Number(values['max-iterations']);
  if (!Number.isInteger(maxIterations) || maxIterations < 1) throw new UsageError('--max-iterations must be a positive integer');

  const exclude = values.exclude.split(',').map((field) => field.trim()).filter((field) => field !== '');
  const unknown = exclude.filter((field) => !(MATCH_FIELDS as string[]).includes(field));
  if (unknown.length > 0) throw new UsageError(`--exclude: unknown field ${unknown.join(', ')} (fields: ${MATCH_FIELDS.join(', ')})`);

  const policy = parsePolicy(JSON.parse(readFileSync(values.policy, 'utf8')));
  const vectors = vectorsFrom(values.pairs, policy);
  if (vectors.length === 0) throw new UsageError(`${values.pairs}: no pairs`);
  const initial = values.random ? uFromRandomPairs(vectorsFrom(values.random, policy), estimatesOf(policy)) : estimatesOf(policy);
  const estimate = estimateMU(vectors, { initial, prior, maxIterations, exclude: exclude as MatchField[], estimate: values.random ? 'm' : 'm-and-u' });
  const next = policyWithEstimates(policy, estimate);

  const json = `${JSON.stringify(next, null, 2)}\n`;
  if (values.out) writeFileSync(values.out, json);
  else process.stdout.write(json);
  process.stderr.write(
    `${vectors.length} pairs, ${estimate.iterations} iterations (${estimate.converged ? 'converged' : 'not converged'}), estimated share of matches ${estimate.prior.toFixed(4)}\n`,
  );
  for (const field of MATCH_FIELDS) {
    const weights = Object.entries(next.fields[field].levels as Record<string, { m: number; u: number }>).map(([level, p]) => `${level} ${levelWeight(p).toFixed(2)}`);
    process.stderr.write(`  ${field}: ${weights.join(', ')}\n`);
  }
}

try {
  main();
} catch (error) {
  process.stderr.write(`matching:em: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
