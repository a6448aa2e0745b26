import type {
  Condition,
  Encounter,
  ExplanationOfBenefit,
  ExplanationOfBenefitItem,
  Meta,
  MedicationRequest,
  Observation,
  Patient,
  Procedure,
  Quantity,
  Reference,
  Resource,
} from '@medplum/fhirtypes';
import { OWN_ORGANIZATION_ID } from '../fhir/own-organization.ts';
import { YEAR_DAYS, ageOn, dayOf, isoDate, isoDateTime } from './dates.ts';
import type { SyntheticMember } from './households.ts';
import { CLAIM_ID_SYSTEM } from './identifiers.ts';
import type { ProviderDirectory } from './providers.ts';
import { Random } from './random.ts';
import type { BilledService, ConditionDefinition, ObservationDefinition, SecurityLabel, SeedTables } from './tables.ts';

/*
 * A member's care as a payer sees it: visits in the last three years of coverage (by default;
 * a history can be longer, and drawn in shorter periods, each independently), each an
 * Encounter with the ExplanationOfBenefit that paid for it (CARIN-like: claim id, items with
 * CPT codes and adjudication, totals, payment), the Conditions it addressed, its Observations,
 * Procedures and MedicationRequests. Everything tied to a sensitive condition (mental health,
 * substance use, HIV) carries that condition's security label, so consent rules can leave it out.
 */

export interface ClinicalContext {
  seed: number;
  idPrefix: string;
  asOf: number;
  tables: SeedTables;
  providers: ProviderDirectory;
  /** Years of the member's coverage with care in them, and the length of the periods they are drawn in (PopulationOptions). */
  careYears: number;
  carePeriodMonths: number;
}

/** Ids of visits and conditions of a period after the first are numbered from period × this (a period has at most 4 of each). */
const PERIOD_NUMBERING = 10;
/** Visits for conditions; more conditions are addressed at the same visits. */
const MAX_CONDITION_VISITS = 3;
const MAX_CONDITIONS = 4;
/** Chance a member has a preventive visit in the window: children, adults. */
const PREVENTIVE_VISIT = { child: 0.8, adult: 0.55 };
/** Chance a condition with medications has one prescribed. */
const PRESCRIBED = 0.75;
/** Chance an adult's preventive visit includes a lipid panel (40 and over). */
const LIPID_SCREENING = 0.4;
const COPAYS = [0, 20, 25, 30, 40];
const EMERGENCY_COPAY = 150;

const SECURITY_DISPLAY: Record<SecurityLabel, string> = {
  PSY: 'psychiatry information sensitivity',
  ETH: 'substance abuse information sensitivity',
  HIV: 'HIV/AIDS information sensitivity',
};

const CPT = 'http://www.ama-assn.org/go/cpt';
const SNOMED = 'http://snomed.info/sct';
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const ADJUDICATION = 'http://terminology.hl7.org/CodeSystem/adjudication';

type VisitKind = 'preventive' | 'office' | 'emergency';

interface Visit {
  kind: VisitKind;
  day: number;
  conditions: ConditionDefinition[];
  /** Observation keys with the range values are drawn from. */
  observations: [string, [number, number]][];
  procedures: string[];
  medications: string[];
}

function prevalenceAt(condition: ConditionDefinition, age: number): number {
  let p = 0;
  for (const [from, probability] of condition.prevalence) if (age >= from) p = probability;
  return p;
}

function securityMeta(labels: Iterable<SecurityLabel>): { meta?: Meta } {
  const security = [...new Set(labels)].sort().map((code) => ({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code, display: SECURITY_DISPLAY[code] }));
  return security.length ? { meta: { security } } : {};
}

const round = (value: number, decimals: number) => Number(value.toFixed(decimals));
const usd = (value: number) => ({ value: round(value, 2), currency: 'USD' as const });

function preventiveService(age: number): string {
  if (age < 1) return 'preventive-infant';
  if (age < 5) return 'preventive-early-childhood';
  if (age < 12) return 'preventive-late-childhood';
  if (age < 18) return 'preventive-adolescent';
  if (age < 40) return 'preventive-18-39';
  if (age < 65) return 'preventive-40-64';
  return 'preventive-65';
}

/** The visits of the member's window, in date order. */
function planVisits(rng: Random, tables: SeedTables, member: SyntheticMember, birth: number, window: [number, number]): { visits: Visit[]; conditions: ConditionDefinition[] } {
  const catalogue = tables.clinical;
  const age = ageOn(birth, window[1]);
  // Every condition is drawn, so a member's draws do not depend on which came true before.
  const present = catalogue.conditions.filter((c) => rng.chance(prevalenceAt(c, age)));
  const conditions = rng.shuffle(present).slice(0, MAX_CONDITIONS);
  const visits: Visit[] = [];
  const day = () => rng.int(window[0], window[1]);
  if (rng.chance(age < 18 ? PREVENTIVE_VISIT.child : PREVENTIVE_VISIT.adult)) {
    const visitDay = day();
    const visitAge = ageOn(birth, visitDay);
    const normal = (key: string): [string, [number, number]] => [key, catalogue.observations[key].normal];
    const observations = visitAge >= 18 ? [normal('bp'), normal('bmi')] : [];
    if (visitAge >= 40 && rng.chance(LIPID_SCREENING)) observations.push(normal('cholesterol'), normal('ldl'));
    const procedures = catalogue.screenings
      .filter((s) => visitAge >= s.ages[0] && visitAge <= s.ages[1] && (s.gender === 'any' || s.gender === member.gender) && rng.chance(s.rate))
      .map((s) => s.procedure);
    visits.push({ kind: 'preventive', day: visitDay, conditions: [], observations, procedures, medications: [] });
  }
  const conditionVisits: Visit[] = [];
  for (const condition of conditions) {
    const procedures = condition.procedures.filter(([, p]) => rng.chance(p)).map(([key]) => key);
    const medications = condition.medications.length && rng.chance(PRESCRIBED) ? [rng.pick(condition.medications)] : [];
    if (conditionVisits.length >= MAX_CONDITION_VISITS) {
      const shared = rng.pick(conditionVisits);
      shared.conditions.push(condition);
      for (const observation of condition.observations) if (!shared.observations.some(([key]) => key === observation[0])) shared.observations.push(observation);
      shared.procedures.push(...procedures.filter((p) => !shared.procedures.includes(p)));
      shared.medications.push(...medications.filter((m) => !shared.medications.includes(m)));
      continue;
    }
    const kind: VisitKind = !condition.chronic && rng.chance(condition.emergency ?? 0) ? 'emergency' : 'office';
    conditionVisits.push({ kind, day: day(), conditions: [condition], observations: [...condition.observations], procedures, medications });
  }
  visits.push(...conditionVisits);
  return { visits: visits.sort((a, b) => a.day - b.day), conditions };
}

function quantity(definition: ObservationDefinition, value: number): Quantity {
  return { value: round(value, definition.decimals), unit: definition.unit, system: UCUM, code: definition.unit };
}

/** What every resource of one visit shares: the member, the Encounter and its start. */
interface VisitLinks {
  subject: Reference<Patient>;
  encounter: Reference<Encounter>;
  start: string;
}

function conditionResource(rng: Random, condition: ConditionDefinition, id: string, birth: number, visitDay: number, asOf: number, links: VisitLinks): Condition {
  const chronicOnsetFrom = Math.max(birth + Math.round(condition.prevalence[0][0] * YEAR_DAYS), visitDay - Math.round(10 * YEAR_DAYS));
  const onset = condition.chronic ? rng.int(Math.min(chronicOnsetFrom, visitDay), visitDay) : Math.max(birth, visitDay - rng.int(0, 5));
  const category = condition.chronic ? { code: 'problem-list-item', display: 'Problem List Item' } : { code: 'encounter-diagnosis', display: 'Encounter Diagnosis' };
  return {
    resourceType: 'Condition',
    id,
    ...securityMeta(condition.security ? [condition.security] : []),
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: condition.chronic ? 'active' : 'resolved' }] },
    verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', ...category }] }],
    code: {
      coding: [
        { system: SNOMED, code: condition.snomed[0], display: condition.snomed[1] },
        { system: 'http://hl7.org/fhir/sid/icd-10-cm', code: condition.icd10[0], display: condition.icd10[1] },
      ],
      text: condition.snomed[1],
    },
    subject: links.subject,
    encounter: links.encounter,
    onsetDateTime: isoDate(onset),
    ...(condition.chronic ? {} : { abatementDateTime: isoDate(Math.min(visitDay + rng.int(5, 21), asOf)) }),
    recordedDate: isoDate(visitDay),
  };
}

/** A result drawn from `range`; a panel's later components follow the first by their ratio. */
function observationResource(rng: Random, definition: ObservationDefinition, range: [number, number], id: string, labels: SecurityLabel[], links: VisitLinks): Observation {
  const value = rng.between(range[0], range[1]);
  const [first, ...others] = definition.components ?? [];
  const loinc = (code: string, display: string) => ({ coding: [{ system: LOINC, code, display }] });
  return {
    resourceType: 'Observation',
    id,
    ...securityMeta(labels),
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: definition.category }] }],
    code: { ...loinc(definition.loinc, definition.display), text: definition.display },
    subject: links.subject,
    encounter: links.encounter,
    effectiveDateTime: links.start,
    ...(first
      ? {
          component: [
            { code: loinc(first.loinc, first.display), valueQuantity: quantity(definition, value) },
            ...others.map((c) => ({ code: loinc(c.loinc, c.display), valueQuantity: quantity(definition, value * (c.ratio ?? 1) + rng.normal(0, 3)) })),
          ],
        }
      : { valueQuantity: quantity(definition, value) }),
  };
}

/**
 * The resources of one member's care: the periods of carePeriodMonths back from the end of coverage
 * (or the as-of date) that `careYears` spans, each cut at the start of coverage; none when the
 * coverage leaves no window. For a given period length, the latest period is the same whatever
 * careYears is (so the default, one period of 36 months, draws what it always drew).
 */
export function clinicalResources(ctx: ClinicalContext, member: SyntheticMember, coverageId: string): Resource[] {
  const coverageStart = dayOf(member.coverage.start as string);
  const coverageEnd = member.coverage.end ? dayOf(member.coverage.end) : ctx.asOf - 1;
  const periodDays = Math.round((ctx.carePeriodMonths / 12) * YEAR_DAYS);
  const historyStart = coverageEnd - Math.round(ctx.careYears * YEAR_DAYS);
  const resources: Resource[] = [];
  const counts = { observation: 0, procedure: 0, medication: 0 };
  for (let period = 0; ; period++) {
    const windowEnd = coverageEnd - period * periodDays;
    const windowStart = Math.max(coverageStart, historyStart, windowEnd - periodDays);
    if (windowEnd <= windowStart) return resources;
    resources.push(...periodResources(ctx, member, coverageId, period, [windowStart, windowEnd], counts));
  }
}

/** The care of one period: its visits, their claims and clinical resources, and the conditions they addressed. */
function periodResources(
  ctx: ClinicalContext,
  member: SyntheticMember,
  coverageId: string,
  period: number,
  window: [number, number],
  counts: { observation: number; procedure: number; medication: number },
): Resource[] {
  const rng = period === 0 ? new Random(ctx.seed, ctx.idPrefix, 'clinical', member.ordinal) : new Random(ctx.seed, ctx.idPrefix, 'clinical', member.ordinal, period);
  const { tables, idPrefix } = ctx;
  const catalogue = tables.clinical;
  const birth = dayOf(member.birthDate);
  const { visits, conditions } = planVisits(rng, tables, member, birth, window);
  const numbered = period * PERIOD_NUMBERING;
  const clinic = rng.pick(ctx.providers.clinics);
  const hospital = rng.pick(ctx.providers.hospitals);

  const subject = { reference: `Patient/${member.patientId}` };
  const n = member.ordinal;
  const conditionIds = new Map(conditions.map((c, i) => [c.key, `${idPrefix}-condition-${n}-${numbered + i + 1}`]));
  const conditionReference = (c: ConditionDefinition) => ({ reference: `Condition/${conditionIds.get(c.key)}` });
  const resources: Resource[] = [];
  const conditionResources: Condition[] = [];

  visits.forEach((visit, v) => {
    const k = numbered + v + 1;
    const encounterId = `${idPrefix}-encounter-${n}-${k}`;
    const provider = visit.kind === 'emergency' ? hospital : clinic;
    const labels = visit.conditions.flatMap((c) => (c.security ? [c.security] : []));
    const startMinute = visit.kind === 'emergency' ? rng.int(0, 1200) : rng.int(8 * 60, 16 * 60);
    const minutes = visit.kind === 'emergency' ? rng.int(120, 360) : visit.kind === 'preventive' ? rng.int(30, 60) : rng.int(15, 45);
    const links: VisitLinks = { subject, encounter: { reference: `Encounter/${encounterId}` }, start: isoDateTime(visit.day, startMinute) };
    const visitService = visit.kind === 'preventive' ? preventiveService(ageOn(birth, visit.day)) : visit.kind === 'emergency' ? 'emergency' : visit.conditions.length > 1 ? 'office-moderate' : 'office-low';
    const visitCpt = catalogue.cpt[visitService];

    resources.push({
      resourceType: 'Encounter',
      id: encounterId,
      ...securityMeta(labels),
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: visit.kind === 'emergency' ? 'EMER' : 'AMB', display: visit.kind === 'emergency' ? 'emergency' : 'ambulatory' },
      type: [{ coding: [{ system: CPT, code: visitCpt.code, display: visitCpt.display }] }],
      subject,
      period: { start: links.start, end: isoDateTime(visit.day, startMinute + minutes) },
      ...(visit.conditions.length
        ? {
            reasonCode: visit.conditions.map((c) => ({ coding: [{ system: SNOMED, code: c.snomed[0], display: c.snomed[1] }] })),
            diagnosis: visit.conditions.map((c, i) => ({ condition: conditionReference(c), rank: i + 1 })),
          }
        : {}),
      serviceProvider: { reference: `Organization/${provider}` },
    } satisfies Encounter);

    for (const condition of visit.conditions) conditionResources.push(conditionResource(rng, condition, conditionIds.get(condition.key) as string, birth, visit.day, ctx.asOf, links));

    // Which condition (and so which label) brought each test, procedure or prescription.
    const sourceOf = (has: (c: ConditionDefinition) => boolean) => visit.conditions.find(has);
    const labelOf = (has: (c: ConditionDefinition) => boolean) => {
      const source = sourceOf(has);
      return source?.security ? [source.security] : [];
    };

    const billed: { service: BilledService; labels: SecurityLabel[] }[] = [{ service: visitCpt, labels }];
    const billedKeys = new Set<string>();
    for (const [key, range] of visit.observations) {
      const definition = catalogue.observations[key];
      const observationLabels = labelOf((c) => c.observations.some(([o]) => o === key));
      resources.push(observationResource(rng, definition, range, `${idPrefix}-observation-${n}-${++counts.observation}`, observationLabels, links));
      if (definition.cpt && !billedKeys.has(definition.cpt)) {
        billedKeys.add(definition.cpt);
        billed.push({ service: catalogue.cpt[definition.cpt], labels: observationLabels });
      }
    }
    if (visit.observations.some(([key]) => catalogue.observations[key].cpt)) billed.push({ service: catalogue.cpt.venipuncture, labels: [] });

    for (const key of visit.procedures) {
      const definition = catalogue.procedures[key];
      const procedureLabels = labelOf((c) => c.procedures.some(([p]) => p === key));
      const reason = sourceOf((c) => c.procedures.some(([p]) => p === key));
      const service = catalogue.cpt[definition.cpt];
      billed.push({ service, labels: procedureLabels });
      if (!definition.snomed) continue;
      resources.push({
        resourceType: 'Procedure',
        id: `${idPrefix}-procedure-${n}-${++counts.procedure}`,
        ...securityMeta(procedureLabels),
        status: 'completed',
        code: {
          coding: [
            { system: SNOMED, code: definition.snomed[0], display: definition.snomed[1] },
            { system: CPT, code: service.code, display: service.display },
          ],
          text: definition.snomed[1],
        },
        subject,
        encounter: links.encounter,
        performedDateTime: links.start,
        ...(reason ? { reasonReference: [conditionReference(reason)] } : {}),
      } satisfies Procedure);
    }

    for (const key of visit.medications) {
      const medication = catalogue.medications[key];
      const reason = sourceOf((c) => c.medications.includes(key)) as ConditionDefinition;
      resources.push({
        resourceType: 'MedicationRequest',
        id: `${idPrefix}-medication-request-${n}-${++counts.medication}`,
        ...securityMeta(reason.security ? [reason.security] : []),
        status: reason.chronic && !member.coverage.end ? 'active' : 'completed',
        intent: 'order',
        medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: medication.rxnorm, display: medication.display }], text: medication.display },
        subject,
        encounter: links.encounter,
        authoredOn: links.start,
        reasonReference: [conditionReference(reason)],
        dosageInstruction: [{ text: medication.dosage }],
      } satisfies MedicationRequest);
    }

    resources.push(claim(rng, ctx, member, coverageId, visit, k, provider, billed, encounterId));
  });
  resources.push(...conditionResources);
  return resources;
}

/** The ExplanationOfBenefit that paid for a visit: one item per billed service. */
function claim(
  rng: Random,
  ctx: ClinicalContext,
  member: SyntheticMember,
  coverageId: string,
  visit: Visit,
  k: number,
  provider: string,
  billed: { service: BilledService; labels: SecurityLabel[] }[],
  encounterId: string,
): ExplanationOfBenefit {
  const processed = Math.min(visit.day + rng.int(3, 25), ctx.asOf);
  const diagnoses = visit.conditions.length
    ? visit.conditions.map((c) => c.icd10)
    : [ageOn(dayOf(member.birthDate), visit.day) < 18 ? ['Z00.129', 'Encounter for routine child health examination without abnormal findings'] : ['Z00.00', 'Encounter for general adult medical examination without abnormal findings']];
  const serviceDate = isoDate(visit.day);
  let submittedTotal = 0;
  let benefitTotal = 0;
  const items = billed.map(({ service }, i): ExplanationOfBenefitItem => {
    const submitted = round(rng.between(service.charge[0], service.charge[1]), 2);
    const eligible = round(submitted * rng.between(0.55, 0.85), 2);
    const copay = i > 0 ? 0 : visit.kind === 'preventive' ? 0 : visit.kind === 'emergency' ? EMERGENCY_COPAY : rng.pick(COPAYS);
    const benefit = round(Math.max(0, eligible - copay), 2);
    submittedTotal += submitted;
    benefitTotal += benefit;
    return {
      sequence: i + 1,
      diagnosisSequence: diagnoses.map((_, d) => d + 1),
      productOrService: { coding: [{ system: CPT, code: service.code, display: service.display }] },
      servicedDate: serviceDate,
      encounter: [{ reference: `Encounter/${encounterId}` }],
      net: usd(submitted),
      adjudication: [
        { category: { coding: [{ system: ADJUDICATION, code: 'submitted' }] }, amount: usd(submitted) },
        { category: { coding: [{ system: ADJUDICATION, code: 'eligible' }] }, amount: usd(eligible) },
        ...(copay ? [{ category: { coding: [{ system: ADJUDICATION, code: 'copay' }] }, amount: usd(copay) }] : []),
        { category: { coding: [{ system: ADJUDICATION, code: 'benefit' }] }, amount: usd(benefit) },
      ],
    };
  });
  const institutional = visit.kind === 'emergency';
  return {
    resourceType: 'ExplanationOfBenefit',
    id: `${ctx.idPrefix}-eob-${member.ordinal}-${k}`,
    ...securityMeta(billed.flatMap((b) => b.labels)),
    identifier: [
      {
        type: { coding: [{ system: 'http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType', code: 'uc', display: 'Unique Claim ID' }] },
        system: CLAIM_ID_SYSTEM,
        value: `${serviceDate.replaceAll('-', '')}${String(member.ordinal).padStart(8, '0')}${k}`,
      },
    ],
    status: 'active',
    type: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: institutional ? 'institutional' : 'professional', display: institutional ? 'Institutional' : 'Professional' }],
    },
    use: 'claim',
    patient: { reference: `Patient/${member.patientId}` },
    billablePeriod: { start: serviceDate, end: serviceDate },
    created: isoDateTime(processed, 9 * 60),
    insurer: { reference: `Organization/${OWN_ORGANIZATION_ID}` },
    provider: { reference: `Organization/${provider}` },
    outcome: 'complete',
    diagnosis: diagnoses.map(([code, display], d) => ({
      sequence: d + 1,
      diagnosisCodeableConcept: { coding: [{ system: 'http://hl7.org/fhir/sid/icd-10-cm', code, display }] },
    })),
    insurance: [{ focal: true, coverage: { reference: `Coverage/${coverageId}` } }],
    item: items,
    total: [
      { category: { coding: [{ system: ADJUDICATION, code: 'submitted' }] }, amount: usd(submittedTotal) },
      { category: { coding: [{ system: ADJUDICATION, code: 'benefit' }] }, amount: usd(benefitTotal) },
    ],
    payment: { date: isoDate(processed), amount: usd(benefitTotal) },
  };
}
