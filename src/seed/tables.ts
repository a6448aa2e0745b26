import { readFileSync } from 'node:fs';
import { WeightedTable } from './random.ts';

/*
 * The data the synthetic population is drawn from, kept as JSON under config/seed/ so it can be
 * read and tuned without touching code: names with rough US frequencies, places, plans and the
 * clinical catalogue. Loaded once per process.
 */

export type Gender = 'male' | 'female';

interface SurnamesFile {
  surnames: [string, number][];
  compoundCapable: string[];
  rareFirstParts: string[];
  rareLastParts: string[];
}

interface GivenNamesFile {
  female: [string, number, number][];
  male: [string, number, number][];
}

export interface City {
  city: string;
  state: string;
  zip3: string[];
  areaCodes: string[];
  weight: number;
}

interface PlacesFile {
  cities: City[];
  streets: string[];
  suffixes: [string, number][];
  directionals: string[];
  units: [string, number][];
}

export interface CoverageClass {
  value: string;
  name: string;
}

interface PlansFile {
  groups: [string, string, number][];
  individualGroup: [string, string];
  medicareGroup: [string, string];
  commercialPlans: [string, string, number][];
  medicarePlans: [string, string, number][];
}

export type SecurityLabel = 'PSY' | 'ETH' | 'HIV';

export interface ConditionDefinition {
  key: string;
  snomed: [string, string];
  icd10: [string, string];
  chronic: boolean;
  /** [from age, probability]: the last entry whose age is reached applies. */
  prevalence: [number, number][];
  /** Observation keys with the range a member with this condition shows. */
  observations: [string, [number, number]][];
  medications: string[];
  /** Procedure keys with the probability the condition's visit includes them. */
  procedures: [string, number][];
  /** Share of this condition's visits made in an emergency department. */
  emergency?: number;
  security?: SecurityLabel;
}

export interface ObservationDefinition {
  loinc: string;
  display: string;
  category: 'vital-signs' | 'laboratory' | 'exam' | 'survey';
  normal: [number, number];
  unit: string;
  decimals: number;
  /** The claim line (a key of `cpt`) that bills the test, if it is billed apart from the visit. */
  cpt?: string;
  /** A panel's parts; each after the first scales the first's value by its ratio. */
  components?: { loinc: string; display: string; ratio?: number }[];
}

export interface MedicationDefinition {
  rxnorm: string;
  display: string;
  dosage: string;
}

export interface ProcedureDefinition {
  /** Absent for tests billed as a claim line only. */
  snomed?: [string, string];
  cpt: string;
}

export interface BilledService {
  code: string;
  display: string;
  charge: [number, number];
}

export interface ClinicalCatalogue {
  conditions: ConditionDefinition[];
  observations: Record<string, ObservationDefinition>;
  medications: Record<string, MedicationDefinition>;
  procedures: Record<string, ProcedureDefinition>;
  screenings: { procedure: string; ages: [number, number]; gender: Gender | 'any'; rate: number }[];
  cpt: Record<string, BilledService>;
}

export interface SeedTables {
  surnames: WeightedTable<string>;
  /** Surnames that may pair into a compound (two-surname) family name, weighted as in `surnames`. */
  compoundSurnames: WeightedTable<string>;
  compoundCapable: ReadonlySet<string>;
  rareFirstParts: readonly string[];
  rareLastParts: readonly string[];
  /** Given names for a person of this gender born in this year. */
  givenNames(gender: Gender, birthYear: number): WeightedTable<string>;
  cities: WeightedTable<City>;
  streets: readonly string[];
  suffixes: WeightedTable<string>;
  directionals: readonly string[];
  units: WeightedTable<string>;
  groups: WeightedTable<CoverageClass>;
  individualGroup: CoverageClass;
  medicareGroup: CoverageClass;
  commercialPlans: WeightedTable<CoverageClass>;
  medicarePlans: WeightedTable<CoverageClass>;
  clinical: ClinicalCatalogue;
}

function readSeedFile<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../../config/seed/${name}`, import.meta.url), 'utf8')) as T;
}

/** How far from its peak year a given name keeps its popularity, and the floor it keeps beyond. */
const NAME_ERA_SPREAD_YEARS = 18;
const NAME_ERA_FLOOR = 0.02;

function givenNameTables(file: GivenNamesFile): SeedTables['givenNames'] {
  const cache = new Map<string, WeightedTable<string>>();
  return (gender, birthYear) => {
    // Five-year cohorts: fine enough for fashions in names, few enough tables to cache.
    const cohort = Math.round(birthYear / 5) * 5;
    const key = `${gender}:${cohort}`;
    let table = cache.get(key);
    if (!table) {
      const names = file[gender];
      table = new WeightedTable(
        names.map(([name]) => name),
        names.map(([, weight, peak]) => weight * (Math.exp(-0.5 * ((cohort - peak) / NAME_ERA_SPREAD_YEARS) ** 2) + NAME_ERA_FLOOR)),
      );
      cache.set(key, table);
    }
    return table;
  };
}

let loaded: SeedTables | undefined;

export function seedTables(): SeedTables {
  if (loaded) return loaded;
  const surnames = readSeedFile<SurnamesFile>('surnames.json');
  const places = readSeedFile<PlacesFile>('places.json');
  const plans = readSeedFile<PlansFile>('plans.json');
  const compoundCapable = new Set(surnames.compoundCapable);
  const classOf = ([value, name]: [string, string, number?]): CoverageClass => ({ value, name });
  const weighted = (entries: [string, string, number][]) => new WeightedTable(entries.map(classOf), entries.map(([, , w]) => w));
  loaded = {
    surnames: WeightedTable.of(surnames.surnames),
    compoundSurnames: WeightedTable.of(surnames.surnames.filter(([name]) => compoundCapable.has(name))),
    compoundCapable,
    rareFirstParts: surnames.rareFirstParts,
    rareLastParts: surnames.rareLastParts,
    givenNames: givenNameTables(readSeedFile<GivenNamesFile>('given-names.json')),
    cities: new WeightedTable(places.cities, places.cities.map((c) => c.weight)),
    streets: places.streets,
    suffixes: WeightedTable.of(places.suffixes),
    directionals: places.directionals,
    units: WeightedTable.of(places.units),
    groups: weighted(plans.groups),
    individualGroup: classOf(plans.individualGroup),
    medicareGroup: classOf(plans.medicareGroup),
    commercialPlans: weighted(plans.commercialPlans),
    medicarePlans: weighted(plans.medicarePlans),
    clinical: readSeedFile<ClinicalCatalogue>('clinical.json'),
  };
  return loaded;
}
