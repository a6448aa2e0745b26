import { describe, expect, it } from 'vitest';
import { candidateBlockingKeys, queryBlockingKeys } from '../../src/matching/blocking-keys.ts';
import { normalizeCandidate } from '../../src/matching/normalize.ts';
import type { CandidateRecord, MatchQuery } from '../../src/matching/types.ts';
import { member, queryOf } from './members.ts';

const filed = (candidate: CandidateRecord) => candidateBlockingKeys(normalizeCandidate(candidate));
const margaret = member('margaret');
const memberKeys = filed(margaret);

describe('blocking keys', () => {
  it('files a member under its ids, birth date, phonetic names with the birth year, ZIP with the birth year and phone', () => {
    expect(memberKeys).toEqual(
      expect.arrayContaining(['id:W123456789', 'dob:1979-04-09', 'fy:AKFR:1979', 'fd:AKFR:04-09', 'gd:MRKRT:1979-04-09', 'zy:62704:1979', 'ph:+12175550143']),
    );
    expect(memberKeys).toEqual([...new Set(memberKeys)].sort());
  });

  it('files a member under every name, address and id it ever had', () => {
    const keys = filed(
      member('m', {
        names: [
          { family: 'Brown', given: ['Margaret'] },
          { family: 'Okafor', given: ['Margaret'], historical: true },
        ],
        addresses: [{ postalCode: '61602' }, { postalCode: '62704', historical: true }],
      }),
    );
    expect(keys).toEqual(expect.arrayContaining(['fy:PRN:1979', 'fy:AKFR:1979', 'zy:61602:1979', 'zy:62704:1979']));
  });

  it('looks a query up under its birth date’s day/month swap too', () => {
    const keys = queryBlockingKeys(queryOf(margaret, { birthDate: '1979-09-04' }));
    expect(keys).toEqual(expect.arrayContaining(['dob:1979-09-04', 'dob:1979-04-09', 'fd:AKFR:04-09', 'gd:MRKRT:1979-04-09']));
    expect(filed(member('m', { birthDate: '1979-09-04' }))).not.toContain('dob:1979-04-09');
  });

  const moved = { addresses: [{ line: ['18 Harbor Rd'], postalCode: '61602' }], phones: [{ value: '309-555-0100' }] };
  it.each<[string, Partial<MatchQuery>]>([
    ['surname typo', { names: [{ family: 'Okafur', given: ['Margaret'] }] }],
    ['new surname', { names: [{ family: 'Brown', given: ['Margaret'] }] }],
    ['nickname', { names: [{ family: 'Okafor', given: ['Peggy'] }] }],
    ['day/month swap', { birthDate: '1979-09-04' }],
    ['year typo', { birthDate: '1997-04-09' }],
    ['new card', { memberIds: [{ value: 'ZX-1' }], subscriberIds: [] }],
    ['id typed another way', { memberIds: [{ value: 'w 123 456 789 * 1' }], subscriberIds: [] }],
    ['moved, new phone', moved],
    ['wrong birth year, new card, moved, no phone', { birthDate: '1980-04-09', memberIds: [], subscriberIds: [], addresses: moved.addresses, phones: [] }],
    ['new surname and nickname, new card, moved: only the birth date left', { names: [{ family: 'Brown', given: ['Peggy'] }], memberIds: [], subscriberIds: [], ...moved }],
  ])('a change (%s) never hides the member', (_, change) => {
    const keys = queryBlockingKeys(queryOf(margaret, change));
    expect(keys.filter((key) => memberKeys.includes(key)).length).toBeGreaterThan(0);
  });

  it('gives an empty record no keys', () => {
    expect(queryBlockingKeys({ names: [], addresses: [], phones: [], memberIds: [], subscriberIds: [], payers: [] })).toEqual([]);
  });
});
