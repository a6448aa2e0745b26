import { type FhirDate, formatFhirDate, isFullDate, swapDayMonth } from './dates.ts';
import { normalizeRecord, type NormalizedRecord } from './normalize.ts';
import type { MatchQuery } from './types.ts';

/**
 * Blocking keys: the index entries a member is filed under and the entries a query looks up.
 * The keys are a union of independent ones, so one wrong field (a typo, a new surname, a new
 * card, a move) leaves the others to find the member:
 *
 * | key                            | finds the member despite                         |
 * |--------------------------------|--------------------------------------------------|
 * | `id:<base id>`                 | any demographic change (member or subscriber id, dependent suffix dropped) |
 * | `dob:<date>`                   | new name, new card, move                         |
 * | `fy:<family phonetic>:<year>`  | a wrong day or month, new card, move             |
 * | `fd:<family phonetic>:<MM-DD>` | a wrong birth year, new card, move               |
 * | `gd:<given phonetic>:<date>`   | new surname, new card, move (narrower than dob)  |
 * | `gm:<given phonetic>:<MM-DD>`  | a wrong birth year with a new surname, new card  |
 * | `zy:<zip5>:<year>`             | new surname, new card, a wrong day or month      |
 * | `ph:<e164>`                    | everything but the phone                         |
 * | `fg:<family phonetic>:<given phonetic>` | any birth date error, new card, move    |
 * | `fz:<family phonetic>:<zip5>`  | a wrong birth date or first name, new card       |
 * | `gz:<given phonetic>:<zip5>`   | a wrong birth date or new surname, new card      |
 *
 * Queries also look up `dob:`, `fd:`, `gd:` and `gm:` under the day/month swap of their birth
 * date, and `fg:` with family and given name swapped.
 * Members are filed under every name, address, phone and id they ever had (identity drift). The adapter
 * may skip a key whose block is larger than it wants to score (`dob:` at tens of millions of
 * members), since `gd:` and the others still cover it.
 *
 * A member is a candidate when it shares keys of two kinds with the query, or an `id:` or `ph:`
 * key (isCandidate). Most members a key brings share nothing else: born the same day, or a
 * surname that sounds alike and the same birth year (at a million members, nine in ten of
 * ~150). One change leaves the true member several kinds, and a card or phone in common always
 * counts, so the household members and twins the engine must tell apart are still scored.
 *
 * Keys hold personal data: store them as the member's index rows, never log them.
 *
 * The version also covers the stored record's form: from 3 on, the member normalized
 * (NormalizedCandidate); 4 added `fg:`, `fz:` and `gz:`.
 */
export const BLOCKING_KEY_VERSION = 4;

/** A key shared by more members than this is skipped: the other keys of the query still find the member. */
export const BLOCK_SIZE_LIMIT = 500;

/** The kind of a key: what precedes its first colon (`dob`, `fy`, `id`…). */
export function keyKind(key: string): string {
  return key.slice(0, key.indexOf(':'));
}

/** Kinds that make a member a candidate on their own: a shared card or phone (household members, twins). */
export const DECISIVE_KINDS: readonly string[] = ['id', 'ph'];

/** Whether a member sharing keys of these kinds with a query is scored. */
export function isCandidate(sharedKinds: ReadonlySet<string>): boolean {
  return sharedKinds.size >= 2 || DECISIVE_KINDS.some((kind) => sharedKinds.has(kind));
}

export function candidateBlockingKeys(candidate: NormalizedRecord): string[] {
  return blockingKeys(candidate, false);
}

export function queryBlockingKeys(query: MatchQuery): string[] {
  return blockingKeys(normalizeRecord(query), true);
}

function blockingKeys(record: NormalizedRecord, withSwap: boolean): string[] {
  const keys = new Set<string>();
  for (const id of [...record.memberIds, ...record.subscriberIds]) keys.add(`id:${id.base}`);
  for (const phone of record.phones) keys.add(`ph:${phone.e164}`);
  for (const name of record.names) {
    for (const family of name.familyPhonetic) {
      for (const first of name.firstPhonetic) {
        keys.add(`fg:${family}:${first}`);
        if (withSwap) keys.add(`fg:${first}:${family}`);
      }
    }
    for (const address of record.addresses) {
      if (!address.zip5) continue;
      for (const family of name.familyPhonetic) keys.add(`fz:${family}:${address.zip5}`);
      for (const first of name.firstPhonetic) keys.add(`gz:${first}:${address.zip5}`);
    }
  }
  const birthDate = record.birthDate;
  if (birthDate) {
    for (const name of record.names) for (const code of name.familyPhonetic) keys.add(`fy:${code}:${birthDate.year}`);
    for (const address of record.addresses) if (address.zip5) keys.add(`zy:${address.zip5}:${birthDate.year}`);
    const swapped = withSwap ? swapDayMonth(birthDate) : undefined;
    for (const date of [birthDate, swapped].filter((d): d is FhirDate => d !== undefined && isFullDate(d))) {
      const text = formatFhirDate(date);
      keys.add(`dob:${text}`);
      for (const name of record.names) {
        for (const code of name.familyPhonetic) keys.add(`fd:${code}:${text.slice(5)}`);
        for (const code of name.firstPhonetic) {
          keys.add(`gd:${code}:${text}`);
          keys.add(`gm:${code}:${text.slice(5)}`);
        }
      }
    }
  }
  return [...keys].sort();
}
