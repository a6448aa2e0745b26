import type { Observation, Patient } from '@medplum/fhirtypes';
import type { Database } from '../src/db/connection.ts';
import { newId } from '../src/db/ids.ts';
import { type NewVersion, writeVersions } from '../src/fhir/store.ts';

/*
 * The benchmark's synthetic population: Patients with a member identifier and vital-sign
 * Observations spread evenly over them. Written straight through the store (resources, history
 * and search index, as a create writes them) in large transactions; not validated, since every
 * resource comes from the builders below.
 */

export const MEMBER_SYSTEM = 'http://bench.baton.test/member-id';

export const memberId = (index: number): string => `M${String(index).padStart(8, '0')}`;

const FAMILY = ['Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Lopez', 'Wilson'];
const GIVEN = ['James', 'Mary', 'Robert', 'Patricia', 'John', 'Jennifer', 'Michael', 'Linda', 'David', 'Maria', 'Wei', 'Aisha'];

const VITALS = [
  { code: '8867-4', display: 'Heart rate', unit: '/min', low: 50, high: 110 },
  { code: '9279-1', display: 'Respiratory rate', unit: '/min', low: 10, high: 24 },
  { code: '8310-5', display: 'Body temperature', unit: 'Cel', low: 35.5, high: 39.5 },
  { code: '29463-7', display: 'Body weight', unit: 'kg', low: 3, high: 150 },
];

export function benchPatient(index: number): Omit<Patient, 'id' | 'meta'> {
  return {
    resourceType: 'Patient',
    identifier: [{ system: MEMBER_SYSTEM, value: memberId(index) }],
    active: true,
    name: [{ family: FAMILY[index % FAMILY.length], given: [GIVEN[index % GIVEN.length]] }],
    gender: index % 2 === 0 ? 'female' : 'male',
    birthDate: `${1940 + (index % 70)}-${String((index % 12) + 1).padStart(2, '0')}-${String((index % 28) + 1).padStart(2, '0')}`,
  };
}

export function benchObservation(index: number, subject: string): Omit<Observation, 'id' | 'meta'> {
  const vital = VITALS[index % VITALS.length];
  const day = new Date(Date.UTC(2020, 0, 1) + (index % 1800) * 86_400_000 + (index % 86_400) * 1000);
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: vital.code, display: vital.display }], text: vital.display },
    subject: { reference: subject },
    effectiveDateTime: day.toISOString(),
    valueQuantity: {
      value: Math.round((vital.low + ((index * 7919) % 1000) / 1000 * (vital.high - vital.low)) * 10) / 10,
      unit: vital.unit,
      system: 'http://unitsofmeasure.org',
      code: vital.unit,
    },
  };
}

/** Version 1 of a new resource, shaped as a create stores it: resourceType, id and meta lead. */
function firstVersion(resource: Omit<Patient | Observation, 'id' | 'meta'>, lastUpdated: string): NewVersion {
  const { resourceType, ...rest } = resource;
  const stamped = { resourceType, id: newId(), meta: { versionId: '1', lastUpdated }, ...rest } as NewVersion['resource'];
  return { resource: stamped, versionId: 1, lastUpdated, method: 'POST', deleted: false };
}

/** Resources per database transaction, and how many such transactions run at once. */
const BATCH = 5_000;
const PARALLEL = 3;

/** Runs `count` items as batches through `write`, a few transactions in flight at once. */
async function inBatches(count: number, write: (start: number, end: number) => Promise<void>, progress: (done: number) => void): Promise<void> {
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const start = next;
      const end = Math.min(count, start + BATCH);
      next = end;
      await write(start, end);
      done += end - start;
      progress(done);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

export interface SeedTimes {
  patientsSeconds: number;
  observationsSeconds: number;
}

export async function seedPopulation(db: Database, sizes: { patients: number; observations: number }, log: (message: string) => void): Promise<SeedTimes> {
  const patientIds: string[] = new Array(sizes.patients);
  const reporter = (what: string, total: number) => {
    let reported = 0;
    return (done: number) => {
      if (done - reported >= total / 10 || done === total) {
        reported = done;
        log(`seeded ${done}/${total} ${what}`);
      }
    };
  };

  let started = performance.now();
  await inBatches(
    sizes.patients,
    async (start, end) => {
      const lastUpdated = new Date().toISOString();
      const versions: NewVersion[] = [];
      for (let i = start; i < end; i++) {
        const version = firstVersion(benchPatient(i), lastUpdated);
        patientIds[i] = version.resource.id;
        versions.push(version);
      }
      await db.transaction((tx) => writeVersions(tx, versions));
    },
    reporter('Patients', sizes.patients),
  );
  const patientsSeconds = (performance.now() - started) / 1000;

  started = performance.now();
  await inBatches(
    sizes.observations,
    async (start, end) => {
      const lastUpdated = new Date().toISOString();
      const versions: NewVersion[] = [];
      for (let i = start; i < end; i++) versions.push(firstVersion(benchObservation(i, `Patient/${patientIds[i % sizes.patients]}`), lastUpdated));
      await db.transaction((tx) => writeVersions(tx, versions));
    },
    reporter('Observations', sizes.observations),
  );
  return { patientsSeconds, observationsSeconds: (performance.now() - started) / 1000 };
}
