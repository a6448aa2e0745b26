import type { CandidateComparison } from './compare.ts';
import { type ComparisonLevel, MATCH_FIELDS, type MatchField, TERM_FREQUENCY_FIELDS, type TermFrequencyField } from './fields.ts';
import type { EntryRef } from './normalize.ts';
import { type LevelProbabilities, levelWeight, type MatchingPolicy } from './policy.ts';
import { vetoesFor, type VetoRule } from './vetoes.ts';

/**
 * Fellegi-Sunter scoring: each field contributes log2(m/u) bits for its comparison level
 * (0 when missing), exact name agreements adjusted for how common the name is, and the score
 * is their sum. Vetoes are listed beside the score; the decision applies them.
 */

/** Share of members (0–1) holding each normalized family name and first given name. */
export interface TermFrequencies {
  family?: ReadonlyMap<string, number>;
  given?: ReadonlyMap<string, number>;
}

export interface FieldScore {
  field: MatchField;
  level: ComparisonLevel;
  /** Bits this field adds to the score, term-frequency adjustment included. */
  weight: number;
  m?: number;
  u?: number;
  /** How common the agreed value is and what that changed (bits, negative for common names). */
  termFrequency?: { frequency: number; adjustment: number };
  /** Which of the candidate's entries agreed (current or historical, and its source). */
  candidateEntry?: EntryRef;
}

export interface ScoredCandidate {
  candidateId: string;
  score: number;
  fields: FieldScore[];
  vetoes: VetoRule[];
}

export function scoreComparison(comparison: CandidateComparison, policy: MatchingPolicy, frequencies: TermFrequencies = {}): ScoredCandidate {
  const fields = MATCH_FIELDS.map((field) => scoreField(comparison, field, policy, frequencies));
  return {
    candidateId: comparison.candidateId,
    score: fields.reduce((sum, field) => sum + field.weight, 0),
    fields,
    vetoes: vetoesFor(comparison),
  };
}

function scoreField(comparison: CandidateComparison, field: MatchField, policy: MatchingPolicy, frequencies: TermFrequencies): FieldScore {
  const compared = comparison.fields[field];
  const entry = compared.candidateEntry ? { candidateEntry: compared.candidateEntry } : {};
  if (compared.level === 'missing') return { field, level: 'missing', weight: 0, ...entry };
  const probabilities = (policy.fields[field].levels as Record<string, LevelProbabilities>)[compared.level];
  const termFrequency = isTermFrequencyField(field) ? termFrequencyAdjustment(field, compared.level, compared.termValue, probabilities, policy, frequencies) : undefined;
  return {
    field,
    level: compared.level,
    weight: levelWeight(probabilities) + (termFrequency?.adjustment ?? 0),
    m: probabilities.m,
    u: probabilities.u,
    ...(termFrequency ? { termFrequency } : {}),
    ...entry,
  };
}

function isTermFrequencyField(field: MatchField): field is TermFrequencyField {
  return (TERM_FREQUENCY_FIELDS as readonly string[]).includes(field);
}

/**
 * u is the chance that two different people agree on this field in general; for a given name it
 * is closer to that name's frequency. Agreeing on "smith" proves less than agreeing on
 * "przybylski", so the weight becomes log2(m / frequency) instead of log2(m / u).
 */
function termFrequencyAdjustment(
  field: TermFrequencyField,
  level: string,
  value: string | undefined,
  probabilities: LevelProbabilities,
  policy: MatchingPolicy,
  frequencies: TermFrequencies,
): { frequency: number; adjustment: number } | undefined {
  const settings = policy.termFrequency[field];
  const frequency = value === undefined ? undefined : frequencies[field]?.get(value);
  if (!settings || frequency === undefined || !settings.levels.includes(level)) return undefined;
  const adjustment = Math.min(settings.maxBoost, Math.log2(probabilities.u / Math.max(frequency, settings.minFrequency)));
  return { frequency, adjustment };
}
