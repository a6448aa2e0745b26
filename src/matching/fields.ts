/**
 * The vocabulary shared by the comparators, the policy and its validator: which fields are
 * compared and the comparison levels each can take, most telling first (when a field has several
 * values, the earliest level over all pairs is the field's level). A comparison
 * yields exactly one level per field (or `missing` when either side lacks the field), so the
 * policy's m and u over a field's levels are each a probability distribution.
 */

export const FIELD_LEVELS = {
  /**
   * Card identifiers (member ids, subscriber ids; separators, case, leading zeros ignored):
   * `exact` the person's id; `base` the same card, dependent number on one side only;
   * `dependent-conflict` the same card, another dependent number; `household` the same
   * subscriber; `different`.
   */
  identifier: ['exact', 'base', 'dependent-conflict', 'household', 'different'],
  /**
   * Surname: `exact`; `alternative` one form of a compound, hyphenated or particle name
   * (Garcia-Lopez / Lopez, de la Cruz / Cruz); `jw-high` and `jw-mid` Jaro-Winkler bands (policy
   * comparison settings); `swapped` given and family exchanged; `phonetic` Double Metaphone.
   */
  family: ['exact', 'alternative', 'jw-high', 'swapped', 'phonetic', 'jw-mid', 'different'],
  /**
   * First given name: `exact`; `nickname` one nickname group (Bill / William); `swapped`; `jw-high`;
   * `middle` one side's first name is the other's middle name; `phonetic`; `initial` one side is
   * an initial and it agrees; `jw-mid` the lower Jaro-Winkler band, or one keystroke apart (Tim /
   * Tin: short names fall below any band after one slip); `different`.
   */
  given: ['exact', 'nickname', 'swapped', 'jw-high', 'middle', 'phonetic', 'initial', 'jw-mid', 'different'],
  /**
   * `exact`; `swap` day and month exchanged; `typo` one digit replaced, two neighbouring digits
   * exchanged, or the year off by one; `near` within the policy's days; `partial` agreeing to the
   * precision of a year or year-month date; `different`.
   */
  birthDate: ['exact', 'swap', 'typo', 'near', 'partial', 'different'],
  /** Male against female only; other and unknown are missing. */
  gender: ['exact', 'different'],
  /**
   * `exact` same street line (USPS abbreviations, units compatible) in the same ZIP5 or city;
   * `street` same house number and a close street, or another unit; `zip` same ZIP5; `city` same
   * city and state; `different`.
   */
  address: ['exact', 'street', 'zip', 'city', 'different'],
  /** E.164 numbers. */
  phone: ['exact', 'different'],
  /** The payer that issued the card, compared by identifier type and value across systems. */
  payer: ['exact', 'different'],
} as const;

export type MatchField = keyof typeof FIELD_LEVELS;
export type FieldLevel<F extends MatchField> = (typeof FIELD_LEVELS)[F][number];
/** A field's level, or `missing` when either side has no value for it (weight 0). */
export type ComparisonLevel<F extends MatchField = MatchField> = FieldLevel<F> | 'missing';

export const MATCH_FIELDS = Object.keys(FIELD_LEVELS) as MatchField[];

/** Fields whose `exact` agreement can be discounted for common values (term frequency). */
export const TERM_FREQUENCY_FIELDS = ['family', 'given'] as const;
export type TermFrequencyField = (typeof TERM_FREQUENCY_FIELDS)[number];

