import { doubleMetaphone } from 'double-metaphone';

/** Double Metaphone codes (primary, and the alternate when it differs) of a folded word. */
export function phoneticCodes(word: string): string[] {
  if (word.length === 0) return [];
  const [primary, alternate] = doubleMetaphone(word);
  return [...new Set([primary, alternate].filter((code) => code.length > 0))];
}

export function sharePhoneticCode(a: readonly string[], b: readonly string[]): boolean {
  return a.some((code) => b.includes(code));
}
