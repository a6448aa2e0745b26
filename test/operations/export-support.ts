import { expect } from 'vitest';
import type { AppDeps } from '../../src/app.ts';
import type { ExportConfig } from '../../src/config.ts';
import { ExportWorker } from '../../src/export/worker.ts';
import { ensureOwnOrganization } from '../../src/fhir/own-organization.ts';
import { loadPopulation } from '../../src/seed/load.ts';
import { populationOptions } from '../../src/seed/population.ts';
import { BASE_URL, startBaton, type TestBaton } from '../support/baton.ts';
import { createLogger } from '../../src/logger.ts';
import { loadConfig } from '../../src/config.ts';
import { bulkMemberMatching } from '../../src/operations/routes.ts';
import { createMetrics } from '../../src/ops/metrics.ts';

/**
 * Bulk Data export tests run the worker themselves (BATON_EXPORT_WORKER=off in the app under
 * test), so a test decides when a job is planned and sees it queued until then.
 */
export const EXPORT_CONFIG: ExportConfig = {
  fileResources: 50_000,
  pageRows: 1000,
  maxJobsPerClient: 3,
  ttlSeconds: 3600,
  pollSeconds: 1,
  leaseSeconds: 30,
  maxAttempts: 3,
  clockSkewMs: 0,
  worker: false,
};

/** The seeded population the export tests read: 6 members with coverage, claims and clinical data, and the providers they name. */
export const POPULATION = populationOptions({ members: 6, seed: 7, idPrefix: 'exp' });

export async function startExportBaton(exportConfig: Partial<ExportConfig> = {}, config: Partial<AppDeps['config']> = {}): Promise<TestBaton & { exportConfig: ExportConfig }> {
  const settings = { ...EXPORT_CONFIG, ...exportConfig };
  const baton = await startBaton({ config: { ...config, export: settings }, ...(process.env.EXPORT_TEST_LOG ? { logger: createLogger('error') } : {}) });
  await ensureOwnOrganization(baton.ctx, { name: 'Baton Health Plan', identifiers: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' }] });
  await loadPopulation(baton.db, POPULATION);
  return Object.assign(baton, { exportConfig: settings });
}

const DEFAULTS = loadConfig({});

/** A worker of its own, as another process would run it (server.ts), $bulk-member-match jobs included. */
export function worker(baton: TestBaton & { exportConfig: ExportConfig }, db = baton.db): ExportWorker {
  const matchMembers = bulkMemberMatching({
    db,
    validator: baton.validator,
    audit: undefined,
    metrics: createMetrics(),
    payer: DEFAULTS.payer,
    memberMatch: DEFAULTS.memberMatch,
    baseUrl: BASE_URL,
    export: baton.exportConfig,
  });
  return new ExportWorker({ db, baseUrl: BASE_URL, config: baton.exportConfig, matchMembers });
}

/** Plans every job that is due. */
export async function drain(baton: TestBaton & { exportConfig: ExportConfig }): Promise<number> {
  return worker(baton).runPending();
}

export interface RequestOptions {
  token?: string;
  headers?: Record<string, string>;
  json?: unknown;
}

/** A kick-off: GET, or POST when `json` is given; `Prefer: respond-async` unless headers say otherwise. */
export function kickOff(baton: TestBaton, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers = { accept: 'application/fhir+json', prefer: 'respond-async', ...options.headers };
  return baton.request(path, { method: options.json === undefined ? 'GET' : 'POST', headers, json: options.json, ...(options.token ? { token: options.token } : {}) });
}

/** The path of an absolute URL under the test base. */
export function pathOf(url: string): string {
  expect(url.startsWith(`${BASE_URL}/`)).toBe(true);
  return `/fhir${url.slice(BASE_URL.length)}`;
}

export function get(baton: TestBaton, url: string, options: RequestOptions = {}): Promise<Response> {
  return baton.request(pathOf(url), { headers: { accept: 'application/json', ...options.headers }, ...(options.token ? { token: options.token } : {}) });
}

export interface Manifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: { type: string; url: string; count: number }[];
  error: { type: string; url: string; count: number }[];
  deleted?: { type: string; url: string; count: number }[];
}

/** Kicks off, plans, polls once and answers the manifest. */
export async function runExport(baton: TestBaton & { exportConfig: ExportConfig }, path: string, options: RequestOptions = {}): Promise<{ statusUrl: string; manifest: Manifest }> {
  const started = await kickOff(baton, path, options);
  expect(started.status, await started.clone().text()).toBe(202);
  const statusUrl = started.headers.get('content-location') as string;
  await drain(baton);
  const status = await get(baton, statusUrl, options);
  expect(status.status, await status.clone().text()).toBe(200);
  return { statusUrl, manifest: (await status.json()) as Manifest };
}

/** The lines of a file, parsed. */
export async function download<T = Record<string, any>>(baton: TestBaton, url: string, options: RequestOptions = {}): Promise<T[]> {
  const response = await get(baton, url, { ...options, headers: { accept: 'application/fhir+ndjson', ...options.headers } });
  expect(response.status, url).toBe(200);
  expect(response.headers.get('content-type')).toBe('application/fhir+ndjson');
  const text = await response.text();
  if (text === '') return [];
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n').map((line) => JSON.parse(line) as T);
}

/** Every output file downloaded: `Type/id` of each resource, with the resources by type. */
export async function exported(baton: TestBaton, manifest: Manifest, options: RequestOptions = {}): Promise<{ refs: string[]; byType: Map<string, Record<string, any>[]> }> {
  const refs: string[] = [];
  const byType = new Map<string, Record<string, any>[]>();
  for (const file of manifest.output) {
    const resources = await download(baton, file.url, options);
    expect(resources.length, file.url).toBe(file.count);
    for (const resource of resources) {
      expect(resource.resourceType).toBe(file.type);
      refs.push(`${resource.resourceType}/${resource.id}`);
      byType.set(file.type, [...(byType.get(file.type) ?? []), resource]);
    }
  }
  return { refs, byType };
}
