import type { ExplanationOfBenefit, MedicationDispense, MedicationRequest, Provenance, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResourceValidator } from '../../src/fhir/validation.ts';
import { DEMO_POPULATION, seedDemoData } from '../../src/seed/demo.ts';
import { generatePopulation, populationOptions } from '../../src/seed/population.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/**
 * Issue 6, "Demo data includes these resource types for every member": the demo's pharmacy
 * fills, prior authorizations and Provenance (src/seed/payer-records.ts), as generated and as a
 * partner reads them over HTTP after `npm start` has seeded them.
 */

const demo: Resource[] = [...generatePopulation(DEMO_POPULATION)].flatMap((chunk) => chunk.resources);
const ofType = <T extends Resource>(type: T['resourceType']) => demo.filter((r): r is T => r.resourceType === type);
const memberIds = ofType('Patient').map((p) => p.id as string);
const references = (value: unknown): string[] => {
  if (Array.isArray(value)) return value.flatMap(references);
  if (typeof value !== 'object' || value === null) return [];
  const own = typeof (value as { reference?: unknown }).reference === 'string' ? [(value as { reference: string }).reference] : [];
  return [...own, ...Object.values(value).flatMap(references)];
};

describe('the demo population', () => {
  it('is valid FHIR R4 and refers only to its own resources and the payer', () => {
    const validator = createResourceValidator([]);
    const known = new Set(demo.map((r) => `${r.resourceType}/${r.id}`));
    for (const resource of demo) {
      expect(() => validator.validate(resource), `${resource.resourceType}/${resource.id}`).not.toThrow();
      for (const reference of references(resource)) if (reference !== 'Organization/baton-payer') expect(known.has(reference), `${resource.resourceType}/${resource.id} → ${reference}`).toBe(true);
    }
  });

  it('gives every member one prior authorization (an ExplanationOfBenefit of use preauthorization) on their Coverage', () => {
    const authorizations = ofType<ExplanationOfBenefit>('ExplanationOfBenefit').filter((eob) => eob.use === 'preauthorization');
    expect(authorizations.map((eob) => eob.patient.reference).sort()).toEqual(memberIds.map((id) => `Patient/${id}`).sort());
    for (const eob of authorizations) {
      const n = eob.patient.reference?.split('-').pop();
      expect(eob).toMatchObject({ id: `demo-prior-auth-${n}`, insurance: [{ focal: true, coverage: { reference: `Coverage/demo-coverage-${n}` } }], outcome: 'complete' });
      expect(eob.preAuthRef?.[0]).toBe(eob.identifier?.[0].value);
    }
  });

  it("gives every member a Provenance naming them, their Coverage and their claims that carry no sensitivity label, authored and transmitted by the payer", () => {
    const provenances = ofType<Provenance>('Provenance');
    expect(provenances).toHaveLength(memberIds.length);
    for (const provenance of provenances) {
      const [patient, coverage, ...claims] = provenance.target.map((t) => t.reference as string);
      const n = patient.split('-').pop();
      expect([patient, coverage]).toEqual([`Patient/demo-patient-${n}`, `Coverage/demo-coverage-${n}`]);
      const expected = ofType<ExplanationOfBenefit>('ExplanationOfBenefit').filter((eob) => eob.patient.reference === patient && !eob.meta?.security);
      expect(claims.sort()).toEqual(expected.map((eob) => `ExplanationOfBenefit/${eob.id}`).sort());
      expect(provenance.agent.map((a) => [a.type?.coding?.[0].code, a.who.reference])).toEqual([
        ['author', 'Organization/baton-payer'],
        ['transmitter', 'Organization/baton-payer'],
      ]);
    }
  });

  it('fills every prescription, with its medication, its member and its sensitivity label, after it was written', () => {
    const dispenses = ofType<MedicationDispense>('MedicationDispense');
    const requests = ofType<MedicationRequest>('MedicationRequest');
    expect(requests.length).toBeGreaterThan(5);
    for (const request of requests) {
      const fills = dispenses.filter((d) => d.authorizingPrescription?.[0].reference === `MedicationRequest/${request.id}`);
      expect(fills.map((d) => d.type?.coding?.[0].code)).toEqual(request.status === 'active' && fills.length === 2 ? ['FF', 'RF'] : ['FF']);
      for (const fill of fills) {
        expect(fill).toMatchObject({ status: 'completed', subject: request.subject, medicationCodeableConcept: request.medicationCodeableConcept });
        expect(fill.meta?.security).toEqual(request.meta?.security);
        expect(Date.parse(fill.whenHandedOver as string)).toBeGreaterThanOrEqual(Date.parse((request.authoredOn as string).slice(0, 10)));
      }
    }
    expect(dispenses.length).toBeGreaterThanOrEqual(requests.length);
  });

  it("leaves the members' other resources as a population without payer records has them", () => {
    const without = [...generatePopulation(populationOptions({ ...DEMO_POPULATION, payerRecords: false }))].flatMap((chunk) => chunk.resources);
    const added = new Set(['MedicationDispense', 'Provenance']);
    const kept = demo.filter((r) => !added.has(r.resourceType) && !(r.resourceType === 'ExplanationOfBenefit' && (r as ExplanationOfBenefit).use === 'preauthorization'));
    expect(kept).toEqual(without);
  });
});

describe('the seeded demo over HTTP', () => {
  let baton: TestBaton;
  beforeAll(async () => {
    baton = await startBaton();
    await seedDemoData(baton.ctx);
  });
  afterAll(async () => {
    await baton?.close();
  });

  it("a member's $everything holds their prior authorization, Provenance and pharmacy fills", async () => {
    for (const id of ['demo-patient-1', 'demo-patient-21']) {
      const everything = await body(await baton.request(`/fhir/Patient/${id}/$everything?_count=500`));
      const resources = (everything.entry ?? []).map((e: { resource: Resource }) => e.resource) as Resource[];
      const expected = demo.filter((r) => ['MedicationDispense', 'Provenance', 'ExplanationOfBenefit'].includes(r.resourceType) && references(r).includes(`Patient/${id}`));
      const got = resources.filter((r) => ['MedicationDispense', 'Provenance', 'ExplanationOfBenefit'].includes(r.resourceType));
      expect(got.map((r) => `${r.resourceType}/${r.id}`).sort()).toEqual(expected.map((r) => `${r.resourceType}/${r.id}`).sort());
      expect(got.some((r) => r.resourceType === 'ExplanationOfBenefit' && (r as ExplanationOfBenefit).use === 'preauthorization')).toBe(true);
      expect(got.some((r) => r.resourceType === 'Provenance')).toBe(true);
    }
  });

  it('the pharmacy fills are searchable by patient and by prescription', async () => {
    const fill = ofType<MedicationDispense>('MedicationDispense')[0];
    const patient = fill.subject?.reference as string;
    const byPatient = await body(await baton.request(`/fhir/MedicationDispense?patient=${patient}`));
    expect(byPatient.entry.map((e: { resource: Resource }) => e.resource.id)).toContain(fill.id);
    const byPrescription = await body(await baton.request(`/fhir/MedicationDispense?prescription=${fill.authorizingPrescription?.[0].reference}`));
    expect(byPrescription.entry.map((e: { resource: Resource }) => e.resource.id)).toContain(fill.id);
  });
});
