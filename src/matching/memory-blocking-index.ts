import { BLOCK_SIZE_LIMIT, candidateBlockingKeys, isCandidate, keyKind, queryBlockingKeys } from './blocking-keys.ts';
import { type NormalizedCandidate, normalizeCandidate } from './normalize.ts';
import type { CandidateRecord, MatchQuery } from './types.ts';

/**
 * The blocking index held in memory, answering as the database's does: every member filed under
 * each of its keys; a query's candidates are the members of the blocks its keys name, a block
 * larger than BLOCK_SIZE_LIMIT skipped. For evaluation and tests; the server uses the database.
 */
export class MemoryBlockingIndex {
  private readonly blocks = new Map<string, number[]>();
  private readonly members: NormalizedCandidate[] = [];

  add(candidate: CandidateRecord): void {
    const normalized = normalizeCandidate(candidate);
    const position = this.members.push(normalized) - 1;
    for (const key of candidateBlockingKeys(normalized)) {
      const block = this.blocks.get(key);
      if (block) block.push(position);
      else this.blocks.set(key, [position]);
    }
  }

  /** The candidates for `query` (isCandidate), each once, in the order they were added. */
  candidates(query: MatchQuery): NormalizedCandidate[] {
    const shared = new Map<number, Set<string>>();
    for (const key of queryBlockingKeys(query)) {
      const block = this.blocks.get(key);
      if (!block || block.length > BLOCK_SIZE_LIMIT) continue;
      for (const position of block) (shared.get(position) ?? shared.set(position, new Set()).get(position)!).add(keyKind(key));
    }
    return [...shared]
      .filter(([, kinds]) => isCandidate(kinds))
      .map(([position]) => position)
      .sort((a, b) => a - b)
      .map((position) => this.members[position]);
  }

  get size(): number {
    return this.members.length;
  }
}
