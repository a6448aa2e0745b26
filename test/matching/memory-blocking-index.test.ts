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

  it('scores a member sharing keys of two kinds with the request, or its card or phone, and passes over one sharing a single other kind', () => {
    const index = new MemoryBlockingIndex();
    const bornSameDay = member('born-same-day', { names: [{ family: 'Lindqvist', given: ['Ingrid'] }], addresses: [{ postalCode: '99501' }], phones: [], memberIds: [{ value: 'K1' }], subscriberIds: [] });
    const sameSurnameAndYear = member('same-surname', { names: [{ family: 'Okafor', given: ['Chidi'] }], birthDate: '1979-11-30', addresses: [{ postalCode: '99501' }], phones: [], memberIds: [{ value: 'K2' }], subscriberIds: [] });
    const spouse = member('spouse', { names: [{ family: 'Brown', given: ['Tomas'] }], birthDate: '1975-02-14', addresses: [{ postalCode: '99501' }], memberIds: [{ value: 'K3' }], subscriberIds: [] });
    for (const m of [margaret, bornSameDay, sameSurnameAndYear, spouse]) index.add(m);
    expect(index.candidates(queryOf(margaret)).map((c) => c.id)).toEqual(['margaret', 'spouse']);
  });

  it('finds a member whose family and given names were written the other way round', () => {
    const index = new MemoryBlockingIndex();
    index.add(margaret);
    const swapped = queryOf(margaret, { names: [{ family: 'Margaret', given: ['Okafor'] }], memberIds: [], subscriberIds: [], addresses: [], phones: [] });
    expect(index.candidates(swapped).map((c) => c.id)).toEqual(['margaret']);
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
