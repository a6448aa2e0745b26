import type { ExplanationOfBenefit, MedicationDispense, MedicationRequest, Provenance, Reference, Resource } from '@medplum/fhirtypes';
import { OWN_ORGANIZATION_ID } from '../fhir/own-organization.ts';
import { dayOf, isoDate, isoDateTime } from './dates.ts';
import type { SyntheticMember } from './households.ts';
import { CLAIM_ID_SYSTEM } from './identifiers.ts';
import type { ProviderDirectory } from './providers.ts';
import { Random } from './random.ts';

/*
 * What a payer holds about a member besides claims and clinical data, as PDex hands it over
 * payer to payer: the pharmacy fills of each prescription (MedicationDispense, PDex
 * pdex-medicationdispense), a prior authorization (ExplanationOfBenefit use=preauthorization,
 * PDex pdex-priorauthorization) and the Provenance of the member's records (PDex
 * pdex-provenance: this payer authored and transmits them). Drawn from a random stream of its
 * own, so adding them leaves the member's other resources exactly as they were.
 */

export interface PayerRecordsContext {
  seed: number;
  idPrefix: string;
  asOf: number;
  providers: ProviderDirectory;
}

const CPT = 'http://www.ama-assn.org/go/cpt';
const UCUM = 'http://unitsofmeasure.org';
const ADJUDICATION = 'http://terminology.hl7.org/CodeSystem/adjudication';
const ACT_CODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const PARTICIPANT_TYPE = 'http://terminology.hl7.org/CodeSystem/provenance-participant-type';
/** PDex ProvenanceAgentRoleType: the payer that sends the records on. */
const PDEX_AGENT_ROLE = 'http://hl7.org/fhir/us/davinci-pdex/CodeSystem/ProvenanceAgentRoleType';

/** Services plans commonly authorize before they are given: CPT, display, charge range, units, at a hospital. */
const AUTHORIZED_SERVICES: { code: string; display: string; charge: [number, number]; units: number; hospital: boolean }[] = [
  { code: '72148', display: 'Magnetic resonance imaging, spinal canal and contents, lumbar; without contrast material', charge: [1_200, 2_600], units: 1, hospital: true },
  { code: '74177', display: 'Computed tomography, abdomen and pelvis; with contrast material(s)', charge: [900, 2_100], units: 1, hospital: true },
  { code: '95810', display: 'Polysomnography; age 6 years or older, sleep staging with 4 or more additional parameters of sleep, attended by a technologist', charge: [1_800, 3_400], units: 1, hospital: true },
  { code: '97110', display: 'Therapeutic procedure, 1 or more areas, each 15 minutes; therapeutic exercises', charge: [90, 180], units: 12, hospital: false },
];
/** How long an authorization stays valid, and how far after the request the service is planned. */
const AUTHORIZATION_DAYS = 90;
const PLANNED_WITHIN_DAYS = 30;
/** A prescription is filled within this many days; an active one is refilled once its supply runs out. */
const FILL_DELAY_DAYS = 3;
const DAYS_SUPPLY = 30;

const round2 = (value: number) => Number(value.toFixed(2));
const usd = (value: number) => ({ value: round2(value), currency: 'USD' as const });

/** The member's payer records; `clinical` is what the generator wrote for the member (its claims, prescriptions). */
export function payerRecords(ctx: PayerRecordsContext, member: SyntheticMember, coverageId: string, clinical: readonly Resource[]): Resource[] {
  const rng = new Random(ctx.seed, ctx.idPrefix, 'payer-records', member.ordinal);
  const n = member.ordinal;
  const subject = { reference: `Patient/${member.patientId}` };
  const resources: Resource[] = [];
  let fills = 0;
  for (const request of clinical.filter((r): r is MedicationRequest => r.resourceType === 'MedicationRequest')) {
    const first = Math.min(dayOf((request.authoredOn as string).slice(0, 10)) + rng.int(0, FILL_DELAY_DAYS), ctx.asOf);
    const days = request.status === 'active' && first + DAYS_SUPPLY <= ctx.asOf ? [first, first + DAYS_SUPPLY] : [first];
    days.forEach((day, i) => resources.push(dispense(request, `${ctx.idPrefix}-medication-dispense-${n}-${++fills}`, day, i > 0, rng)));
  }
  const authorization = priorAuthorization(rng, ctx, member, coverageId);
  resources.push(authorization);
  resources.push(provenance(ctx, member, coverageId, [...clinical, authorization], subject));
  return resources;
}

/** One pharmacy fill of a prescription: what the pharmacy claim tells the payer (PDex MedicationDispense). */
function dispense(request: MedicationRequest, id: string, day: number, refill: boolean, rng: Random): MedicationDispense {
  const display = request.medicationCodeableConcept?.text ?? '';
  const inhaler = /Inhaler/i.test(display);
  const perDay = /twice daily/i.test(request.dosageInstruction?.[0]?.text ?? '') ? 2 : 1;
  return {
    resourceType: 'MedicationDispense',
    id,
    // A fill of a prescription for a sensitive condition is as sensitive as the prescription.
    ...(request.meta?.security ? { meta: { security: request.meta.security } } : {}),
    status: 'completed',
    medicationCodeableConcept: request.medicationCodeableConcept,
    subject: request.subject,
    authorizingPrescription: [{ reference: `MedicationRequest/${request.id}` }],
    type: { coding: [{ system: ACT_CODE, code: refill ? 'RF' : 'FF', display: refill ? 'Refill' : 'First Fill' }] },
    quantity: inhaler ? { value: 1, unit: 'inhaler' } : { value: DAYS_SUPPLY * perDay, unit: 'tablet', system: UCUM, code: '{tbl}' },
    daysSupply: { value: DAYS_SUPPLY, unit: 'days', system: UCUM, code: 'd' },
    whenHandedOver: isoDateTime(day, rng.int(9 * 60, 19 * 60)),
    ...(request.dosageInstruction ? { dosageInstruction: request.dosageInstruction } : {}),
  };
}

/** A prior authorization the plan approved for the member (PDex pdex-priorauthorization: an ExplanationOfBenefit of use preauthorization). */
function priorAuthorization(rng: Random, ctx: PayerRecordsContext, member: SyntheticMember, coverageId: string): ExplanationOfBenefit {
  const service = rng.pick(AUTHORIZED_SERVICES);
  const coverageEnd = member.coverage.end ? Math.min(dayOf(member.coverage.end), ctx.asOf) : ctx.asOf;
  const requested = rng.int(Math.min(dayOf(member.coverage.start as string), coverageEnd), coverageEnd);
  const provider = rng.pick(service.hospital ? ctx.providers.hospitals : ctx.providers.clinics);
  const submitted = round2(rng.between(service.charge[0], service.charge[1]) * service.units);
  const eligible = round2(submitted * rng.between(0.55, 0.85));
  const reference = `PA${isoDate(requested).replaceAll('-', '')}${String(member.ordinal).padStart(8, '0')}`;
  return {
    resourceType: 'ExplanationOfBenefit',
    id: `${ctx.idPrefix}-prior-auth-${member.ordinal}`,
    identifier: [
      {
        type: { coding: [{ system: 'http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType', code: 'uc', display: 'Unique Claim ID' }] },
        system: CLAIM_ID_SYSTEM,
        value: reference,
      },
    ],
    status: 'active',
    type: {
      coding: [
        { system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: service.hospital ? 'institutional' : 'professional', display: service.hospital ? 'Institutional' : 'Professional' },
      ],
    },
    use: 'preauthorization',
    patient: { reference: `Patient/${member.patientId}` },
    created: isoDateTime(requested, rng.int(8 * 60, 17 * 60)),
    insurer: { reference: `Organization/${OWN_ORGANIZATION_ID}` },
    provider: { reference: `Organization/${provider}` },
    outcome: 'complete',
    disposition: 'Approved',
    preAuthRef: [reference],
    preAuthRefPeriod: [{ start: isoDate(requested), end: isoDate(requested + AUTHORIZATION_DAYS) }],
    insurance: [{ focal: true, coverage: { reference: `Coverage/${coverageId}` } }],
    item: [
      {
        sequence: 1,
        productOrService: { coding: [{ system: CPT, code: service.code, display: service.display }] },
        servicedDate: isoDate(requested + rng.int(1, PLANNED_WITHIN_DAYS)),
        quantity: { value: service.units },
        adjudication: [
          { category: { coding: [{ system: ADJUDICATION, code: 'submitted' }] }, amount: usd(submitted) },
          { category: { coding: [{ system: ADJUDICATION, code: 'eligible' }] }, amount: usd(eligible) },
        ],
      },
    ],
  };
}

/**
 * The Provenance of the member's records as this payer holds them: authored and transmitted by
 * the payer. It names the Patient (which puts it in the member's compartment), the Coverage and
 * the claims and authorizations; a labelled (sensitive) resource is left out, so the Provenance
 * never points at what a consent may withhold.
 */
function provenance(ctx: PayerRecordsContext, member: SyntheticMember, coverageId: string, records: readonly Resource[], subject: Reference): Provenance {
  const claims = records.filter((r) => r.resourceType === 'ExplanationOfBenefit' && !r.meta?.security?.length).map((r) => ({ reference: `ExplanationOfBenefit/${r.id}` }));
  const payer = { reference: `Organization/${OWN_ORGANIZATION_ID}` };
  return {
    resourceType: 'Provenance',
    id: `${ctx.idPrefix}-provenance-${member.ordinal}`,
    target: [subject, { reference: `Coverage/${coverageId}` }, ...claims],
    recorded: isoDateTime(ctx.asOf, 0),
    agent: [
      { type: { coding: [{ system: PARTICIPANT_TYPE, code: 'author', display: 'Author' }] }, who: payer },
      { type: { coding: [{ system: PDEX_AGENT_ROLE, code: 'transmitter', display: 'Transmitter' }] }, who: payer },
    ],
  };
}
