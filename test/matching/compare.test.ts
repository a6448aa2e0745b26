import type { Patient } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { compareRecords, oneKeystrokeApart } from '../../src/matching/compare.ts';
import { candidateFromMember } from '../../src/matching/from-fhir.ts';
import { normalizeRecord } from '../../src/matching/normalize.ts';
import { defaultPolicy } from '../../src/matching/policy.ts';
import type { CandidateRecord, MatchQuery } from '../../src/matching/types.ts';
import { member, queryOf } from './members.ts';

function compare(query: MatchQuery, candidate: CandidateRecord) {
  return compareRecords(normalizeRecord(query), { id: candidate.id, ...normalizeRecord(candidate) }, { policy: defaultPolicy });
}

const margaret = member('margaret');
const name = (family: string, ...given: string[]) => ({ names: [{ family, given }] });

describe('name levels', () => {
  it.each([
    [name('Okafor', 'Margaret'), 'exact', 'exact'],
    [name('OKAFOR', 'Peggy'), 'exact', 'nickname'],
    [name('Okafor', 'Maggie', 'Ann'), 'exact', 'nickname'],
    [name('Okafor-Brown', 'Margaret'), 'alternative', 'exact'],
    [name('Okafr', 'Margret'), 'jw-high', 'jw-high'],
    [name('Okafor', 'Ann'), 'exact', 'middle'],
    [name('Okafor', 'M.'), 'exact', 'initial'],
    [name('Okafor', 'Susan'), 'exact', 'different'],
    [name('Margaret', 'Okafor'), 'swapped', 'swapped'],
    [name('Nguyen', 'Margaret'), 'different', 'exact'],
    [{ names: [] }, 'missing', 'missing'],
  ])('%o: family %s, given %s', (names, family, given) => {
    const { fields } = compare(queryOf(margaret, names), margaret);
    expect(fields.family.level).toBe(family);
    expect(fields.given.level).toBe(given);
  });

  it.each([
    ['Tim', 'Tin'],
    ['Anna', 'Snna'],
    ['Amy', 'Ay'],
    ['Mia', 'Mis'],
  ])('holds a short given name one keystroke off (%s / %s) as loosely similar, not different', (recorded, typed) => {
    const candidate = member('c', name('Okafor', recorded));
    expect(compare(queryOf(candidate, name('Okafor', typed)), candidate).fields.given.level).toBe('jw-mid');
  });

  it.each([
    ['Tim', 'Tom', true],
    ['Anna', 'Ann', true],
    ['Ryan', 'Fyan', true],
    ['John', 'Jhon', true],
    ['Amy', 'Ay', true],
    ['Al', 'Ay', false],
    ['Anna', 'Nina', false],
    ['Tim', 'Tim', false],
  ])('%s and %s are one keystroke apart: %s', (a, b, apart) => {
    expect(oneKeystrokeApart(a.toLowerCase(), b.toLowerCase())).toBe(apart);
  });

  it('matches a phonetic spelling of the surname', () => {
    const candidate = member('c', name('Schmidt', 'Margaret'));
    expect(compare(queryOf(candidate, name('Shmit', 'Margaret')), candidate).fields.family.level).toBe('phonetic');
  });

  it.each([
    ['Garcia-Lopez', 'Garcia'],
    ['Garcia Lopez', 'Lopez'],
    ['Smith Jones', 'Jones-Smith'],
    ['De La Cruz', 'Cruz'],
    ['DelaCruz', 'de la Cruz'],
  ])('a hyphenated, compound or particle surname %s meets %s', (queried, recorded) => {
    const candidate = member('c', name(recorded, 'Margaret'));
    const level = compare(queryOf(candidate, name(queried, 'Margaret')), candidate).fields.family.level;
    expect(['exact', 'alternative']).toContain(level);
  });

  it('meets a maiden name on an old card through the member’s name history', () => {
    const married = member('c', {
      names: [
        { family: 'Brown', given: ['Margaret'], source: 'Patient/c' },
        { family: 'Okafor', given: ['Margaret'], use: 'maiden', historical: true, source: 'Patient/c' },
      ],
    });
    const { fields } = compare(queryOf(married, name('Okafor', 'Margaret')), married);
    expect(fields.family.level).toBe('exact');
    expect(fields.family.candidateEntry).toMatchObject({ index: 1, historical: true });
  });

  it('keeps former names from earlier Patient versions (identity drift)', () => {
    const v1: Patient = { resourceType: 'Patient', id: 'c', meta: { versionId: '1' }, name: [{ family: 'Okafor', given: ['Margaret'] }], birthDate: '1979-04-09' };
    const v2: Patient = { ...v1, meta: { versionId: '2' }, name: [{ family: 'Brown', given: ['Margaret'] }] };
    const candidate = candidateFromMember(v2, [], { history: [v1] });
    const { fields } = compare(queryOf(margaret, name('Okafor', 'Margaret')), candidate);
    expect(fields.family.level).toBe('exact');
    expect(fields.family.candidateEntry).toMatchObject({ historical: true, source: 'Patient/c/_history/1' });
  });

  it('flags a generational suffix conflict, not a missing suffix', () => {
    const senior = member('sr', { names: [{ family: 'Okafor', given: ['John'], suffix: ['Sr.'] }] });
    expect(compare(queryOf(senior, { names: [{ family: 'Okafor', given: ['John'], suffix: ['Jr'] }] }), senior).generationConflict).toBe(true);
    expect(compare(queryOf(senior, { names: [{ family: 'Okafor Jr', given: ['John'] }] }), senior).generationConflict).toBe(true);
    expect(compare(queryOf(senior, { names: [{ family: 'Okafor', given: ['John'] }] }), senior).generationConflict).toBe(false);
    const second = member('ii', { names: [{ family: 'Okafor', given: ['John'], suffix: ['II'] }] });
    expect(compare(queryOf(second, { names: [{ family: 'Okafor', given: ['John'], suffix: ['Jr'] }] }), second).generationConflict).toBe(false);
  });
});

describe('birth date levels', () => {
  it.each([
    ['1979-04-09', 'exact'],
    ['1979-09-04', 'swap'],
    ['1978-04-09', 'typo'],
    ['1997-04-09', 'typo'],
    ['1980-04-09', 'typo'],
    ['1981-04-09', 'different'],
    ['1979-04-06', 'typo'],
    ['1979-04-13', 'near'],
    ['1979-04', 'partial'],
    ['1979', 'partial'],
    ['1980', 'different'],
    ['1981-06-30', 'different'],
    ['not a date', 'missing'],
  ])('%s against 1979-04-09 is %s', (birthDate, level) => {
    expect(compare(queryOf(margaret, { birthDate }), margaret).fields.birthDate.level).toBe(level);
  });
});

describe('address, phone, gender and payer levels', () => {
  it.each([
    [{ line: ['742 Evergreen Ter', '#4b'], postalCode: '62704' }, 'exact'],
    [{ line: ['742 EVERGREEN TERRACE'], city: 'Springfield', state: 'Illinois' }, 'exact'],
    [{ line: ['742 Evergreen Terrace', 'Apt 9'], postalCode: '62704' }, 'street'],
    [{ line: ['742 Evergren Terrace'], postalCode: '62704-9999' }, 'street'],
    [{ line: ['1 Oak St'], postalCode: '62704' }, 'zip'],
    [{ line: ['1 Oak St'], city: 'Springfield', state: 'IL', postalCode: '62701' }, 'city'],
    [{ line: ['1 Oak St'], city: 'Peoria', postalCode: '61602' }, 'different'],
    [{ city: 'Peoria' }, 'different'],
    [{ state: 'IL' }, 'missing'],
  ])('%o is %s (ZIP+4 against ZIP5, units, spellings)', (address, level) => {
    expect(compare(queryOf(margaret, { addresses: [address] }), margaret).fields.address.level).toBe(level);
  });

  it('takes the best of several addresses, former ones included', () => {
    const moved = member('c', {
      addresses: [
        { line: ['1 Oak St'], postalCode: '61602' },
        { line: ['742 Evergreen Terrace'], postalCode: '62704', use: 'old', historical: true },
      ],
    });
    const { fields } = compare(queryOf(margaret), moved);
    expect(fields.address.level).toBe('exact');
    expect(fields.address.candidateEntry?.historical).toBe(true);
  });

  it('compares phones in E.164, gender only male against female, payers across systems', () => {
    const query = queryOf(margaret, {
      phones: [{ value: '+1 217 555 0143' }],
      gender: 'other',
      payers: [{ system: 'urn:oid:2.16.840.1.113883.4.6', value: '9876543210' }],
    });
    const { fields } = compare(query, margaret);
    expect(fields.phone.level).toBe('exact');
    expect(fields.gender.level).toBe('missing');
    expect(fields.payer.level).toBe('exact');
    expect(compare(queryOf(margaret, { phones: [{ value: '217-555-0199' }], gender: 'male' }), margaret).fields).toMatchObject({
      phone: { level: 'different' },
      gender: { level: 'different' },
    });
  });
});

describe('identifier levels', () => {
  it.each([
    [{ memberIds: [{ value: 'w123456789*01' }], subscriberIds: [] }, 'exact'],
    [{ memberIds: [{ value: 'W12345678901' }], subscriberIds: [] }, 'exact'],
    [{ memberIds: [{ value: 'W123456789', dependent: '1' }], subscriberIds: [] }, 'exact'],
    [{ memberIds: [{ value: 'W123456789' }], subscriberIds: [] }, 'base'],
    [{ memberIds: [], subscriberIds: [{ value: 'W 1234 56789' }] }, 'household'],
    [{ memberIds: [{ value: 'W123456789-02' }], subscriberIds: [{ value: 'W123456789' }] }, 'dependent-conflict'],
    [{ memberIds: [{ value: 'X555' }], subscriberIds: [] }, 'different'],
    [{ memberIds: [{ value: 'X555', claimed: true }], subscriberIds: [] }, 'missing'],
    [{ memberIds: [{ value: 'X555' }, { value: 'W123456789-01', claimed: true }], subscriberIds: [] }, 'exact'],
    [{ memberIds: [], subscriberIds: [] }, 'missing'],
  ])('%o is %s', (ids, level) => {
    expect(compare(queryOf(margaret, ids), margaret).fields.identifier.level).toBe(level);
  });

  it('treats a member id without dependent number as the same card', () => {
    const single = member('c', { memberIds: [{ value: 'W123456789' }], subscriberIds: [] });
    expect(compare(queryOf(margaret), single).fields.identifier.level).toBe('base');
  });
});
