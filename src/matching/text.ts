/** Letters that NFKD does not decompose into a base letter plus marks. */
const FOLDED_LETTERS: Record<string, string> = { ß: 'ss', æ: 'ae', œ: 'oe', ø: 'o', ł: 'l', đ: 'd', ð: 'd', þ: 'th', ı: 'i' };

/** Lower-case ASCII-ish text: compatibility forms unified, accents and other marks removed. */
export function foldText(value: string): string {
  return value
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/[ßæœøłđðþı]/g, (letter) => FOLDED_LETTERS[letter]);
}

/**
 * Folded words: apostrophes join (O'Brien → obrien), every other non-alphanumeric separates
 * (Smith-Jones → smith jones, J. → j).
 */
export function foldedWords(value: string): string[] {
  return foldText(value)
    .replace(/['’‘`´]/g, '')
    .split(/[^a-z0-9]+/)
    .filter((word) => word.length > 0);
}
