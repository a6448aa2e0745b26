import { describe, expect, it } from 'vitest';
import nicknameTable from '../../config/matching/nicknames.json' with { type: 'json' };
import uspsTable from '../../config/matching/usps-suffixes.json' with { type: 'json' };
import { normalizeAddress } from '../../src/matching/addresses.ts';
import { parseFhirDate, swapDayMonth } from '../../src/matching/dates.ts';
import { compareMemberIds, normalizeMemberId, payerKey, samePayer } from '../../src/matching/identifiers.ts';
import { jaroWinkler } from '../../src/matching/jaro-winkler.ts';
import { normalizeName } from '../../src/matching/names.ts';
import { defaultNicknames, NicknameTableError, nicknameIndex } from '../../src/matching/nicknames.ts';
import { normalizeGender, normalizeRecord } from '../../src/matching/normalize.ts';
import { phoneticCodes } from '../../src/matching/phonetic.ts';
import { normalizePhone } from '../../src/matching/phones.ts';
import { member } from './members.ts';

describe('names', () => {
  it.each([
    [{ family: 'GARCÍA-LÓPEZ', given: ['José'] }, 'garcialopez', ['garcialopez', 'garcia', 'lopez'], 'jose'],
    [{ family: 'Garcia Lopez', given: ['Jose'] }, 'garcialopez', ['garcialopez', 'garcia', 'lopez'], 'jose'],
    [{ family: "O'Brien", given: ['Seán'] }, 'obrien', ['obrien'], 'sean'],
    [{ family: 'de la Cruz', given: ['María José'] }, 'delacruz', ['delacruz', 'cruz'], 'mariajose'],
    [{ family: 'van der Berg', given: ['Jean-Luc'] }, 'vanderberg', ['vanderberg', 'berg'], 'jeanluc'],
    [{ family: 'Müller', given: ['Łukasz'] }, 'muller', ['muller'], 'lukasz'],
    [{ family: 'Strauß', given: ['Dr. Anna'] }, 'strauss', ['strauss'], 'anna'],
    [{ family: 'Le', given: ['Thi'] }, 'le', ['le'], 'thi'],
  ])('normalizes %o', (name, family, forms, first) => {
    const normalized = normalizeName(name);
    expect(normalized?.family).toBe(family);
    expect(normalized?.familyForms).toEqual(forms);
    expect(normalized?.first).toBe(first);
  });

  it.each([
    [{ family: 'Smith', given: ['John'], suffix: ['Jr.'] }, 2],
    [{ family: 'Smith Jr', given: ['John'] }, 2],
    [{ family: 'Smith, Sr.', given: ['John'] }, 1],
    [{ family: 'Smith', given: ['John', 'Paul III'] }, 3],
    [{ family: 'Smith', given: ['John'], suffix: ['II'] }, 2],
    [{ family: 'Smith', given: ['John'], suffix: ['MD'] }, undefined],
  ])('keeps the generational suffix of %o apart from the name', (name, generation) => {
    const normalized = normalizeName(name);
    expect(normalized?.family).toBe('smith');
    expect(normalized?.first).toBe('john');
    expect(normalized?.generation).toBe(generation);
  });

  it('keeps middle names and drops empty names', () => {
    expect(normalizeName({ family: 'Johnson', given: ['Robert', 'Michael'] })?.middles).toEqual(['michael']);
    expect(normalizeName({ family: ' ', given: ['.'] })).toBeUndefined();
  });

  it('gives spelling variants one phonetic code', () => {
    expect(phoneticCodes('smith')).toContain('SM0');
    expect(phoneticCodes('smyth')).toContain('SM0');
    expect(phoneticCodes('')).toEqual([]);
  });
});

describe('nicknames', () => {
  it('ships at least 150 groups of normalized names', () => {
    expect(nicknameTable.groups.length).toBeGreaterThanOrEqual(150);
    expect(nicknameTable.groups.flat().every((name) => /^[a-z]+$/.test(name))).toBe(true);
  });

  it.each([
    ['william', 'bill'],
    ['liam', 'william'],
    ['robert', 'bob'],
    ['elizabeth', 'betty'],
    ['margaret', 'peggy'],
    ['katherine', 'kate'],
    ['catherine', 'kathy'],
    ['albert', 'al'],
    ['alfred', 'al'],
  ])('%s and %s are the same given name', (a, b) => {
    expect(defaultNicknames.areNicknames(a, b)).toBe(true);
    expect(defaultNicknames.areNicknames(b, a)).toBe(true);
  });

  it.each([
    ['albert', 'alfred'],
    ['william', 'robert'],
    ['john', 'john'],
    ['zebulon', 'zeb'],
  ])('%s and %s are not nicknames of each other', (a, b) => {
    expect(defaultNicknames.areNicknames(a, b)).toBe(false);
  });

  it('refuses a table entry that normalization could never produce', () => {
    expect(() => nicknameIndex([['William', 'Bill']])).toThrow(NicknameTableError);
  });
});

describe('dates', () => {
  it.each([
    ['1986-01-01', { year: 1986, month: 1, day: 1 }],
    ['1986-02', { year: 1986, month: 2 }],
    ['1986', { year: 1986 }],
    ['1986-01-01T10:00:00Z', { year: 1986, month: 1, day: 1 }],
    ['2024-02-29', { year: 2024, month: 2, day: 29 }],
    ['2023-02-29', undefined],
    ['1986-13-01', undefined],
    ['01/02/1986', undefined],
  ])('parses %s', (text, date) => {
    expect(parseFhirDate(text)).toEqual(date);
  });

  it('swaps day and month only when both readings are dates and differ', () => {
    expect(swapDayMonth({ year: 1986, month: 3, day: 4 })).toEqual({ year: 1986, month: 4, day: 3 });
    expect(swapDayMonth({ year: 1986, month: 3, day: 14 })).toBeUndefined();
    expect(swapDayMonth({ year: 1986, month: 3, day: 3 })).toBeUndefined();
  });
});

describe('addresses', () => {
  it.each([
    [['123 North Main Street', 'Apartment 4B'], ['123 N. Main St #4b']],
    [['123 N Main St., Apt. 4B'], ['123 north main street', 'unit 4b']],
    [['742 Evergreen Terrace'], ['742 Evergreen Ter']],
    [['9 Saint Paul Avenue'], ['9 St Paul Ave']],
    [['12-34 56th Road'], ['1234 56th Rd']],
    [['P.O. Box 12'], ['PO BOX 12']],
    [['500 First Blvd Suite 200'], ['500 1st Boulevard Ste 200']],
  ])('writes %o and %o the same way', (a, b) => {
    const x = normalizeAddress({ line: a });
    const y = normalizeAddress({ line: b });
    expect(x).toEqual(y);
    expect(x?.street).toBeDefined();
  });

  it('sets the unit apart and keeps the house number', () => {
    expect(normalizeAddress({ line: ['123 North Main Street', 'Apt 4B'] })).toEqual({ street: '123 n main st', houseNumber: '123', unit: '4b' });
    expect(normalizeAddress({ line: ['123 Lot Rd'] })).toEqual({ street: '123 lot rd', houseNumber: '123' });
  });

  it.each([
    ['62704-1234', { zip5: '62704', zip4: '1234' }],
    ['627041234', { zip5: '62704', zip4: '1234' }],
    ['62704', { zip5: '62704' }],
    ['2134', { zip5: '02134' }],
    ['K1A 0B1', {}],
  ])('reduces ZIP %s to ZIP5 (+4 aside)', (postalCode, zip) => {
    const { zip5, zip4 } = normalizeAddress({ line: ['1 Elm St'], postalCode }) ?? {};
    expect({ ...(zip5 ? { zip5 } : {}), ...(zip4 ? { zip4 } : {}) }).toEqual(zip);
  });

  it('reads states by name or code, cities with the same abbreviations as streets', () => {
    expect(normalizeAddress({ city: 'Saint Louis', state: 'Missouri' })).toEqual({ city: 'st louis', state: 'mo' });
    expect(normalizeAddress({ city: 'St. Louis', state: 'MO' })).toEqual({ city: 'st louis', state: 'mo' });
    expect(normalizeAddress({ line: [], city: ' ' })).toBeUndefined();
  });

  it('maps every USPS spelling to one abbreviation per section', () => {
    for (const section of [uspsTable.suffixes, uspsTable.units, uspsTable.directionals, uspsTable.words] as Record<string, string[]>[]) {
      const spellings = Object.values(section).flat();
      expect(new Set(spellings).size).toBe(spellings.length);
    }
    expect(Object.keys(uspsTable.suffixes).length).toBeGreaterThan(150);
  });
});

describe('phones', () => {
  it.each(['(217) 555-0143', '217.555.0143', '217-555-0143', '1-217-555-0143', '+1 217 555 0143', '2175550143 ext. 12', '(217)555-0143 x9'])('%s → +12175550143', (value) => {
    expect(normalizePhone(value)).toBe('+12175550143');
  });

  it.each(['555-0143', '(017) 555-0143', '217-155-0143', '12345678901234567', ''])('%s is not a usable number', (value) => {
    expect(normalizePhone(value)).toBeUndefined();
  });

  it('keeps international numbers as written', () => {
    expect(normalizePhone('+44 20 7946 0958')).toBe('+442079460958');
  });
});

describe('member identifiers', () => {
  it.each([
    ['W123456789-01', 'W123456789', '1'],
    ['W123456789*01', 'W123456789', '1'],
    ['w123456789 *1', 'W123456789', '1'],
    ['W123-456-789-01', 'W123456789', '1'],
    ['W123456789 01', 'W123456789', '1'],
    ['0012-3456-789', '123456789', undefined],
    ['1234-234-1243-12345678901', '1234234124312345678901', undefined],
    ['https://www.xxxhealthplan.com/fhir/memberidentifier#1234-234-1243-12345678901', '1234234124312345678901', undefined],
    ['ABC-1', 'ABC1', undefined],
  ])('%s → base %s, dependent %s', (value, base, dependent) => {
    const normalized = normalizeMemberId(value);
    expect(normalized?.base).toBe(base);
    expect(normalized?.dependent).toBe(dependent);
  });

  it('takes the dependent number from Coverage.dependent when the value has none', () => {
    expect(normalizeMemberId('W123456789', '02')).toEqual({ compact: 'W123456789', base: 'W123456789', dependent: '2' });
    expect(normalizeMemberId(' - ')).toBeUndefined();
  });

  it.each([
    ['W123456789-01', 'W123456789*1', 'exact'],
    ['W123456789-01', 'W12345678901', 'exact'],
    ['000123456', '123456', 'exact'],
    ['W123456789-01', 'W123456789', 'base'],
    ['W123456789-01', 'W123456789-02', 'dependent-conflict'],
    ['W123456789-01', 'W987654321-01', 'different'],
  ])('%s against %s is %s', (a, b, level) => {
    const x = normalizeMemberId(a);
    const y = normalizeMemberId(b);
    if (!x || !y) throw new Error('unparsed');
    expect(compareMemberIds(x, y)).toBe(level);
  });
});

describe('payer identifiers', () => {
  it('recognizes the same payer under different systems for the same identifier type', () => {
    expect(payerKey({ system: 'http://hl7.org/fhir/sid/us-npi', value: '9876543210' })).toBe('npi|9876543210');
    expect(samePayer([{ system: 'http://hl7.org/fhir/sid/us-npi', value: '9876543210' }], [{ system: 'urn:oid:2.16.840.1.113883.4.6', value: '9876543210' }])).toBe(true);
    expect(samePayer([{ system: 'http://www.naic.org', value: '12345' }], [{ system: 'urn:oid:2.16.840.1.113883.6.300', value: '12345' }])).toBe(true);
    expect(samePayer([{ system: 'https://payers.example/ids/', value: 'AB-12' }], [{ system: 'http://payers.example/ids', value: 'ab12' }])).toBe(true);
    expect(samePayer([{ system: 'urn:oid:2.16.840.1.113883.4.4', value: '12-3456789' }], [{ system: 'http://example.org/tax', type: 'TAX', value: '123456789' }])).toBe(true);
  });

  it('never equates different identifier types that share a value', () => {
    expect(samePayer([{ system: 'http://hl7.org/fhir/sid/us-npi', value: '12345' }], [{ system: 'http://www.naic.org', value: '12345' }])).toBe(false);
  });
});

describe('records', () => {
  it('puts current values first, drops duplicates and remembers where each came from', () => {
    const record = normalizeRecord(
      member('m', {
        names: [
          { family: 'Okafor', given: ['Margaret'], historical: true, use: 'maiden', source: 'Patient/m/_history/1' },
          { family: 'Brown', given: ['Margaret'], source: 'Patient/m' },
          { family: 'BROWN', given: ['margaret'], historical: true, source: 'Patient/m/_history/2' },
        ],
        phones: [{ value: 'not a phone' }, { value: '217-555-0143' }],
      }),
    );
    expect(record.names.map((name) => [name.family, name.entry.index, name.entry.historical])).toEqual([
      ['brown', 1, false],
      ['okafor', 0, true],
    ]);
    expect(record.names[1].entry.source).toBe('Patient/m/_history/1');
    expect(record.phones).toEqual([{ e164: '+12175550143', entry: { index: 1, historical: false } }]);
    expect(record.payers).toEqual(['npi|9876543210']);
  });

  it.each([
    ['male', 'male'],
    ['F', 'female'],
    ['other', undefined],
    ['unknown', undefined],
    [undefined, undefined],
  ])('reads gender %s as %s', (gender, normalized) => {
    expect(normalizeGender(gender)).toBe(normalized);
  });
});

describe('Jaro-Winkler', () => {
  it.each([
    ['martha', 'marhta', 0.961],
    ['dwayne', 'duane', 0.84],
    ['dixon', 'dicksonx', 0.813],
    ['abc', 'xyz', 0],
    ['', 'abc', 0],
    ['same', 'same', 1],
  ])('%s ~ %s = %d', (a, b, expected) => {
    expect(jaroWinkler(a, b)).toBeCloseTo(expected, 3);
  });
});

describe('normalizeRecord, once per record', () => {
  it('answers the same normalized record for the same record object, and normalizes another object afresh', () => {
    const record = { names: [{ family: 'Okafor', given: ['Margaret'] }], birthDate: '1979-04-09', addresses: [], phones: [], memberIds: [], subscriberIds: [], payers: [] };
    expect(normalizeRecord(record)).toBe(normalizeRecord(record));
    const copy = structuredClone(record);
    expect(normalizeRecord(copy)).not.toBe(normalizeRecord(record));
    expect(normalizeRecord(copy)).toEqual(normalizeRecord(record));
  });
});
