import uspsTable from '../../config/matching/usps-suffixes.json' with { type: 'json' };
import { foldedWords, foldText } from './text.ts';
import type { AddressInput } from './types.ts';

/**
 * US postal addresses reduced to comparable parts, after USPS Publication 28: street suffixes,
 * directionals and common words abbreviated (Avenue → ave, North → n, Saint → st), secondary
 * unit designators recognised and set apart (Apt 4, Suite 200, #4 are all unit 4), ZIP+4
 * reduced to ZIP5 with the +4 kept aside. Both sides of a comparison pass through here, so a
 * word only has to be written the same way on both, not the "right" way.
 */
export interface NormalizedAddress {
  /** House number and street, abbreviated, without the unit: "123 n main st". */
  street?: string;
  houseNumber?: string;
  /** Unit number or letter without its designator: "4b". */
  unit?: string;
  city?: string;
  /** Two-letter state code. */
  state?: string;
  zip5?: string;
  zip4?: string;
}

type Section = Record<string, string[]>;

function abbreviations(...sections: Section[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const section of sections) {
    for (const [standard, spellings] of Object.entries(section)) {
      map.set(standard, standard);
      for (const spelling of spellings) map.set(spelling, standard);
    }
  }
  return map;
}

const WORDS = abbreviations(uspsTable.suffixes, uspsTable.directionals, uspsTable.words);
const UNIT_DESIGNATORS = abbreviations(uspsTable.units);
const STATES = new Map(Object.entries(uspsTable.states as Section).flatMap(([code, names]) => [[code, code], ...names.map((name) => [name, code] as [string, string])]));

const PO_BOX = /\b(?:p\s*o|post\s+office)\s*(?:box|bx)\b/g;
/** What can follow a unit designator: 4, 4b, b, 12-c, 1204. */
const UNIT_ID = /^(?:\d+[a-z]?|[a-z]\d*)$/;

export function normalizeAddress(address: AddressInput): NormalizedAddress | undefined {
  const normalized: NormalizedAddress = { ...streetParts(address.line ?? []), ...cityStateZip(address) };
  return Object.keys(normalized).length === 0 ? undefined : normalized;
}

function streetParts(lines: string[]): Pick<NormalizedAddress, 'street' | 'houseNumber' | 'unit'> {
  const text = foldText(lines.join(' '))
    .replace(/\./g, '')
    .replace(PO_BOX, ' pobox ')
    .replace(/#/g, ' # ')
    // House numbers like 12-34 (Queens) or 123-A are one token.
    .replace(/(\d)-(?=[a-z0-9])/g, '$1');
  const words = foldedWordsKeepingHash(text);
  const street: string[] = [];
  let unit: string | undefined;
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    const next = words[i + 1];
    const isDesignator = word === '#' || UNIT_DESIGNATORS.has(word);
    // A designator only after the street has begun and before a unit id, so "123 Lot Rd" keeps its street.
    if (isDesignator && street.length > 0 && next !== undefined && UNIT_ID.test(next)) {
      unit = next;
      i++;
      continue;
    }
    if (word === '#') continue;
    street.push(WORDS.get(word) ?? word);
  }
  const houseNumber = street.length > 1 && /^\d/.test(street[0]) ? street[0] : undefined;
  return {
    ...(street.length > 0 ? { street: street.join(' ') } : {}),
    ...(houseNumber ? { houseNumber } : {}),
    ...(unit ? { unit } : {}),
  };
}

function foldedWordsKeepingHash(text: string): string[] {
  return text.split(/\s+/).flatMap((chunk) => (chunk === '#' ? ['#'] : foldedWords(chunk)));
}

function cityStateZip(address: AddressInput): Pick<NormalizedAddress, 'city' | 'state' | 'zip5' | 'zip4'> {
  const city = foldedWords(address.city ?? '').map((word) => WORDS.get(word) ?? word).join(' ');
  const stateText = foldedWords(address.state ?? '').join(' ');
  const state = STATES.get(stateText);
  return {
    ...(city ? { city } : {}),
    ...(state ? { state } : {}),
    ...zipParts(address.postalCode),
  };
}

function zipParts(postalCode: string | undefined): Pick<NormalizedAddress, 'zip5' | 'zip4'> {
  const digits = (postalCode ?? '').replace(/\D/g, '');
  // A ZIP that went through a spreadsheet as a number loses its leading zero (02134 → 2134).
  if (digits.length === 4) return { zip5: `0${digits}` };
  if (digits.length === 5) return { zip5: digits };
  if (digits.length === 9) return { zip5: digits.slice(0, 5), zip4: digits.slice(5) };
  return {};
}
