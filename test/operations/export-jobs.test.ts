import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { connectDatabase, type Database } from '../../src/db/connection.ts';
import { startExportWorker } from '../../src/export/worker.ts';
import { createLogger } from '../../src/logger.ts';
import { BASE_URL } from '../support/baton.ts';
import { download, drain, exported, get, kickOff, type Manifest, pathOf, startExportBaton, worker } from './export-support.ts';

/**
 * Export jobs over HTTP: files split at the configured size, the status URL while a job waits
 * (202, 429 when polled too soon), the per-client quota, cancellation (and its race with the
 * worker finishing), expiry, the starting client's exclusive access, workers that crash or
 * lose their lease, jobs that fail, and two Baton apps sharing one database.
 */

let baton: Awaited<ReturnType<typeof startExportBaton>>;
const OBSERVATIONS = 22;

beforeAll(async () => {
  baton = await startExportBaton({ fileResources: 5, maxJobsPerClient: 2 });
});
afterAll(async () => {
  await baton?.close();
});

const statusUrlOf = (response: Response) => response.headers.get('content-location') as string;
const cancel = (url: string, token?: string) => baton.request(pathOf(url), { method: 'DELETE', ...(token ? { token } : {}) });
const jobRow = async (url: string) =>
  (await baton.db.execute<{ status: string; attempts: number; completed: string | null }>(sql`SELECT status, attempts, completed FROM export_jobs WHERE id = ${url.split('/').pop()}`))[0];

async function started(path = '/fhir/$export?_type=Observation'): Promise<string> {
  const response = await kickOff(baton, path);
  expect(response.status, await response.clone().text()).toBe(202);
  return statusUrlOf(response);
}

async function manifestOf(url: string): Promise<Manifest> {
  const response = await get(baton, url);
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as Manifest;
}

/** Cancels whatever the client still has in progress, so each test starts within its quota. */
async function cancelAll(): Promise<void> {
  await baton.db.execute(sql`UPDATE export_jobs SET status = 'cancelled' WHERE status IN ('queued', 'running')`);
}

describe('files', () => {
  it('splits a type into files of the configured size, every resource once, in id order', async () => {
    const url = await started();
    await drain(baton);
    const manifest = await manifestOf(url);
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([
      ['Observation', 5],
      ['Observation', 5],
      ['Observation', 5],
      ['Observation', 5],
      ['Observation', 2],
    ]);
    const { refs } = await exported(baton, manifest);
    expect(new Set(refs).size).toBe(OBSERVATIONS);
    const ids = refs.map((ref) => ref.slice('Observation/'.length));
    const ordered = (await baton.db.execute<{ id: string }>(sql`SELECT id FROM resources WHERE resource_type = 'Observation' ORDER BY id`)).map((row) => row.id);
    expect(ids).toEqual(ordered);
  });

  it('splits deletions into files of the same size', async () => {
    const since = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (let i = 0; i < 7; i++) await baton.request(`/fhir/Organization/doomed-${i}`, { method: 'PUT', json: { resourceType: 'Organization', id: `doomed-${i}`, name: 'doomed' } });
    for (let i = 0; i < 7; i++) expect((await baton.request(`/fhir/Organization/doomed-${i}`, { method: 'DELETE' })).status).toBe(204);
    const url = await started(`/fhir/$export?_type=Organization&_since=${encodeURIComponent(since)}`);
    await drain(baton);
    const manifest = await manifestOf(url);
    expect(manifest.output).toEqual([]);
    expect(manifest.deleted?.map((d) => [d.type, d.count])).toEqual([
      ['Bundle', 5],
      ['Bundle', 2],
    ]);
    const deleted = [...(await download(baton, manifest.deleted?.[0].url as string)), ...(await download(baton, manifest.deleted?.[1].url as string))];
    expect(deleted.map((b) => b.entry[0].request.url).sort()).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `Organization/doomed-${i}`));
  });
});

describe('the status URL', () => {
  it('answers 202 with X-Progress and Retry-After while the export waits, and 429 with Retry-After when polled sooner', async () => {
    await cancelAll();
    const url = await started();
    const first = await get(baton, url);
    expect(first.status).toBe(202);
    expect(first.headers.get('x-progress')).toBe('queued');
    expect(first.headers.get('retry-after')).toBe(String(baton.exportConfig.pollSeconds));
    const again = await get(baton, url);
    expect(again.status).toBe(429);
    expect(Number(again.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await again.json()).issue[0].code).toBe('throttled');
    await cancel(url);
  });

  it('reports progress by step while a worker plans the export', async () => {
    await cancelAll();
    const url = await started('/fhir/$export?_type=Observation,Condition');
    const planner = worker(baton);
    const job = await planner.claim();
    const resolved = await planner.step(job as NonNullable<typeof job>);
    expect('next' in resolved).toBe(true);
    await baton.db.execute(sql`UPDATE export_jobs SET last_polled = NULL`);
    const response = await get(baton, url);
    expect(response.status).toBe(202);
    expect(response.headers.get('x-progress')).toBe('planned 0 of 2 resource types');
    await cancel(url);
  });
});

describe('quota', () => {
  it("refuses a client's export beyond its quota with 429 and Retry-After; other clients are not held back; a cancel frees a place", async () => {
    await cancelAll();
    const first = await started();
    await started();
    const refused = await kickOff(baton, '/fhir/$export?_type=Observation');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await refused.json()).issue[0].code).toBe('throttled');
    const other = await kickOff(baton, '/fhir/$export?_type=Observation', { token: await baton.token({ clientId: 'another-client' }) });
    expect(other.status).toBe(202);
    expect((await cancel(first)).status).toBe(202);
    expect((await kickOff(baton, '/fhir/$export?_type=Observation')).status).toBe(202);
    await cancelAll();
  });

  it('counts completed exports out of the quota', async () => {
    await cancelAll();
    await started();
    await started();
    await drain(baton);
    expect((await kickOff(baton, '/fhir/$export?_type=Observation')).status).toBe(202);
    await cancelAll();
  });
});

describe('cancellation', () => {
  it('answers 202, then 404 with an OperationOutcome to every poll, download and cancel', async () => {
    await cancelAll();
    const url = await started();
    await drain(baton);
    const manifest = await manifestOf(url);
    const response = await cancel(url);
    expect(response.status).toBe(202);
    expect((await response.json()).resourceType).toBe('OperationOutcome');
    await baton.db.execute(sql`UPDATE export_jobs SET last_polled = NULL`);
    for (const later of [await get(baton, url), await get(baton, manifest.output[0].url), await cancel(url)]) {
      expect(later.status).toBe(404);
      expect((await later.json()).resourceType).toBe('OperationOutcome');
    }
  });

  it('wins over the worker at every step: cancelled before any step, or after each, the job never completes and stays 404', async () => {
    await cancelAll();
    // Steps of `_type=Observation,Condition`: resolve, plan Observation, plan Condition, complete.
    for (let before = 0; before <= 3; before++) {
      const url = await started('/fhir/$export?_type=Observation,Condition');
      const planner = worker(baton);
      let job = await planner.claim();
      expect(job).toBeDefined();
      for (let i = 0; i < before; i++) {
        const result = await planner.step(job as NonNullable<typeof job>);
        expect('next' in result).toBe(true);
        if ('next' in result) job = result.next;
      }
      expect((await cancel(url)).status).toBe(202);
      expect(await planner.step(job as NonNullable<typeof job>)).toEqual({ lost: true });
      expect(await drain(baton)).toBe(0);
      expect((await jobRow(url)).status).toBe('cancelled');
      expect((await get(baton, url)).status).toBe(404);
    }
  });

  it('races the worker finishing: a poll sees 202 or the full manifest, never a part of it, and 404 once cancelled', async () => {
    await cancelAll();
    for (let round = 0; round < 6; round++) {
      const url = await started('/fhir/$export?_type=Observation,Condition');
      const planning = drain(baton);
      // Let the worker get some way before the cancel, a little further each round.
      for (let turn = 0; turn < round * 3; turn++) await new Promise((resolve) => setImmediate(resolve));
      const [poll, cancelled] = await Promise.all([get(baton, url), cancel(url), planning]);
      expect([202, 200, 404]).toContain(poll.status);
      if (poll.status === 200) {
        const manifest = (await poll.json()) as Manifest;
        expect(manifest.output.filter((o) => o.type === 'Observation').reduce((n, o) => n + o.count, 0)).toBe(OBSERVATIONS);
        expect(manifest.output.some((o) => o.type === 'Condition')).toBe(true);
      }
      expect(cancelled.status).toBe(202);
      await baton.db.execute(sql`UPDATE export_jobs SET last_polled = NULL`);
      expect((await get(baton, url)).status).toBe(404);
      expect((await jobRow(url)).status).toBe('cancelled');
    }
  });
});

describe('access and expiry', () => {
  it("keeps a client's export to that client: status 404 and cancel 404 for another, files 401", async () => {
    await cancelAll();
    const url = await started();
    await drain(baton);
    const manifest = await manifestOf(url);
    const other = await baton.token({ clientId: 'another-client' });
    expect((await get(baton, url, { token: other })).status).toBe(404);
    expect((await cancel(url, other)).status).toBe(404);
    const file = await get(baton, manifest.output[0].url, { token: other });
    expect(file.status).toBe(401);
    expect((await file.json()).resourceType).toBe('OperationOutcome');
    expect((await jobRow(url)).status).toBe('completed');
    expect((await download(baton, manifest.output[0].url)).length).toBe(manifest.output[0].count);
  });

  it('refuses a file to a token that no longer covers its type (403)', async () => {
    await cancelAll();
    const url = await started();
    await drain(baton);
    const manifest = await manifestOf(url);
    const narrower = await baton.token({ scopes: ['system/Patient.rs'] });
    expect((await get(baton, manifest.output[0].url, { token: narrower })).status).toBe(403);
  });

  it('answers 410 for the status and the files once the export has expired', async () => {
    await cancelAll();
    const url = await started();
    await drain(baton);
    const manifest = await manifestOf(url);
    await baton.db.execute(sql`UPDATE export_jobs SET expires = now() - interval '1 second', last_polled = NULL WHERE id = ${url.split('/').pop()}`);
    for (const response of [await get(baton, url), await get(baton, manifest.output[0].url)]) {
      expect(response.status).toBe(410);
      expect((await response.json()).issue[0].code).toBe('deleted');
    }
  });
});

describe('workers', () => {
  it("takes over a crashed worker's job once its lease has run out, and completes it with every resource once", async () => {
    await cancelAll();
    const url = await started('/fhir/$export?_type=Observation,Condition,Encounter');
    const crashed = worker(baton);
    let job = await crashed.claim();
    for (let i = 0; i < 2; i++) {
      const result = await crashed.step(job as NonNullable<typeof job>);
      if ('next' in result) job = result.next;
    }
    // The crashed worker renews nothing: its lease runs out.
    await baton.db.execute(sql`UPDATE export_jobs SET lease_until = now() - interval '1 second' WHERE id = ${url.split('/').pop()}`);
    expect(await worker(baton).runPending()).toBe(1);
    // Back from the dead, the first worker may not record anything more.
    expect(await crashed.step(job as NonNullable<typeof job>)).toEqual({ lost: true });
    expect(await jobRow(url)).toMatchObject({ status: 'completed', attempts: 2 });
    const manifest = await manifestOf(url);
    const { refs } = await exported(baton, manifest);
    expect(new Set(refs).size).toBe(refs.length);
    const expected = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM resources WHERE resource_type IN ('Observation', 'Condition', 'Encounter') AND NOT deleted`);
    expect(refs.length).toBe(expected[0].n);
  });

  it('shares jobs between workers: each job is claimed by one of them', async () => {
    await cancelAll();
    const urls = [await started(), await started('/fhir/$export?_type=Condition')];
    const [a, b] = [worker(baton), worker(baton)];
    const claimed = await Promise.all([a.claim(), b.claim(), worker(baton).claim()]);
    expect(claimed.filter(Boolean).map((job) => job?.id).sort()).toEqual(urls.map((url) => url.split('/').pop()).sort());
    await cancelAll();
  });

  it('is fair between clients: the next job claimed is the oldest of a client with the fewest exports running', async () => {
    await cancelAll();
    const first = await started();
    const second = await started();
    const other = statusUrlOf(await kickOff(baton, '/fhir/$export?_type=Condition', { token: await baton.token({ clientId: 'another-client' }) }));
    const idOf = (url: string) => url.split('/').pop();
    expect((await worker(baton).claim())?.id).toBe(idOf(first));
    // The first client has an export running, the other none: the other's newer job goes first.
    expect((await worker(baton).claim())?.id).toBe(idOf(other));
    expect((await worker(baton).claim())?.id).toBe(idOf(second));
    await cancelAll();
  });

  it('fails a job whose worker vanished on its last attempt, with a 500 OperationOutcome instead of 202 forever', async () => {
    await cancelAll();
    const url = await started();
    await baton.db.execute(sql`UPDATE export_jobs SET status = 'running', lease_owner = 'gone', lease_until = now() - interval '1 second', attempts = ${baton.exportConfig.maxAttempts}
      WHERE id = ${url.split('/').pop()}`);
    await drain(baton);
    const response = await get(baton, url);
    expect(response.status).toBe(500);
    expect((await response.json()).issue[0].code).toBe('exception');
  });

  it('fails a job that cannot be planned with its OperationOutcome', async () => {
    await cancelAll();
    const url = await started();
    await baton.db.execute(sql`UPDATE export_jobs SET parameters = ${JSON.stringify({ typeFilters: [{ type: 'Observation', query: 'date=not-a-date' }] })}::jsonb WHERE id = ${url.split('/').pop()}`);
    await drain(baton);
    const response = await get(baton, url);
    expect(response.status).toBe(400);
    expect((await response.json()).resourceType).toBe('OperationOutcome');
    expect((await jobRow(url)).status).toBe('failed');
  });

  it('retries a step that fails for a passing reason (a table missing for a while), then completes', async () => {
    await cancelAll();
    const response = await kickOff(baton, '/fhir/Patient/$export', { json: { resourceType: 'Parameters', parameter: [{ name: 'patient', valueReference: { reference: 'Patient/exp-patient-1' } }] } });
    const url = statusUrlOf(response);
    await baton.db.execute(sql`ALTER TABLE export_patients RENAME TO export_patients_away`);
    try {
      await drain(baton);
    } finally {
      await baton.db.execute(sql`ALTER TABLE export_patients_away RENAME TO export_patients`);
    }
    expect(await jobRow(url)).toMatchObject({ status: 'queued', attempts: 1 });
    expect((await get(baton, url)).headers.get('x-progress')).toBe('queued, retry 2');
    await baton.db.execute(sql`UPDATE export_jobs SET not_before = now() WHERE id = ${url.split('/').pop()}`);
    await drain(baton);
    expect(await jobRow(url)).toMatchObject({ status: 'completed', attempts: 2 });
  });
});

describe('two Baton apps on one database', () => {
  let db: Database;
  let other: ReturnType<typeof createApp>;

  beforeAll(async () => {
    // On PostgreSQL a second connection pool, as another process has; PGlite has a single user.
    db = baton.databaseUrl ? await connectDatabase({ databaseUrl: baton.databaseUrl, dataDir: 'memory://', maxConnections: 4 }) : baton.db;
    other = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 1024 * 1024, export: baton.exportConfig }, db, logger: createLogger('silent'), validator: baton.validator });
  });
  afterAll(async () => {
    if (db !== baton.db) await db?.close();
  });

  it('plans in one, polls and downloads in the other, the same bytes from both', async () => {
    await cancelAll();
    const url = await started('/fhir/Patient/$export');
    expect(await worker(baton, db).runPending()).toBe(1);
    const token = await baton.token();
    const headers = { authorization: `Bearer ${token}`, accept: 'application/json' };
    const status = await other.request(pathOf(url), { headers });
    expect(status.status).toBe(200);
    const manifest = (await status.json()) as Manifest;
    expect(manifest.output.length).toBeGreaterThan(0);
    for (const file of manifest.output) {
      const fromOther = await (await other.request(pathOf(file.url), { headers })).text();
      const fromFirst = await (await get(baton, file.url)).text();
      expect(fromOther).toBe(fromFirst);
      expect(fromOther.split('\n').length - 1).toBe(file.count);
    }
  });

  it("wakes the other's worker when a job is kicked off (NOTIFY), long before its next poll", async () => {
    await cancelAll();
    const running = await startExportWorker({ db, baseUrl: BASE_URL, config: baton.exportConfig }, 3_600_000);
    try {
      // Its first run (at start) finds nothing; the next poll is an hour away.
      await running.worker.idle();
      const url = await started();
      const deadline = Date.now() + 20_000;
      while ((await jobRow(url)).status !== 'completed' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await jobRow(url)).toMatchObject({ status: 'completed' });
    } finally {
      await running.stop();
    }
  });
});
