import type { Condition, Coverage, Encounter, ExplanationOfBenefit, Patient, Period, Reference, Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { createResourceValidator } from '../../src/fhir/validation.ts';
import { CLAIM_ID_SYSTEM, MEMBER_ID_SYSTEM, npi } from '../../src/seed/identifiers.ts';
import { generatePopulation, populationOptions } from '../../src/seed/population.ts';

const resources: Resource[] = [...generatePopulation(populationOptions({ members: 200, seed: 21 }))].flatMap((chunk) => chunk.resources);
const byReference = new Map(resources.map((r) => [`${r.resourceType}/${r.id}`, r]));
const ofTypeIn = <T extends Resource>(list: Resource[], type: T['resourceType']) => list.filter((r): r is T => r.resourceType === type);
const ofType = <T extends Resource>(type: T['resourceType']) => ofTypeIn<T>(resources, type);
const SENSITIVE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';

/** Every Reference in a resource, wherever it sits. */
function references(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(references);
  if (typeof value !== 'object' || value === null) return [];
  const found = typeof (value as Reference).reference === 'string' ? [(value as Reference).reference as string] : [];
  return [...found, ...Object.values(value).flatMap(references)];
}

describe('synthetic resources', () => {
  it('are valid FHIR R4 (the validator Baton runs on every write), every one of a 200-member population', () => {
    const validator = createResourceValidator([]);
    expect(resources.length).toBeGreaterThan(1_200);
    for (const resource of resources) expect(() => validator.validate(resource), `${resource.resourceType}/${resource.id}`).not.toThrow();
    expect(new Set(resources.map((r) => r.resourceType))).toEqual(
      new Set(['Organization', 'Patient', 'Coverage', 'Encounter', 'ExplanationOfBenefit', 'Condition', 'Observation', 'MedicationRequest', 'Procedure']),
    );
  });

  it('reference only resources of the population and the payer Organization', () => {
    for (const resource of resources) {
      for (const reference of references(resource)) {
        if (reference === 'Organization/baton-payer') continue;
        expect(byReference.has(reference), `${resource.resourceType}/${resource.id} → ${reference}`).toBe(true);
      }
    }
  });

  it('give each Patient a US Core shape: member identifier of type MB, name, gender, birth date, address', () => {
    for (const patient of ofType<Patient>('Patient')) {
      expect(patient.identifier?.[0]).toMatchObject({ use: 'usual', system: MEMBER_ID_SYSTEM, type: { coding: [{ code: 'MB' }] }, value: expect.stringMatching(/^W\d{11}$/) });
      expect(patient.name?.[0]).toMatchObject({ use: 'official', family: expect.any(String), given: expect.any(Array) });
      expect(['male', 'female']).toContain(patient.gender);
      expect(patient.birthDate).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(patient.address?.[0]).toMatchObject({ use: 'home', city: expect.any(String), state: expect.any(String), postalCode: expect.any(String) });
    }
  });

  it('make each claim CARIN-like: claim id, the member and their Coverage, items adding up to the totals', () => {
    const eobs = ofType<ExplanationOfBenefit>('ExplanationOfBenefit');
    expect(eobs.length).toBeGreaterThan(100);
    for (const eob of eobs) {
      expect(eob.identifier?.[0]).toMatchObject({ system: CLAIM_ID_SYSTEM, type: { coding: [{ code: 'uc' }] } });
      const member = eob.patient.reference?.split('/')[1].split('-').pop();
      expect(eob.insurance[0]).toEqual({ focal: true, coverage: { reference: `Coverage/seed21-coverage-${member}` } });
      expect(eob.insurer.reference).toBe('Organization/baton-payer');
      expect(eob.item?.length).toBeGreaterThanOrEqual(1);
      const sum = (code: string) => (eob.item ?? []).reduce((total, item) => total + (item.adjudication?.find((a) => a.category.coding?.[0].code === code)?.amount?.value ?? 0), 0);
      for (const code of ['submitted', 'benefit']) {
        expect(eob.total?.find((t) => t.category.coding?.[0].code === code)?.amount.value).toBeCloseTo(sum(code), 2);
      }
    }
    expect(new Set(eobs.map((e) => e.identifier?.[0].value)).size).toBe(eobs.length);
  });

  it('label sensitive data: the Condition and everything from its visit carry its v3-ActCode label', () => {
    const many = [...generatePopulation(populationOptions({ members: 3_000, seed: 21 }))].flatMap((chunk) => chunk.resources);
    const labelled = many.filter((r) => r.meta?.security?.length);
    const codes = new Set(labelled.flatMap((r) => r.meta?.security?.map((s) => `${s.system}|${s.code}`) ?? []));
    expect(codes).toEqual(new Set(['PSY', 'ETH', 'HIV'].map((code) => `${SENSITIVE}|${code}`)));
    const sensitiveConditions = labelled.filter((r): r is Condition => r.resourceType === 'Condition');
    expect(sensitiveConditions.length).toBeGreaterThan(50);
    const all = new Map(many.map((r) => [`${r.resourceType}/${r.id}`, r]));
    const claimOf = new Map(
      many.filter((r): r is ExplanationOfBenefit => r.resourceType === 'ExplanationOfBenefit').map((eob) => [eob.item?.[0].encounter?.[0].reference, eob]),
    );
    for (const condition of sensitiveConditions) {
      const label = condition.meta?.security?.[0].code;
      const encounter = all.get(condition.encounter?.reference as string) as Encounter;
      expect(encounter.meta?.security?.map((s) => s.code)).toContain(label);
      expect(claimOf.get(`Encounter/${encounter.id}`)?.meta?.security?.map((s) => s.code)).toContain(label);
    }
    // Most clinical data is not sensitive.
    expect(labelled.length / many.length).toBeLessThan(0.1);
  });

  it.each([
    [123_456_789, '1234567893'],
    [100_000_000, '1000000004'],
  ])('computes NPI check digits with the 80840 prefix (%i)', (base, expected) => {
    expect(npi(base)).toBe(expected);
  });

  it('draw a longer history period by period: the latest period as by default, earlier ones within coverage, every id unique and every reference resolved', () => {
    const options = { members: 200, seed: 21, payerRecords: true };
    const of = (extra: object) => [...generatePopulation(populationOptions({ ...options, ...extra }))].flatMap((chunk) => chunk.resources);
    const usual = of({});
    const longer = of({ careYears: 5, carePeriodMonths: 6 });
    const ids = (list: Resource[]) => list.map((r) => `${r.resourceType}/${r.id}`);
    expect(new Set(ids(longer)).size).toBe(longer.length);
    expect(longer.length).toBeGreaterThan(3 * usual.length);
    const index = new Set(ids(longer));
    for (const resource of longer) {
      for (const reference of references(resource)) if (reference !== 'Organization/baton-payer') expect(index.has(reference), reference).toBe(true);
    }
    // One period of three years is the default: asking for it by name changes nothing.
    expect(of({ careYears: 3, carePeriodMonths: 36 })).toEqual(usual);
    // Care stays within each member's coverage, and within the years asked for.
    const coverages = new Map(ofTypeIn<Coverage>(longer, 'Coverage').map((c) => [c.beneficiary.reference, c.period]));
    for (const encounter of ofTypeIn<Encounter>(longer, 'Encounter')) {
      const period = coverages.get(encounter.subject?.reference) as Period;
      const start = (encounter.period?.start as string).slice(0, 10);
      expect(start >= (period.start as string), encounter.id).toBe(true);
      const end = period.end ?? '2026-07-01';
      expect(Date.parse(end) - Date.parse(start), encounter.id).toBeLessThanOrEqual(5 * 366 * 86_400_000);
    }
  });
});
