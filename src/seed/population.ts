import type { Resource } from '@medplum/fhirtypes';
import { clinicalResources } from './clinical.ts';
import { dayOf, isoDate } from './dates.ts';
import { DEFAULT_HOUSEHOLD_SHARES, HOUSEHOLD_KINDS, type HouseholdContext, type HouseholdShares, type SyntheticHousehold, generateHousehold } from './households.ts';
import { householdNumbers } from './identifiers.ts';
import { coverageIdOf, memberCoverage, memberPatient } from './member-resources.ts';
import { payerRecords } from './payer-records.ts';
import { type ProviderDirectory, providerOrganizations } from './providers.ts';
import { WeightedTable } from './random.ts';
import { seedTables } from './tables.ts';

/**
 * A synthetic payer population: `members` people in households, each with a Patient and a
 * Coverage and (unless `clinical` is off) claims and clinical resources (with `payerRecords`,
 * pharmacy fills, a prior authorization and Provenance too), preceded by the provider
 * Organizations the claims name. The same options always give the same resources.
 */
export interface PopulationOptions {
  members: number;
  seed: number;
  /** Starts every resource id (`<prefix>-patient-<n>`, `<prefix>-eob-<n>-<k>`…), so populations can share a database. */
  idPrefix: string;
  /** The date the population is as of (YYYY-MM-DD): ages, coverage and history end here. */
  asOf: string;
  householdShares: HouseholdShares;
  /** Claims and clinical resources besides each member's Patient and Coverage. */
  clinical: boolean;
  /**
   * With clinical data: each member's pharmacy fills, a prior authorization and the Provenance of
   * their records too (payer-records.ts). The demo has them; off by default, so the populations
   * tests and benchmarks measure stay as they were.
   */
  payerRecords: boolean;
  /**
   * With clinical data: the years of each member's coverage (back from its end) with care in
   * them, and the length of the periods that care is drawn in, each period's visits independent
   * of the others' (clinical.ts). By default one period, the last three years. More years and
   * shorter periods make a larger population of the same members (bench:export).
   */
  careYears: number;
  carePeriodMonths: number;
}

/** A fixed date, so a seed gives the same population whenever it is generated. */
const DEFAULT_AS_OF = '2026-07-01';
const DEFAULT_SEED = 1;
const MAX_MEMBERS = 10_000_000;
const DEFAULT_CARE_YEARS = 3;
const MAX_CARE_YEARS = 60;
const DEFAULT_CARE_PERIOD_MONTHS = 36;

export class PopulationOptionsError extends Error {}

export type PopulationOptionsInput = Pick<PopulationOptions, 'members'> & Partial<Omit<PopulationOptions, 'householdShares'>> & { householdShares?: Partial<HouseholdShares> };

/** Options with their defaults, checked; `householdShares` changes the listed kinds and keeps the others' defaults. */
export function populationOptions(input: PopulationOptionsInput): PopulationOptions {
  const { members, seed = DEFAULT_SEED, asOf = DEFAULT_AS_OF, clinical = true, payerRecords = false, careYears = DEFAULT_CARE_YEARS, carePeriodMonths = DEFAULT_CARE_PERIOD_MONTHS } = input;
  if (!Number.isInteger(members) || members < 1 || members > MAX_MEMBERS) throw new PopulationOptionsError(`members must be an integer from 1 to ${MAX_MEMBERS}`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new PopulationOptionsError('seed must be an integer from 0 to 4294967295');
  const idPrefix = input.idPrefix ?? `seed${seed}`;
  if (!/^[A-Za-z0-9]{1,20}$/.test(idPrefix)) throw new PopulationOptionsError('the id prefix must be 1 to 20 letters or digits');
  if (!/^\d{4}-\d{2}-\d{2}$/.test(asOf) || Number.isNaN(dayOf(asOf)) || isoDate(dayOf(asOf)) !== asOf || asOf < '1990-01-01') {
    throw new PopulationOptionsError('the as-of date must be a date (YYYY-MM-DD) from 1990 on');
  }
  const householdShares = { ...DEFAULT_HOUSEHOLD_SHARES, ...input.householdShares };
  for (const kind of HOUSEHOLD_KINDS) {
    if (!Number.isFinite(householdShares[kind]) || householdShares[kind] < 0) throw new PopulationOptionsError(`the share of ${kind} households must be a number of 0 or more`);
  }
  if (HOUSEHOLD_KINDS.every((kind) => householdShares[kind] === 0)) throw new PopulationOptionsError('at least one household kind needs a share above 0');
  if (!Number.isInteger(careYears) || careYears < 1 || careYears > MAX_CARE_YEARS) throw new PopulationOptionsError(`care years must be an integer from 1 to ${MAX_CARE_YEARS}`);
  if (!Number.isInteger(carePeriodMonths) || carePeriodMonths < 1 || carePeriodMonths > 12 * MAX_CARE_YEARS) {
    throw new PopulationOptionsError(`the care period must be an integer number of months from 1 to ${12 * MAX_CARE_YEARS}`);
  }
  return { members, seed, idPrefix, asOf, householdShares, clinical, payerRecords, careYears, carePeriodMonths };
}

function householdContext(options: PopulationOptions): HouseholdContext {
  return {
    seed: options.seed,
    idPrefix: options.idPrefix,
    asOf: dayOf(options.asOf),
    kinds: new WeightedTable(HOUSEHOLD_KINDS, HOUSEHOLD_KINDS.map((k) => options.householdShares[k])),
    numbers: householdNumbers(options.seed, options.idPrefix),
    tables: seedTables(),
  };
}

/** The households, in order, until they hold `members` people (the last one cut short if need be). */
export function* generateHouseholds(options: PopulationOptions): Generator<SyntheticHousehold> {
  const ctx = householdContext(options);
  let ordinal = 1;
  for (let index = 0; ordinal <= options.members; index++) {
    const household = generateHousehold(ctx, index, ordinal, options.members - ordinal + 1);
    ordinal += household.members.length;
    yield household;
  }
}

export interface PopulationChunk {
  /** Absent for the provider Organizations that lead the population. */
  household?: SyntheticHousehold;
  resources: Resource[];
}

/** Every resource of the population: the providers first, then household after household. */
export function* generatePopulation(options: PopulationOptions): Generator<PopulationChunk> {
  const tables = seedTables();
  let providers: ProviderDirectory | undefined;
  if (options.clinical) {
    const { organizations, directory } = providerOrganizations(options.seed, options.idPrefix, options.members, tables);
    providers = directory;
    yield { resources: organizations };
  }
  const asOf = dayOf(options.asOf);
  for (const household of generateHouseholds(options)) {
    const resources: Resource[] = [];
    for (const member of household.members) {
      const coverageId = coverageIdOf(options.idPrefix, member.ordinal);
      resources.push(memberPatient(member), memberCoverage(household, member, options.idPrefix));
      if (!providers) continue;
      const clinical = clinicalResources({ seed: options.seed, idPrefix: options.idPrefix, asOf, tables, providers, careYears: options.careYears, carePeriodMonths: options.carePeriodMonths }, member, coverageId);
      resources.push(...clinical);
      if (options.payerRecords) resources.push(...payerRecords({ seed: options.seed, idPrefix: options.idPrefix, asOf, providers }, member, coverageId, clinical));
    }
    yield { household, resources };
  }
}
