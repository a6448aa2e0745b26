import type { Resource } from '@medplum/fhirtypes';
import { type FhirContext, update } from '../fhir/interactions.ts';
import { OWN_ORGANIZATION_ID } from '../fhir/own-organization.ts';
import { readCurrent } from '../fhir/store.ts';

/**
 * A small synthetic population for `npm start`: three members of this payer, each with a
 * Coverage, an ExplanationOfBenefit, an Encounter, a Condition and an Observation. All names,
 * dates and numbers are invented.
 */
interface DemoMember {
  key: string;
  family: string;
  given: string[];
  gender: 'male' | 'female';
  birthDate: string;
  memberId: string;
  condition: { code: string; display: string };
  observation: { code: string; display: string; value: number; unit: string };
}

const MEMBERS: DemoMember[] = [
  {
    key: '1', family: 'Demoson', given: ['Avery', 'J'], gender: 'female', birthDate: '1971-03-14', memberId: 'DEMO-M-0001',
    condition: { code: '44054006', display: 'Diabetes mellitus type 2' },
    observation: { code: '4548-4', display: 'Hemoglobin A1c/Hemoglobin.total in Blood', value: 7.1, unit: '%' },
  },
  {
    key: '2', family: 'Samplefield', given: ['Jordan'], gender: 'male', birthDate: '1985-11-02', memberId: 'DEMO-M-0002',
    condition: { code: '38341003', display: 'Hypertensive disorder' },
    observation: { code: '8480-6', display: 'Systolic blood pressure', value: 142, unit: 'mm[Hg]' },
  },
  {
    key: '3', family: 'Testwell', given: ['Riley', 'Q'], gender: 'female', birthDate: '1990-07-21', memberId: 'DEMO-M-0003',
    condition: { code: '195967001', display: 'Asthma' },
    observation: { code: '19935-6', display: 'Maximum expiratory gas flow Respiratory system airway', value: 410, unit: 'L/min' },
  },
];

const MEMBER_ID_SYSTEM = 'https://baton.example.org/fhir/member-id';

function memberResources(m: DemoMember): Resource[] {
  const patient = `Patient/demo-patient-${m.key}`;
  const coverage = `Coverage/demo-coverage-${m.key}`;
  const payer = { reference: `Organization/${OWN_ORGANIZATION_ID}` };
  return [
    {
      resourceType: 'Patient', id: `demo-patient-${m.key}`,
      identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] }, system: MEMBER_ID_SYSTEM, value: m.memberId }],
      name: [{ family: m.family, given: m.given }], gender: m.gender, birthDate: m.birthDate,
      address: [{ line: [`${100 + Number(m.key)} Example Street`], city: 'Springfield', state: 'MA', postalCode: '01101' }],
    },
    {
      resourceType: 'Coverage', id: `demo-coverage-${m.key}`, status: 'active', subscriberId: m.memberId,
      beneficiary: { reference: patient }, relationship: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/subscriber-relationship', code: 'self' }] },
      period: { start: '2022-01-01' }, payor: [payer],
      class: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/coverage-class', code: 'group' }] }, value: 'DEMO-GROUP-1' }],
    },
    {
      resourceType: 'Encounter', id: `demo-encounter-${m.key}`, status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
      subject: { reference: patient }, period: { start: '2024-02-10T09:00:00Z', end: '2024-02-10T09:30:00Z' },
    },
    {
      resourceType: 'Condition', id: `demo-condition-${m.key}`,
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
      code: { coding: [{ system: 'http://snomed.info/sct', ...m.condition }] },
      subject: { reference: patient }, encounter: { reference: `Encounter/demo-encounter-${m.key}` }, onsetDateTime: '2019-05-01',
    },
    {
      resourceType: 'Observation', id: `demo-observation-${m.key}`, status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: m.observation.code, display: m.observation.display }] },
      subject: { reference: patient }, encounter: { reference: `Encounter/demo-encounter-${m.key}` }, effectiveDateTime: '2024-02-10T09:15:00Z',
      valueQuantity: { value: m.observation.value, unit: m.observation.unit, system: 'http://unitsofmeasure.org', code: m.observation.unit },
    },
    {
      resourceType: 'ExplanationOfBenefit', id: `demo-eob-${m.key}`, status: 'active', use: 'claim', outcome: 'complete',
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
      patient: { reference: patient }, created: '2024-02-20T00:00:00Z', insurer: payer,
      provider: { display: 'Demo Clinic' }, insurance: [{ focal: true, coverage: { reference: coverage } }],
      billablePeriod: { start: '2024-02-10', end: '2024-02-10' },
      item: [{ sequence: 1, productOrService: { coding: [{ system: 'http://www.ama-assn.org/go/cpt', code: '99213' }] }, servicedDate: '2024-02-10' }],
    },
  ] as Resource[];
}

/** Loads the demo population unless it is already there; answers how many resources it wrote. */
export async function seedDemoData(ctx: FhirContext): Promise<number> {
  if (await readCurrent(ctx.q, 'Patient', 'demo-patient-1')) return 0;
  const resources = MEMBERS.flatMap(memberResources);
  await ctx.db.transaction(async (tx) => {
    const inTx: FhirContext = { ...ctx, q: tx, inTransaction: true };
    for (const resource of resources) await update(inTx, resource.resourceType, resource.id as string, resource);
  });
  return resources.length;
}
