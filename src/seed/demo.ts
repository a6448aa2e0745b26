import type { FhirContext } from '../fhir/interactions.ts';
import { readCurrent } from '../fhir/store.ts';
import { type GroundTruthMember, groundTruth } from './ground-truth.ts';
import { patientIdOf } from './households.ts';
import { loadPopulation } from './load.ts';
import { populationOptions } from './population.ts';

/**
 * The demo population `npm start` loads on first start: 25 synthetic members in 10 households
 * with coverage, claims, clinical data, pharmacy fills, a prior authorization and the
 * Provenance of their records (issue 6: what PDex payer-to-payer hands over, for every member),
 * over the last five years of each member's coverage (PDex: at least five years available).
 * Its ids are stable: `demo-patient-<n>`, `demo-coverage-<n>`, `demo-prior-auth-<n>` and
 * `demo-provenance-<n>` for n = 1…25, `demo-eob-<n>-<k>` and `demo-encounter-<n>-<k>` for a
 * member's visits, `demo-medication-dispense-<n>-<k>` for the fills of their prescriptions,
 * `demo-provider-<k>` for the providers. The seed was chosen so that the few
 * members show the cases identity resolution has to tell apart: a Jr/Sr pair (members 1 and 3),
 * twins (18 and 19), married and maiden names, previous addresses, legacy member ids, former
 * members, and data labelled sensitive (PSY, HIV).
 */
export const DEMO_POPULATION = populationOptions({ members: 25, seed: 1514, idPrefix: 'demo', payerRecords: true, careYears: 5 });

/** The demo members with their relations (pure: no database). */
export function demoMembers(): GroundTruthMember[] {
  return [...groundTruth(DEMO_POPULATION)];
}

/** Loads the demo population unless it is already there, validating every resource; answers how many resources it wrote. */
export async function seedDemoData(ctx: FhirContext): Promise<number> {
  if (await readCurrent(ctx.q, 'Patient', patientIdOf(DEMO_POPULATION.idPrefix, 1))) return 0;
  const summary = await loadPopulation(ctx.db, DEMO_POPULATION, { validate: (resource) => ctx.validator.validate(resource) });
  return summary.total;
}
