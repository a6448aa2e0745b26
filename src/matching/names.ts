import { phoneticCodes } from './phonetic.ts';
import { foldedWords } from './text.ts';
import type { NameInput } from './types.ts';

/**
 * Generational suffixes as the generation they name: Sr is the first of the name, Jr and II
 * both the second (offices write either for the same person), III the third… Two names with
 * different generations are different people (the Jr/Sr veto); a missing suffix proves nothing.
 */
const GENERATIONS: Record<string, number> = {
  sr: 1, senior: 1, jr: 2, junior: 2, ii: 2, '2nd': 2, iii: 3, '3rd': 3, iv: 4, '4th': 4, v: 5, '5th': 5,
};
/** Trailing tokens in a family or given field that are suffixes; a lone "v" there is more likely an initial. */
const TRAILING_GENERATIONS = new Set(['sr', 'senior', 'jr', 'junior', 'ii', '2nd', 'iii', '3rd', 'iv', '4th']);
const TITLES = new Set(['mr', 'mrs', 'ms', 'miss', 'mx', 'dr', 'prof', 'rev']);
/** Surname particles: "de la Cruz" is also filed as "Cruz", "van der Berg" as "Berg". */
const PARTICLES = new Set([
  'de', 'del', 'della', 'der', 'den', 'da', 'das', 'dos', 'di', 'du', 'la', 'le', 'lo', 'van', 'von', 'ten', 'ter', 'y', 'e', 'bin', 'ibn', 'al', 'el',
]);

export interface NormalizedName {
  /** All family words joined without spaces: "De La Cruz" → delacruz, "Smith-Jones" → smithjones. */
  family: string;
  /**
   * Every form the family name may be filed under, primary first: the joined form, the form
   * without particles (cruz), and each part of a compound or hyphenated name (smith, jones).
   */
  familyForms: string[];
  familyPhonetic: string[];
  /** First given name, words joined (Mary Ann → maryann, Jean-Luc → jeanluc). */
  first: string;
  firstPhonetic: string[];
  /** Further given names, each words joined. */
  middles: string[];
  /** Generation named by a Jr/Sr/II/III suffix, when one is written. */
  generation?: number;
}

export function normalizeName(name: NameInput): NormalizedName | undefined {
  const suffixWords = (name.suffix ?? []).flatMap(foldedWords);
  const familyWords = stripTrailingGeneration(foldedWords(name.family ?? ''), suffixWords);
  const givenEntries = (name.given ?? []).map(foldedWords).filter((words) => words.length > 0);
  if (givenEntries.length > 0) {
    givenEntries[0] = stripTrailingGeneration(stripLeadingTitle(givenEntries[0]), suffixWords);
    const last = givenEntries.length - 1;
    if (last > 0) givenEntries[last] = stripTrailingGeneration(givenEntries[last], suffixWords);
  }
  const given = givenEntries.map((words) => words.join('')).filter((word) => word.length > 0);
  if (familyWords.length === 0 && given.length === 0) return undefined;

  const family = familyWords.join('');
  const familyForms = familyFormsOf(familyWords);
  const first = given[0] ?? '';
  const generation = suffixWords.map((word) => GENERATIONS[word]).find((value) => value !== undefined);
  return {
    family,
    familyForms,
    familyPhonetic: [...new Set(familyForms.flatMap(phoneticCodes))],
    first,
    firstPhonetic: phoneticCodes(first),
    middles: given.slice(1),
    ...(generation === undefined ? {} : { generation }),
  };
}

function familyFormsOf(words: string[]): string[] {
  if (words.length === 0) return [];
  const core = words.filter((word) => !PARTICLES.has(word));
  const parts = core.filter((word) => word.length >= 2);
  const forms = [words.join(''), core.join(''), ...(parts.length > 1 ? parts : [])];
  return [...new Set(forms.filter((form) => form.length > 0))];
}

/** Removes a trailing generational suffix word (moving it to `suffixWords`) when other words remain. */
function stripTrailingGeneration(words: string[], suffixWords: string[]): string[] {
  const last = words.at(-1);
  if (words.length < 2 || last === undefined || !TRAILING_GENERATIONS.has(last)) return words;
  suffixWords.push(last);
  return words.slice(0, -1);
}

function stripLeadingTitle(words: string[]): string[] {
  return words.length > 1 && TITLES.has(words[0]) ? words.slice(1) : words;
}
