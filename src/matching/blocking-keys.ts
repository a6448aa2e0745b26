import { type FhirDate, formatFhirDate, isFullDate, swapDayMonth } from './dates.ts';
import { normalizeRecord, type NormalizedRecord } from './normalize.ts';
import type { MatchQuery } from './types.ts';

/**
 * Blocking keys: the index entries a member is filed under and the entries a query looks up.
 * A candidate is every member sharing at least one key with the query. The keys are a union of
 * independent ones, so one wrong field (a typo, a new surname, a new card, a move) leaves the
 * others to find the member:
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
 *
 * Queries also look up `dob:`, `fd:`, `gd:` and `gm:` under the day/month swap of their birth date.
 * Members are filed under every name, address, phone and id they ever had (identity drift). The adapter
 * may skip a key whose block is larger than it wants to score (`dob:` at tens of millions of
 * members), since `gd:` and the others still cover it.
 *
 * Keys hold personal data: store them as the member's index rows, never log them.
 */
/** Also the version of the stored record's form: from 3 on, the member normalized (NormalizedCandidate). */
export const BLOCKING_KEY_VERSION = 3;

/** A key shared by more members than this is skipped: the other keys of the query still find the member. */
export const BLOCK_SIZE_LIMIT = 500;

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
