import { normalizeName } from './names.ts';
import type { TermFrequencies } from './score.ts';
import type { CandidateRecord } from './types.ts';

/**
 * Term frequencies from a population: for each normalized family name and first given name,
 * the share of members whose current names include it. The population's own counts, computed
 * where the members are (the database), are the usual source; this is that computation.
 */
export function termFrequenciesFrom(members: readonly CandidateRecord[]): TermFrequencies {
  const family = new Map<string, number>();
  const given = new Map<string, number>();
  for (const member of members) {
    const names = member.names.filter((name) => !name.historical).map(normalizeName).filter((name) => name !== undefined);
    for (const value of new Set(names.map((name) => name.family).filter(Boolean))) family.set(value, (family.get(value) ?? 0) + 1);
    for (const value of new Set(names.map((name) => name.first).filter(Boolean))) given.set(value, (given.get(value) ?? 0) + 1);
  }
  const total = Math.max(1, members.length);
  const shares = (counts: Map<string, number>) => new Map([...counts].map(([value, count]) => [value, count / total]));
  return { family: shares(family), given: shares(given) };
}
