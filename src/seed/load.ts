import type { Resource } from '@medplum/fhirtypes';
import type { Database } from '../db/connection.ts';
import { type NewVersion, readCurrent, writeVersions } from '../fhir/store.ts';
import { patientIdOf } from './households.ts';
import { type PopulationOptions, generatePopulation } from './population.ts';

/*
 * Writes a generated population straight through the store (current row, history and search
 * index, as a create writes them) in large transactions, a few in flight at once on
 * PostgreSQL, without the REST layer's per-resource validation: the generator's output is
 * checked against R4 by its tests, and the demo data validates each resource on the way in.
 */

export class PopulationExistsError extends Error {}

export interface LoadProgress {
  members: number;
  resources: number;
  seconds: number;
}

export interface LoadSummary {
  members: number;
  households: number;
  resources: Record<string, number>;
  total: number;
  seconds: number;
  membersPerSecond: number;
  resourcesPerSecond: number;
}

export interface LoadHooks {
  /** Called after each batch is committed. */
  progress?(progress: LoadProgress): void;
  /** Called on every resource before it is written; throwing stops the load before that batch. */
  validate?(resource: Resource): void;
}

/** Resources per transaction (larger ones measured no faster), and transactions in flight at once on PostgreSQL (PGlite runs one at a time anyway). */
const BATCH = 1_000;
const PARALLEL = 3;

function firstVersion(resource: Resource, lastUpdated: string): NewVersion {
  const { resourceType, id, meta, ...rest } = resource;
  const stamped = { resourceType, id, meta: { ...meta, versionId: '1', lastUpdated }, ...rest } as NewVersion['resource'];
  return { resource: stamped, versionId: 1, lastUpdated, method: 'POST', deleted: false };
}

export async function loadPopulation(db: Database, options: PopulationOptions, hooks: LoadHooks = {}): Promise<LoadSummary> {
  if (await readCurrent(db, 'Patient', patientIdOf(options.idPrefix, 1))) {
    throw new PopulationExistsError(`a population with id prefix "${options.idPrefix}" is already loaded; choose another --prefix or --seed`);
  }
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const counts: Record<string, number> = {};
  const written = { members: 0, resources: 0 };
  let households = 0;
  let batch: NewVersion[] = [];
  const pending: Promise<void>[] = [];

  const send = async (): Promise<void> => {
    const versions = batch;
    batch = [];
    const members = versions.filter((v) => v.resource.resourceType === 'Patient').length;
    const write = db
      .transaction((tx) => writeVersions(tx, versions))
      .then(() => {
        written.members += members;
        written.resources += versions.length;
        hooks.progress?.({ ...written, seconds: seconds() });
      });
    // Awaited below or in the final wait; until then a failure must not count as unhandled.
    write.catch(() => undefined);
    pending.push(write);
    if (pending.length >= (db.kind === 'postgres' ? PARALLEL : 1)) await pending.shift();
  };

  try {
    for (const chunk of generatePopulation(options)) {
      if (chunk.household) households++;
      const lastUpdated = new Date().toISOString();
      for (const resource of chunk.resources) {
        hooks.validate?.(resource);
        counts[resource.resourceType] = (counts[resource.resourceType] ?? 0) + 1;
        batch.push(firstVersion(resource, lastUpdated));
      }
      if (batch.length >= BATCH) await send();
    }
    if (batch.length) await send();
    await Promise.all(pending);
  } catch (error) {
    // Let the transactions still running finish (or fail) before the caller closes the database.
    await Promise.allSettled(pending);
    throw error;
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const elapsed = seconds();
  return {
    members: written.members,
    households,
    resources: counts,
    total,
    seconds: Number(elapsed.toFixed(2)),
    membersPerSecond: Math.round(written.members / elapsed),
    resourcesPerSecond: Math.round(total / elapsed),
  };
}
