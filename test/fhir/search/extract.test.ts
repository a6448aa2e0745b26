import type { Coverage, Patient, Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { extractIndexRows, INDEX_TABLES, type IndexTable, type Row } from '../../../src/fhir/search/extract.ts';
import { bloodPressure, fixturesPresent, glucose, heartRate, pdex, rangedRisk } from './examples.ts';

/** Rows of one table and code, without the resource key, as [grp, ...columns]. */
function rowsOf(resource: Resource, table: IndexTable, code: string): Row[] {
  const rows = extractIndexRows(resource as Resource & { id: string })[table];
  return rows.filter((row) => row[2] === code).map((row) => row.slice(3));
}

describe('extractIndexRows', () => {
  it('prefixes every row with the resource type, id, code and grp', () => {
    const rows = extractIndexRows(heartRate as Resource & { id: string });
    for (const table of INDEX_TABLES) for (const row of rows[table]) expect(row.slice(0, 2)).toEqual(['Observation', 'heart-rate']);
  });

  it('indexes a CodeableConcept as system and code, with display and text for :text', () => {
    expect(rowsOf(bloodPressure, 'token', 'code')).toEqual([
      [null, 'http://loinc.org', '85354-9', 'blood pressure panel with all children optional blood pressure systolic & diastolic', null, null],
    ]);
  });

  it('indexes a date at its precision and an open period up to infinity', () => {
    expect(rowsOf(bloodPressure, 'date', 'date')).toEqual([[null, '2012-09-17T00:00:00.000Z', '2012-09-17T23:59:59.999Z']]);
    expect(rowsOf(glucose, 'date', 'date')).toEqual([[null, '2013-04-02T08:30:10.000Z', 'infinity']]);
  });

  it('indexes a Quantity with its system, code and unit', () => {
    expect(rowsOf(glucose, 'quantity', 'value-quantity')).toEqual([[null, '6.3', '6.3', 'http://unitsofmeasure.org', 'mmol/L', 'mmol/l']]);
  });

  it('indexes a Range as its two ends', () => {
    expect(rowsOf(rangedRisk, 'number', 'probability')).toEqual([[null, '10', '30']]);
  });

  it('keeps each component of a composite with the other components of its element (grp)', () => {
    expect(rowsOf(bloodPressure, 'token', 'component-code-value-quantity#0').map((r) => [r[0], r[2]])).toEqual([
      [0, '8480-6'],
      [1, '8462-4'],
    ]);
    expect(rowsOf(bloodPressure, 'quantity', 'component-code-value-quantity#1').map((r) => [r[0], r[1]])).toEqual([
      [0, '107'],
      [1, '60'],
    ]);
  });

  it('writes nothing for parameters read from other parameters rows', () => {
    const rows = extractIndexRows(bloodPressure as Resource & { id: string });
    const codes = new Set(INDEX_TABLES.flatMap((t) => rows[t].map((r) => r[2])));
    for (const derived of ['combo-code', 'patient', 'combo-value-quantity', 'code-value-quantity', 'combo-code-value-quantity']) expect(codes).not.toContain(derived);
    expect(codes).toContain('subject');
  });

  it('stores an identifier-only reference as a token of <code>:identifier', () => {
    expect(rowsOf(bloodPressure, 'token', 'based-on:identifier')).toEqual([[null, 'https://acme.org/identifiers', '1234', null, null, null]]);
    expect(rowsOf(bloodPressure, 'reference', 'based-on')).toEqual([]);
  });

  it('decides where(resolve() is Type) from the reference text, contained resources included', () => {
    const episode = (reference: string) =>
      ({ resourceType: 'EpisodeOfCare', id: 'e', status: 'active', contained: [{ resourceType: 'Practitioner', id: 'pr1' }], careManager: { reference } }) as Resource;
    expect(rowsOf(episode('Practitioner/7'), 'reference', 'care-manager')).toEqual([[null, 'Practitioner', '7', 'Practitioner/7']]);
    expect(rowsOf(episode('https://partner.example/fhir/Practitioner/7'), 'reference', 'care-manager')).toHaveLength(1);
    expect(rowsOf(episode('#pr1'), 'reference', 'care-manager')).toEqual([[null, null, null, '#pr1']]);
    expect(rowsOf(episode('PractitionerRole/7'), 'reference', 'care-manager')).toEqual([]);
  });
});

describe.skipIf(!fixturesPresent)('extractIndexRows on the PDex examples', () => {
  it('indexes a member identifier with its type for :of-type', () => {
    const patient = pdex<Patient>('Patient-1');
    expect(rowsOf(patient, 'token', 'identifier')).toContainEqual([
      null,
      'https://www.xxxhealthplan.com/fhir/medicalrecordnumber',
      '1234-234-1243-12345678901m',
      null,
      'http://terminology.hl7.org/CodeSystem/v2-0203',
      'MR',
    ]);
  });

  it('indexes names and addresses part by part, lower-cased and as written', () => {
    const patient = pdex<Patient>('Patient-1');
    expect(rowsOf(patient, 'string', 'name')).toEqual([
      [null, 'appleseed', 'Appleseed'],
      [null, 'johnny', 'Johnny'],
    ]);
    expect(rowsOf(patient, 'string', 'address')).toContainEqual([null, 'pittsburgh', 'Pittsburgh']);
    expect(rowsOf(patient, 'date', 'birthdate')).toEqual([[null, '1986-01-01T00:00:00.000Z', '1986-01-01T23:59:59.999Z']]);
    expect(rowsOf(patient, 'uri', '_profile')).toEqual([[null, 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient']]);
  });

  it('indexes a Coverage payor given by NPI only as payor:identifier', () => {
    const coverage = pdex<Coverage>('Coverage-CoverageMatchExample1');
    expect(rowsOf(coverage, 'token', 'payor:identifier')).toEqual([[null, 'http://hl7.org/fhir/sid/us-npi', '9876543210', null, null, null]]);
  });
});
