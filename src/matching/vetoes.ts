import type { CandidateComparison } from './compare.ts';

/**
 * Hard rules over a comparison. Fellegi-Sunter treats fields as independent, but in a payer's
 * population they are not: family members share the card, surname, address and phone, and that
 * shared evidence can outweigh the two fields that tell them apart (given name and birth date).
 * These rules encode what no score may overrule. Their effect (`exclude` or `review`) is set
 * per rule in the policy.
 *
 * - `generational-suffix-conflict`: both sides write a generation and they differ (Jr vs Sr,
 *   II vs III; Jr and II count as the same generation). Father and son.
 * - `twin`: family name agrees and birth dates are equal, but given names are different. Twins
 *   share everything else; a sibling is never "close enough".
 * - `namesake-birth-date`: family and given names agree (exactly or as a nickname) but birth
 *   dates are different beyond a typo, swap or a few days. A parent and child of the same name on
 *   one card (Jr/Sr without the suffix), or a stranger with a common name.
 * - `person-evidence`: given name does not support the match and birth date is not exactly equal.
 *   Everything that agrees is then household evidence (spouse, sibling, parent), not the person.
 * - `given-name-conflict`: given names only loosely similar (`jw-mid`: a typo in a short name, or
 *   twins named alike), or different while the family name differs too (a new surname and a name
 *   we have no nickname for?), with the birth date equal. A person must look.
 * - `birth-date-conflict`: birth dates disagree while the given name supports the match. A person
 *   must look.
 * - `gender-conflict`: male against female. A data-entry error or an updated gender marker as
 *   often as another person, so never refused outright, never matched without a person.
 * - `dependent-conflict`: the same card with another dependent number: another member of the
 *   household unless the suffix was mistyped.
 * - `multiple-birth` (set across candidates by decide.ts, see multipleBirthVetoes): another
 *   candidate of the request's surname and birth date but another given name shares the card or
 *   the home — a twin. Twins are told apart by their first names only, so a candidate whose first
 *   name agrees less than exactly or as a nickname (a middle name, a close spelling, a sound-alike)
 *   may be the twin's sibling who is not a member, or the other twin misspelt.
 */
export const VETO_RULES = [
  'generational-suffix-conflict',
  'twin',
  'namesake-birth-date',
  'person-evidence',
  'given-name-conflict',
  'birth-date-conflict',
  'gender-conflict',
  'dependent-conflict',
  'multiple-birth',
] as const;

export type VetoRule = (typeof VETO_RULES)[number];

const FAMILY_AGREES = new Set<string>(['exact', 'alternative', 'jw-high']);
const GIVEN_SAME = new Set<string>(['exact', 'nickname']);
const GIVEN_SUPPORTS = new Set<string>(['exact', 'nickname', 'swapped', 'jw-high', 'middle', 'phonetic']);
const GIVEN_CONFLICTS = new Set<string>(['different', 'jw-mid']);

export function vetoesFor(comparison: CandidateComparison): VetoRule[] {
  const { identifier, family, given, birthDate, gender } = comparison.fields;
  const familyAgrees = FAMILY_AGREES.has(family.level);
  const givenConflicts = GIVEN_CONFLICTS.has(given.level);
  const givenSupports = GIVEN_SUPPORTS.has(given.level);
  const sameBirthDate = birthDate.level === 'exact';
  const rules: VetoRule[] = [];
  if (comparison.generationConflict) rules.push('generational-suffix-conflict');
  const twin = given.level === 'different' && sameBirthDate && familyAgrees;
  if (twin) rules.push('twin');
  if (familyAgrees && GIVEN_SAME.has(given.level) && birthDate.level === 'different') rules.push('namesake-birth-date');
  if (!givenSupports && !sameBirthDate) rules.push('person-evidence');
  if (givenConflicts && sameBirthDate && !twin) rules.push('given-name-conflict');
  if (birthDate.level === 'different' && givenSupports && !(familyAgrees && GIVEN_SAME.has(given.level))) rules.push('birth-date-conflict');
  if (gender.level === 'different') rules.push('gender-conflict');
  if (identifier.level === 'dependent-conflict') rules.push('dependent-conflict');
  return rules;
}
