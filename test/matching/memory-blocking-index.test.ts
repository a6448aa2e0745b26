import { describe, expect, it } from 'vitest';
import { BLOCK_SIZE_LIMIT } from '../../src/matching/blocking-keys.ts';
import { MemoryBlockingIndex } from '../../src/matching/memory-blocking-index.ts';
import { member, queryOf } from './members.ts';

describe('in-memory blocking index', () => {
  const margaret = member('margaret');

  it('returns each member sharing a key with the request once, and nobody else', () => {
    const index = new MemoryBlockingIndex();
    const stranger = member('stranger', { names: [{ family: 'Lindqvist', given: ['Ingrid'] }], birthDate: '1990-01-01', addresses: [], phones: [], memberIds: [{ value: 'K1' }], subscriberIds: [] });
    index.add(margaret);
    index.add(stranger);
    expect(index.size).toBe(2);
    expect(index.candidates(queryOf(margaret)).map((c) => c.id)).toEqual(['margaret']);
  });

  it(`skips a key shared by more than ${BLOCK_SIZE_LIMIT} members, and still finds the member through its other keys`, () => {
    const index = new MemoryBlockingIndex();
    // Born the same day as Margaret, nothing else in common: they fill her dob: block.
    for (let i = 0; i <= BLOCK_SIZE_LIMIT; i++) {
      index.add(member(`born-${i}`, { names: [{ family: `Family${i}`, given: [`Given${i}`] }], addresses: [], phones: [], memberIds: [{ value: `X${i}` }], subscriberIds: [] }));
    }
    index.add(margaret);
    const byBirthDateOnly = queryOf(margaret, { names: [{ family: 'Brown', given: ['Peggy'] }], addresses: [], phones: [], memberIds: [], subscriberIds: [] });
    expect(index.candidates(byBirthDateOnly)).toEqual([]);
    expect(index.candidates(queryOf(margaret)).map((c) => c.id)).toEqual(['margaret']);
  });
});
