import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import type { Bundle, BundleEntry } from '@medplum/fhirtypes';
import { createApp } from '../src/app.ts';
import { connectDatabase } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { createValidator } from '../src/fhir/profiles.ts';
import { createLogger } from '../src/logger.ts';
import { freshDatabase, tokenMinter } from '../test/support/baton.ts';
import { benchObservation, benchPatient, MEMBER_SYSTEM } from './population.ts';

/**
 * Transaction Bundle throughput: POSTs of 1,000-entry transactions (one Patient per ten
 * entries, Observations pointing at their Patient by urn:uuid) to an in-process Baton over
 * HTTP, on PGlite and, when DATABASE_URL is set, on a fresh PostgreSQL database. Prints JSON.
 *
 *   npm run bench:transaction -- [--entries 1000] [--runs 5] [--only pglite|postgres]
 */
const { values: flags } = parseArgs({ options: { entries: { type: 'string' }, runs: { type: 'string' }, only: { type: 'string' } } });
const entries = Number(flags.entries ?? 1000);
const runs = Number(flags.runs ?? 5);
const logger = createLogger('warn');

function transactionBundle(size: number): Bundle {
  const entry: BundleEntry[] = [];
  let patientUrn = '';
  for (let i = 0; i < size; i++) {
    const fullUrl = `urn:uuid:${randomUUID()}`;
    if (i % 10 === 0) {
      patientUrn = fullUrl;
      const patient = { ...benchPatient(i), identifier: [{ system: MEMBER_SYSTEM, value: `T-${randomUUID()}` }] };
      entry.push({ fullUrl, resource: patient, request: { method: 'POST', url: 'Patient' } });
    } else {
      entry.push({ fullUrl, resource: benchObservation(i, patientUrn), request: { method: 'POST', url: 'Observation' } });
    }
  }
  return { resourceType: 'Bundle', type: 'transaction', entry };
}

interface Figures {
  entries: number;
  seconds: number[];
  median_resources_per_s: number;
  best_resources_per_s: number;
  /** One-minute load average before and after: other processes share the machine's cores. */
  load_average: [number, number];
}

async function measure(databaseUrl: string | undefined): Promise<Figures> {
  const db = await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections: 10 });
  await migrateDatabase(db);
  const validator = await createValidator([], logger);
  const app = createApp({ config: { baseUrl: 'http://127.0.0.1/fhir', maxBodyBytes: 64 * 1024 * 1024 }, db, logger, validator });
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
  const authorization = `Bearer ${await tokenMinter(db, 'http://127.0.0.1/fhir')()}`;
  const post = async (bundle: Bundle): Promise<number> => {
    const body = JSON.stringify(bundle);
    const started = performance.now();
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/fhir+json', authorization }, body });
    const answer = (await response.json()) as Bundle & { issue?: { diagnostics?: string }[] };
    const seconds = (performance.now() - started) / 1000;
    if (!response.ok || answer.entry?.length !== bundle.entry?.length) throw new Error(`transaction failed: ${response.status} ${answer.issue?.[0]?.diagnostics}`);
    return seconds;
  };
  try {
    const loadBefore = Math.round(loadavg()[0] * 100) / 100;
    await post(transactionBundle(entries));
    const seconds: number[] = [];
    for (let i = 0; i < runs; i++) seconds.push(await post(transactionBundle(entries)));
    const sorted = [...seconds].sort((a, b) => a - b);
    return {
      entries,
      seconds: seconds.map((s) => Math.round(s * 1000) / 1000),
      median_resources_per_s: Math.round(entries / sorted[Math.floor(sorted.length / 2)]),
      best_resources_per_s: Math.round(entries / sorted[0]),
      load_average: [loadBefore, Math.round(loadavg()[0] * 100) / 100],
    };
  } finally {
    server.close();
    await db.close();
  }
}

const figures: Record<string, Figures> = {};
if (flags.only !== 'postgres') figures.pglite = await measure(undefined);
if (process.env.DATABASE_URL && flags.only !== 'pglite') {
  const { databaseUrl, drop } = await freshDatabase();
  try {
    figures.postgres = await measure(databaseUrl);
  } finally {
    await drop();
  }
}
console.log(JSON.stringify({ transaction: figures, target_resources_per_s: 3000 }, null, 2));
