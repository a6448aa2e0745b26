import { describe, expect, it } from 'vitest';
import { canonicalUrl, dateRange, indexable, normalizeString, referenceTarget, splitEscaped, unescapeValue } from '../../../src/fhir/search/values.ts';

describe('dateRange', () => {
  it.each([
    ['2020', '2020-01-01T00:00:00.000Z', '2020-12-31T23:59:59.999Z'],
    ['2020-02', '2020-02-01T00:00:00.000Z', '2020-02-29T23:59:59.999Z'],
    ['2021-02', '2021-02-01T00:00:00.000Z', '2021-02-28T23:59:59.999Z'],
    ['2020-12', '2020-12-01T00:00:00.000Z', '2020-12-31T23:59:59.999Z'],
    ['1986-01-01', '1986-01-01T00:00:00.000Z', '1986-01-01T23:59:59.999Z'],
    ['2024-05-01T10:00Z', '2024-05-01T10:00:00.000Z', '2024-05-01T10:00:59.999Z'],
    ['2024-05-01T10:00:30Z', '2024-05-01T10:00:30.000Z', '2024-05-01T10:00:30.999Z'],
    ['2024-05-01T10:00:30.5Z', '2024-05-01T10:00:30.500Z', '2024-05-01T10:00:30.599Z'],
    ['2024-05-01T10:00:30.123456Z', '2024-05-01T10:00:30.123Z', '2024-05-01T10:00:30.123Z'],
    ['2013-04-02T09:30:10+01:00', '2013-04-02T08:30:10.000Z', '2013-04-02T08:30:10.999Z'],
    ['2013-04-02T09:30:10-05:30', '2013-04-02T15:00:10.000Z', '2013-04-02T15:00:10.999Z'],
    ['2024-05-01T10:00:30', '2024-05-01T10:00:30.000Z', '2024-05-01T10:00:30.999Z'],
    ['0050-06-01', '0050-06-01T00:00:00.000Z', '0050-06-01T23:59:59.999Z'],
    ['0001', '0001-01-01T00:00:00.000Z', '0001-12-31T23:59:59.999Z'],
    ['9999', '9999-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z'],
  ])('%s covers %s to %s', (text, start, end) => {
    expect(dateRange(text)).toEqual({ start, end });
  });

  it.each(['0000', '0001-01-01T00:00:00+14:00', '', '20', '2020-13', '2020-00', '2021-02-29', '2020-04-31', '2020-01-01T24:00Z', '2020-01-01T10:60Z', '2020-01-01T10', '2020-01-01 10:00', 'tomorrow', '2020-01-01T10:00:00+15:00', '99999'])(
    'rejects %j',
    (text) => {
      expect(dateRange(text)).toBeUndefined();
    },
  );
});

describe('normalizeString', () => {
  it.each([
    ['Appleseed', 'appleseed'],
    ['Müller', 'muller'],
    ['ZOË', 'zoe'],
    ['José Ñúñez', 'jose nunez'],
    ['Øster', 'øster'],
  ])('%s → %s', (text, normalized) => {
    expect(normalizeString(text)).toBe(normalized);
  });
});

describe('splitEscaped', () => {
  it.each([
    ['a,b', ',', ['a', 'b']],
    ['a\\,b,c', ',', ['a,b', 'c']],
    ['a\\|b,c', ',', ['a\\|b', 'c']],
    ['sys|code', '|', ['sys', 'code']],
    ['|code', '|', ['', 'code']],
    ['sys|', '|', ['sys', '']],
    ['a\\\\,b', ',', ['a\\\\', 'b']],
    ['http://loinc.org|8480-6$gt100', '$', ['http://loinc.org|8480-6', 'gt100']],
  ] as const)('splits %j on %j', (text, separator, parts) => {
    expect(splitEscaped(text, separator)).toEqual(parts);
  });

  it('stops at the limit, leaving later separators in the last part', () => {
    expect(splitEscaped('a|b|c', '|', 2)).toEqual(['a', 'b|c']);
  });

  it('unescapes what is left once the value is final', () => {
    expect(unescapeValue('a\\|b\\\\c\\$d')).toBe('a|b\\c$d');
  });
});

describe('referenceTarget', () => {
  it.each([
    ['Patient/1', { type: 'Patient', id: '1' }],
    ['Patient/1/_history/3', { type: 'Patient', id: '1' }],
    ['http://baton.test/fhir/Patient/abc-1', { type: 'Patient', id: 'abc-1' }],
    ['https://partner.example/r4/Coverage/9.8/_history/2', { type: 'Coverage', id: '9.8' }],
  ])('%s → %j', (reference, target) => {
    expect(referenceTarget(reference)).toEqual(target);
  });

  it.each(['#p1', 'urn:uuid:2b6b4c1a-1d0e-4b8f-9d3a-0f5e9a1b2c3d', 'Patient', 'Nonsense/1', 'Patient/has space'])(
    '%s has no local target',
    (reference) => {
      expect(referenceTarget(reference)).toBeUndefined();
    },
  );
});

describe('canonicalUrl', () => {
  it('drops the version of a canonical', () => {
    expect(canonicalUrl('http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient|6.1.0')).toBe('http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient');
  });
});

describe('indexable', () => {
  it('keeps short text as it is', () => {
    expect(indexable('x'.repeat(900))).toBe('x'.repeat(900));
  });

  it('cuts long text to 1,000 UTF-8 bytes without splitting a character', () => {
    const cut = indexable('é'.repeat(800));
    expect(Buffer.byteLength(cut, 'utf8')).toBe(1000);
    expect(cut).toBe('é'.repeat(500));
    expect(Buffer.byteLength(indexable('€'.repeat(600)), 'utf8')).toBe(999);
  });
});
