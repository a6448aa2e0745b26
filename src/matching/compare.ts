import type { NormalizedAddress } from './addresses.ts';
import { agreeToCommonPrecision, daysBetween, isFullDate, isOneSlipApart, sameDate, swapDayMonth } from './dates.ts';
import { FIELD_LEVELS, type ComparisonLevel, type FieldLevel, type MatchField } from './fields.ts';
import { compareMemberIds } from './identifiers.ts';
import { jaroWinkler } from './jaro-winkler.ts';
import type { NormalizedName } from './names.ts';
import { defaultNicknames, type NicknameIndex } from './nicknames.ts';
import type { Entry, EntryRef, NormalizedMemberIdEntry, NormalizedRecord } from './normalize.ts';
import { sharePhoneticCode } from './phonetic.ts';
import { type ComparisonSettings, levelWeight, type MatchingPolicy } from './policy.ts';

/**
 * Field-by-field comparison of a query with one candidate: one comparison level per field
 * (see fields.ts). A field with several values on either side (names over time, addresses,
 * phones, ids) takes the best level over all pairs, and remembers which candidate entry gave it.
 */
export interface FieldComparison<F extends MatchField = MatchField> {
  field: F;
  level: ComparisonLevel<F>;
  /** The candidate's entry that gave the level: current or historical, with its source. */
  candidateEntry?: EntryRef;
  /** The agreed normalized value, for the term-frequency lookup; never leaves scoring. */
  termValue?: string;
}

export type FieldComparisons = { [F in MatchField]: FieldComparison<F> };

export interface CandidateComparison {
  candidateId: string;
  fields: FieldComparisons;
  /** Both sides write a generation (Jr, Sr, III…) and none is common to both. */
  generationConflict: boolean;
}

export interface CompareContext {
  policy: MatchingPolicy;
  nicknames?: NicknameIndex;
}

export function compareRecords(query: NormalizedRecord, candidate: NormalizedRecord & { id: string }, context: CompareContext): CandidateComparison {
  const settings = context.policy.comparison;
  const names = compareNames(query.names, candidate.names, context);
  return {
    candidateId: candidate.id,
    fields: {
      identifier: compareIdentifiers(query, candidate),
      family: names.family,
      given: names.given,
      birthDate: { field: 'birthDate', level: compareBirthDates(query, candidate, settings) },
      gender: { field: 'gender', level: query.gender && candidate.gender ? (query.gender === candidate.gender ? 'exact' : 'different') : 'missing' },
      address: bestOf('address', query.addresses, candidate.addresses, (q, c) => compareAddresses(q, c, settings)),
      phone: bestOf('phone', query.phones, candidate.phones, (q, c) => (q.e164 === c.e164 ? 'exact' : 'different')),
      payer: {
        field: 'payer',
        level: query.payers.length === 0 || candidate.payers.length === 0 ? 'missing' : query.payers.some((key) => candidate.payers.includes(key)) ? 'exact' : 'different',
      },
    },
    generationConflict: generationsConflict(query.names, candidate.names),
  };
}

/** The strongest level (earliest in FIELD_LEVELS) over every pair of values; `undefined` from `compare` skips the pair. */
function bestOf<F extends MatchField, Q, C extends Entry>(field: F, queries: readonly Q[], candidates: readonly C[], compare: (q: Q, c: C) => FieldLevel<F> | undefined): FieldComparison<F> {
  const order: readonly string[] = FIELD_LEVELS[field];
  let best: FieldComparison<F> = { field, level: 'missing' };
  let bestRank = order.length;
  for (const q of queries) {
    for (const c of candidates) {
      const level = compare(q, c);
      if (level === undefined) continue;
      const rank = order.indexOf(level);
      if (rank < bestRank) {
        best = { field, level, candidateEntry: c.entry };
        bestRank = rank;
      }
    }
  }
  return best;
}

// --- identifiers ---------------------------------------------------------------------------

/**
 * Identifier level, most specific first: the person's own id (`exact`), the same card without a
 * dependent number on one side (`base`), the same card with another dependent number
 * (`dependent-conflict`: another person of the household), the same subscriber (`household`).
 * Ids the requester merely claimed on MemberPatient count only when they agree with something.
 */
function compareIdentifiers(query: NormalizedRecord, candidate: NormalizedRecord): FieldComparison<'identifier'> {
  const pairs: { claimed: boolean; entry: EntryRef; level: FieldLevel<'identifier'> }[] = [];
  const household = (q: NormalizedMemberIdEntry, c: NormalizedMemberIdEntry) => ({ claimed: q.claimed, entry: c.entry, level: q.base === c.base ? 'household' : 'different' }) as const;
  for (const q of query.memberIds) {
    for (const c of candidate.memberIds) pairs.push({ claimed: q.claimed, entry: c.entry, level: compareMemberIds(q, c) });
    for (const c of candidate.subscriberIds) pairs.push(household(q, c));
  }
  for (const q of query.subscriberIds) for (const c of [...candidate.subscriberIds, ...candidate.memberIds]) pairs.push(household(q, c));
  const counted = pairs.filter((pair) => pair.level !== 'different' || !pair.claimed);
  return bestOf('identifier', [undefined], counted, (_, pair) => pair.level);
}

// --- names ---------------------------------------------------------------------------------

const FAMILY_AGREES = new Set<string>(['exact', 'alternative', 'jw-high']);
const GIVEN_AGREES = new Set<string>(['exact', 'nickname', 'jw-high']);

/**
 * Family and given names are compared as pairs of whole names (a current or former name of the
 * candidate against each name of the query), the pair with the highest combined weight wins, so
 * a maiden name on an old card meets the member's maiden name, not her married one.
 */
function compareNames(queries: readonly (NormalizedName & Entry)[], candidates: readonly (NormalizedName & Entry)[], context: CompareContext) {
  const { policy } = context;
  const nicknames = context.nicknames ?? defaultNicknames;
  let best = {
    family: { field: 'family', level: 'missing' } as FieldComparison<'family'>,
    given: { field: 'given', level: 'missing' } as FieldComparison<'given'>,
  };
  let bestWeight = -Infinity;
  for (const q of queries) {
    for (const c of candidates) {
      const { family, given } = compareNamePair(q, c, policy.comparison, nicknames);
      const weight = weightOf(policy, 'family', family) + weightOf(policy, 'given', given);
      if (weight <= bestWeight) continue;
      bestWeight = weight;
      best = {
        family: { field: 'family', level: family, candidateEntry: c.entry, ...(family === 'exact' ? { termValue: c.family } : {}) },
        given: { field: 'given', level: given, candidateEntry: c.entry, ...(given === 'exact' ? { termValue: c.first } : {}) },
      };
    }
  }
  return best;
}

function weightOf<F extends MatchField>(policy: MatchingPolicy, field: F, level: ComparisonLevel<F>): number {
  if (level === 'missing') return 0;
  const levels = policy.fields[field].levels as Record<string, { m: number; u: number }>;
  return levelWeight(levels[level]);
}

function compareNamePair(q: NormalizedName, c: NormalizedName, settings: ComparisonSettings, nicknames: NicknameIndex) {
  const family = compareFamily(q, c, settings);
  const given = compareGiven(q, c, settings, nicknames);
  if (FAMILY_AGREES.has(family) && GIVEN_AGREES.has(given)) return { family, given };
  // Given and family exchanged (forms that put the surname first, or fields filled in reverse).
  const crossed = namesAgree(q.family, c.first, settings) && namesAgree(q.first, c.family, settings);
  return crossed ? { family: 'swapped' as const, given: 'swapped' as const } : { family, given };
}

function namesAgree(a: string, b: string, settings: ComparisonSettings): boolean {
  return a.length > 1 && b.length > 1 && (a === b || jaroWinkler(a, b) >= settings.nameJaroWinklerHigh);
}

function compareFamily(q: NormalizedName, c: NormalizedName, settings: ComparisonSettings): ComparisonLevel<'family'> {
  if (!q.family || !c.family) return 'missing';
  if (q.family === c.family) return 'exact';
  // Compound, hyphenated and particle names: Garcia-Lopez / Garcia, De la Cruz / Cruz.
  if (q.familyForms.some((form) => c.familyForms.includes(form))) return 'alternative';
  const similarity = jaroWinkler(q.family, c.family);
  if (similarity >= settings.nameJaroWinklerHigh) return 'jw-high';
  if (sharePhoneticCode(q.familyPhonetic, c.familyPhonetic)) return 'phonetic';
  return similarity >= settings.nameJaroWinklerMid ? 'jw-mid' : 'different';
}

function compareGiven(q: NormalizedName, c: NormalizedName, settings: ComparisonSettings, nicknames: NicknameIndex): ComparisonLevel<'given'> {
  if (!q.first || !c.first) return 'missing';
  if (q.first === c.first) return 'exact';
  if (q.first.length === 1 || c.first.length === 1) return q.first[0] === c.first[0] ? 'initial' : 'different';
  if (nicknames.areNicknames(q.first, c.first)) return 'nickname';
  const similarity = jaroWinkler(q.first, c.first);
  if (similarity >= settings.nameJaroWinklerHigh) return 'jw-high';
  // Known by the middle name: "Robert Michael" on one side, "Michael" on the other.
  if (q.middles.includes(c.first) || c.middles.includes(q.first)) return 'middle';
  if (sharePhoneticCode(q.firstPhonetic, c.firstPhonetic)) return 'phonetic';
  // One keystroke apart counts as loosely similar whatever Jaro-Winkler says: in a short name
  // (Tim / Tin, Anna / Snna) one slip drops the similarity below any band, and calling it
  // different would let the twin veto refuse the member outright.
  return similarity >= settings.nameJaroWinklerMid || oneKeystrokeApart(q.first, c.first) ? 'jw-mid' : 'different';
}

/** One letter inserted, deleted or replaced, or two neighbours exchanged (Amy / Ay, not Al / Ay). */
export function oneKeystrokeApart(a: string, b: string): boolean {
  if (a === b || Math.min(a.length, b.length) < 2 || Math.max(a.length, b.length) < 3 || Math.abs(a.length - b.length) > 1) return false;
  let start = 0;
  while (start < a.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const restA = endA - start;
  const restB = endB - start;
  if (restA + restB <= 1 || (restA === 1 && restB === 1)) return true;
  return restA === 2 && restB === 2 && a[start] === b[start + 1] && a[start + 1] === b[start];
}

function generationsConflict(queries: readonly NormalizedName[], candidates: readonly NormalizedName[]): boolean {
  const queryGenerations = new Set(queries.map((name) => name.generation).filter((g) => g !== undefined));
  const candidateGenerations = new Set(candidates.map((name) => name.generation).filter((g) => g !== undefined));
  return queryGenerations.size > 0 && candidateGenerations.size > 0 && ![...queryGenerations].some((g) => candidateGenerations.has(g));
}

// --- birth dates ---------------------------------------------------------------------------

function compareBirthDates(query: NormalizedRecord, candidate: NormalizedRecord, settings: ComparisonSettings): ComparisonLevel<'birthDate'> {
  const q = query.birthDate;
  const c = candidate.birthDate;
  if (!q || !c) return 'missing';
  if (!isFullDate(q) || !isFullDate(c)) return agreeToCommonPrecision(q, c) ? 'partial' : 'different';
  if (sameDate(q, c)) return 'exact';
  const swapped = swapDayMonth(q);
  if (swapped && sameDate(swapped, c)) return 'swap';
  if (isOneSlipApart(q, c)) return 'typo';
  return daysBetween(q, c) <= settings.birthDateNearDays ? 'near' : 'different';
}

// --- addresses -----------------------------------------------------------------------------

/** `undefined` when the two addresses share no comparable part (one has only a city, the other only a ZIP). */
function compareAddresses(q: NormalizedAddress, c: NormalizedAddress, settings: ComparisonSettings): FieldLevel<'address'> | undefined {
  const zipSame = q.zip5 !== undefined && q.zip5 === c.zip5;
  const citySame = q.city !== undefined && q.city === c.city && (q.state === undefined || c.state === undefined || q.state === c.state);
  const samePlace = zipSame || citySame;
  if (q.street && c.street && samePlace) {
    const unitsAgree = q.unit === undefined || c.unit === undefined || q.unit === c.unit;
    if (q.street === c.street) return unitsAgree ? 'exact' : 'street';
    if (q.houseNumber && q.houseNumber === c.houseNumber && jaroWinkler(q.street, c.street) >= settings.streetJaroWinkler) return 'street';
  }
  if (zipSame) return 'zip';
  if (citySame) return 'city';
  const comparable = (q.street && c.street) || (q.zip5 && c.zip5) || (q.city && c.city);
  return comparable ? 'different' : undefined;
}
