import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoMembers, seedDemoData } from '../../src/seed/demo.ts';
import { type GroundTruthMember, groundTruth } from '../../src/seed/ground-truth.ts';
import { PopulationExistsError, type LoadProgress, loadPopulation } from '../../src/seed/load.ts';
import { populationOptions } from '../../src/seed/population.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

const OPTIONS = populationOptions({ members: 150, seed: 77 });
const truth = [...groundTruth(OPTIONS)];
let baton: TestBaton;

beforeAll(async () => {
  baton = await startBaton();
});
afterAll(async () => {
  await baton?.close();
});

const total = async (path: string) => (await body(await baton.request(`${path}${path.includes('?') ? '&' : '?'}_summary=count`))).total as number;
const find = (has: (m: GroundTruthMember) => boolean) => truth.find(has) as GroundTruthMember;

describe('loading a population', () => {
  it('writes N members with their resources, searchable over HTTP', async () => {
    const progress: LoadProgress[] = [];
    const summary = await loadPopulation(baton.db, OPTIONS, { progress: (p) => progress.push(p) });
    expect(summary).toMatchObject({ members: 150, households: new Set(truth.map((m) => m.householdIndex)).size });
    expect(summary.total).toBe(Object.values(summary.resources).reduce((a, b) => a + b, 0));
    expect(progress.at(-1)).toMatchObject({ members: 150, resources: summary.total });

    expect(await total('/fhir/Patient')).toBe(150);
    expect(await total('/fhir/Coverage')).toBe(150);
    expect(await total('/fhir/ExplanationOfBenefit')).toBe(summary.resources.ExplanationOfBenefit);

    const member = truth[0];
    const byName = await body(await baton.request(`/fhir/Patient?family=${encodeURIComponent(member.names[0].family)}&birthdate=${member.birthDate}`));
    expect(byName.entry.map((e: any) => e.resource.id)).toContain(member.patientId);
    const byId = await body(await baton.request(`/fhir/Patient?identifier=https://baton.example.org/fhir/member-id|${member.memberId}`));
    expect(byId.entry.map((e: any) => e.resource.id)).toEqual([member.patientId]);
    const read = await body(await baton.request(`/fhir/Patient/${member.patientId}`));
    expect(read.meta.versionId).toBe('1');
    const household = truth.filter((m) => m.householdIndex === member.householdIndex);
    expect(await total(`/fhir/Coverage?subscriber=Patient/${member.patientId}`)).toBe(household.length);
  });

  it('indexes identity history: a maiden name and a legacy member id still find the member', async () => {
    const married = find((m) => m.names.some((n) => n.use === 'maiden'));
    const maiden = married.names.find((n) => n.use === 'maiden')?.family as string;
    const found = await body(await baton.request(`/fhir/Patient?family:exact=${encodeURIComponent(maiden)}&birthdate=${married.birthDate}`));
    expect(found.entry.map((e: any) => e.resource.id)).toContain(married.patientId);
    const legacy = find((m) => m.legacyMemberId !== undefined);
    const byLegacy = await body(await baton.request(`/fhir/Patient?identifier=${legacy.legacyMemberId?.value}`));
    expect(byLegacy.entry.map((e: any) => e.resource.id)).toEqual([legacy.patientId]);
  });

  it('lets sensitive data be searched by its security label', async () => {
    const labelled = await total('/fhir/Condition?_security=http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY,http://terminology.hl7.org/CodeSystem/v3-ActCode|ETH,http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV');
    expect(labelled).toBeGreaterThan(0);
    expect(labelled).toBeLessThan(await total('/fhir/Condition'));
  });

  it('refuses to load a population whose ids are already there, and writes nothing', async () => {
    await expect(loadPopulation(baton.db, OPTIONS)).rejects.toThrow(PopulationExistsError);
    expect(await total('/fhir/Patient')).toBe(150);
    const other = await loadPopulation(baton.db, populationOptions({ members: 10, seed: 77, idPrefix: 'other' }));
    expect(other.members).toBe(10);
    expect(await total('/fhir/Patient')).toBe(160);
  });

  it('stops before writing a batch whose validation fails', async () => {
    const options = populationOptions({ members: 20, seed: 5, idPrefix: 'rejected' });
    await expect(
      loadPopulation(baton.db, options, {
        validate: (resource) => {
          if (resource.resourceType === 'Observation') throw new Error('invalid');
        },
      }),
    ).rejects.toThrow('invalid');
    expect((await baton.request('/fhir/Patient/rejected-patient-1')).status).toBe(404);
  });

  it('seeds the demo population once, with the documented ids', async () => {
    const written = await seedDemoData(baton.ctx);
    expect(written).toBeGreaterThan(200);
    expect(await seedDemoData(baton.ctx)).toBe(0);
    const members = demoMembers();
    const [first] = members;
    // As the README describes the demo: a Jr/Sr pair and twins.
    expect(members[2].namesakeOf).toBe('demo-patient-1');
    expect(members[17].relations).toContainEqual({ patientId: 'demo-patient-19', kind: 'twin' });
    const patient = await body(await baton.request('/fhir/Patient/demo-patient-1'));
    expect(patient.name[0].family).toBe(first.names[0].family);
    expect((await baton.request('/fhir/Patient/demo-patient-25')).status).toBe(200);
    expect((await baton.request('/fhir/Patient/demo-patient-26')).status).toBe(404);
    expect((await baton.request('/fhir/Coverage/demo-coverage-25')).status).toBe(200);
    expect((await baton.request('/fhir/ExplanationOfBenefit/demo-eob-3-1')).status).toBe(200);
  });
});
