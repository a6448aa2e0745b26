import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'drizzle-orm';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../../src/app.ts';
import { ConfigError, loadConfig } from '../../../src/config.ts';
import { connectDatabase, type Database } from '../../../src/db/connection.ts';
import type { AccessPolicy } from '../../../src/fhir/access.ts';
import { idempotency, purgeExpiredIdempotencyKeys, requestFingerprint } from '../../../src/fhir/http/idempotency.ts';
import type { FhirEnv } from '../../../src/fhir/http/routes.ts';
import { createLogger } from '../../../src/logger.ts';
import { BASE_URL, body, startBaton, type TestBaton } from '../../support/baton.ts';

/**
 * Idempotency-Key on POST, through the HTTP API: a retried create, transaction or operation
 * is answered from the first attempt without doing the work again; a key reused for another
 * request is 422; keys are per client, shared by every app on the database, claimed by exactly
 * one of concurrent duplicates, released by a 5xx, freed by a dead claim's lease, and forgotten
 * after the retention window.
 */

let baton: TestBaton;

beforeAll(async () => {
  baton = await startBaton();
});
afterAll(async () => {
  await baton?.close();
});

const SYSTEM = 'urn:baton:test:idempotency';

function patient(identifier: string): Record<string, unknown> {
  return { resourceType: 'Patient', identifier: [{ system: SYSTEM, value: identifier }], name: [{ family: 'Retry' }] };
}

function createPatient(key: string | undefined, json: unknown, options: { token?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = key === undefined ? {} : { 'idempotency-key': key };
  return baton.request('/fhir/Patient', { method: 'POST', headers, json, ...(options.token ? { token: options.token } : {}) });
}

/** How many Patients carry the identifier. */
async function patientsWith(identifier: string): Promise<number> {
  const response = await baton.request(`/fhir/Patient?identifier=${encodeURIComponent(`${SYSTEM}|${identifier}`)}`);
  expect(response.status).toBe(200);
  return ((await body(response)).entry ?? []).length;
}

/** What a client sees of a response: enough to tell a replay from the original. */
async function seen(response: Response): Promise<{ status: number; body: string; headers: Record<string, string | null> }> {
  const headers = Object.fromEntries(['location', 'content-location', 'etag', 'last-modified', 'content-type'].map((name) => [name, response.headers.get(name)]));
  return { status: response.status, body: await response.text(), headers };
}

async function outcomeOf(response: Response): Promise<{ status: number; code: string; diagnostics: string }> {
  const outcome = await body(response);
  expect(outcome.resourceType).toBe('OperationOutcome');
  return { status: response.status, code: outcome.issue[0].code, diagnostics: outcome.issue[0].diagnostics };
}

describe('a retried create', () => {
  it('answers the first status, body and headers, marked as a replay, and creates one resource', async () => {
    const key = randomUUID();
    const first = await createPatient(key, patient('create-1'));
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const original = await seen(first);

    const again = await createPatient(key, patient('create-1'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('x-request-id')).toBeTruthy();
    expect(await seen(again)).toEqual(original);
    expect(original.headers.location).toMatch(/\/Patient\/[^/]+\/_history\/1$/);
    expect(await patientsWith('create-1')).toBe(1);
  });

  it('takes the draft’s quoted form and the bare form as the same key', async () => {
    const key = randomUUID();
    const first = await createPatient(`"${key}"`, patient('create-quoted'));
    const again = await createPatient(key, patient('create-quoted'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
    expect(await patientsWith('create-quoted')).toBe(1);
  });

  it('stores a 4xx and replays it', async () => {
    const key = randomUUID();
    // Another type than the URL names: refused before anything is written.
    const invalid = { resourceType: 'Observation', status: 'final', code: { text: 'idempotency' } };
    const first = await createPatient(key, invalid);
    expect(first.status).toBeGreaterThanOrEqual(400);
    expect(first.status).toBeLessThan(500);
    const original = await seen(first);
    const again = await createPatient(key, invalid);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await seen(again)).toEqual(original);
  });

  it('is audited like any request', async () => {
    const key = randomUUID();
    await createPatient(key, patient('create-audited'));
    const events = async () => Number((await baton.db.execute<{ n: string }>(sql`SELECT count(*) AS n FROM audit_events`))[0].n);
    const before = await events();
    const again = await createPatient(key, patient('create-audited'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await events()).toBeGreaterThan(before);
  });

  it('without the header, creates again as before', async () => {
    expect((await createPatient(undefined, patient('create-plain'))).status).toBe(201);
    expect((await createPatient(undefined, patient('create-plain'))).status).toBe(201);
    expect(await patientsWith('create-plain')).toBe(2);
  });
});

describe('a key reused for another request', () => {
  it('is refused with 422 for a different body, naming no data', async () => {
    const key = randomUUID();
    expect((await createPatient(key, patient('reuse-1'))).status).toBe(201);
    const { status, code, diagnostics } = await outcomeOf(await createPatient(key, patient('reuse-2')));
    expect(status).toBe(422);
    expect(code).toBe('processing');
    expect(diagnostics).toMatch(/different request/);
    expect(diagnostics).not.toContain('reuse-');
    expect(await patientsWith('reuse-2')).toBe(0);
  });

  it('is refused with 422 for another URL', async () => {
    const key = randomUUID();
    expect((await createPatient(key, patient('reuse-url'))).status).toBe(201);
    const other = await baton.request('/fhir/Patient?_pretty=true', { method: 'POST', headers: { 'idempotency-key': key }, json: patient('reuse-url') });
    expect(other.status).toBe(422);
    expect(await patientsWith('reuse-url')).toBe(1);
  });
});

describe('keys are per client', () => {
  it('gives the same key from another client a request of its own', async () => {
    const key = randomUUID();
    const other = await baton.token({ clientId: 'idempotency-other-client' });
    const mine = await createPatient(key, patient('per-client'));
    const theirs = await createPatient(key, patient('per-client'), { token: other });
    expect(mine.status).toBe(201);
    expect(theirs.status).toBe(201);
    expect(theirs.headers.get('idempotent-replayed')).toBeNull();
    expect(theirs.headers.get('location')).not.toBe(mine.headers.get('location'));
    // And each client's own retry replays its own response.
    expect((await createPatient(key, patient('per-client'), { token: other })).headers.get('location')).toBe(theirs.headers.get('location'));
    expect(await patientsWith('per-client')).toBe(2);
  });
});

describe('key syntax', () => {
  it.each([
    ['empty', ''],
    ['empty quoted', '""'],
    ['256 characters', 'k'.repeat(256)],
    ['not ASCII', 'caf\u00e9'],
    ['two keys', '"a", "b"'],
    ['an unterminated string', '"abc'],
    ['a bare key with a space', 'a b'],
  ])('refuses %s with 400 and does nothing', async (_, key) => {
    const identifier = `syntax-${randomUUID()}`;
    const { status, code, diagnostics } = await outcomeOf(await createPatient(key, patient(identifier)));
    expect(status).toBe(400);
    expect(code).toBe('invalid');
    expect(diagnostics).toMatch(/Idempotency-Key must be/);
    expect(await patientsWith(identifier)).toBe(0);
  });

  it('takes 255 printable characters, escapes included', async () => {
    expect((await createPatient('k'.repeat(255), patient('syntax-long'))).status).toBe(201);
    expect((await createPatient('"a \\"quoted\\" key"', patient('syntax-escaped'))).status).toBe(201);
  });
});

describe('a retried transaction', () => {
  it('replays the response Bundle without writing its entries twice', async () => {
    const key = randomUUID();
    const transaction = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: ['tx-1', 'tx-2'].map((identifier) => ({ fullUrl: `urn:uuid:${randomUUID()}`, resource: patient(identifier), request: { method: 'POST', url: 'Patient' } })),
    };
    const first = await baton.request('/fhir', { method: 'POST', headers: { 'idempotency-key': key }, json: transaction });
    expect(first.status).toBe(200);
    const original = await seen(first);
    const again = await baton.request('/fhir', { method: 'POST', headers: { 'idempotency-key': key }, json: transaction });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await seen(again)).toEqual(original);
    expect(await patientsWith('tx-1')).toBe(1);
    expect(await patientsWith('tx-2')).toBe(1);
  });
});

describe('a retried operation', () => {
  it('kicks a Bulk Data export off once: the same 202 and status URL, one job', async () => {
    const key = randomUUID();
    const kickOff = () =>
      baton.request('/fhir/$export', {
        method: 'POST',
        headers: { 'idempotency-key': key, prefer: 'respond-async', accept: 'application/fhir+json' },
        json: { resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'Patient' }] },
      });
    const jobs = async () => Number((await baton.db.execute<{ n: string }>(sql`SELECT count(*) AS n FROM export_jobs`))[0].n);
    const before = await jobs();
    const first = await kickOff();
    expect(first.status, await first.clone().text()).toBe(202);
    const again = await kickOff();
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('content-location')).toBe(first.headers.get('content-location'));
    expect(await jobs()).toBe(before + 1);
  });
});

describe('concurrent duplicates', () => {
  it('do the work once: five at once make one resource, and all five get its response', async () => {
    const key = randomUUID();
    const responses = await Promise.all(Array.from({ length: 5 }, () => createPatient(key, patient('concurrent'))));
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
    expect(new Set(responses.map((r) => r.headers.get('location'))).size).toBe(1);
    expect(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(4);
    expect(await patientsWith('concurrent')).toBe(1);
  });

  it('answer 409 with Retry-After while the first is still running', async () => {
    const key = randomUUID();
    const json = patient('running');
    await claim(key, json, "now() + interval '1 minute'");
    const response = await createPatient(key, json);
    const { status, code } = await outcomeOf(response);
    expect(status).toBe(409);
    expect(code).toBe('conflict');
    expect(response.headers.get('retry-after')).toBe('1');
    expect(await patientsWith('running')).toBe(0);
  }, 15_000);

  it('take over a claim whose lease ran out (its process died)', async () => {
    const key = randomUUID();
    const json = patient('dead-claim');
    await claim(key, json, "now() - interval '1 second'");
    const response = await createPatient(key, json);
    expect(response.status).toBe(201);
    expect(response.headers.get('idempotent-replayed')).toBeNull();
    expect(await patientsWith('dead-claim')).toBe(1);
    expect((await createPatient(key, json)).headers.get('location')).toBe(response.headers.get('location'));
  });
});

/** A claim on the key for creating `json`, as a request of the harness client holds it while it runs (or left it when its process died). */
async function claim(key: string, json: unknown, leaseUntil: string): Promise<void> {
  const fingerprint = requestFingerprint('POST', '/fhir/Patient', '', new TextEncoder().encode(JSON.stringify(json)));
  await baton.db.execute(sql`INSERT INTO idempotency_keys (client_id, key, fingerprint, claim, lease_until, expires)
    VALUES ('test-harness', ${key}, ${fingerprint}, ${randomUUID()}, ${sql.raw(leaseUntil)}, now() + interval '1 hour')`);
}

describe('a request running longer than its lease', () => {
  it('keeps its claim alive: a duplicate waits for it instead of taking the key over', async () => {
    // A slow POST behind the middleware with a one-second lease, so renewal is what keeps the claim.
    let runs = 0;
    const slow = new Hono<FhirEnv>();
    slow.use('*', async (c, next) => {
      c.set('access', { caller: { clientId: 'idempotency-slow', kind: 'internal' } } as AccessPolicy);
      await next();
    });
    slow.post('*', idempotency({ db: baton.db, logger: createLogger('silent'), retentionHours: 1, leaseSeconds: 1, waitMs: 5_000 }));
    slow.post('/slow', async (c) => {
      runs += 1;
      await sleep(2_500);
      return c.json({ run: runs }, 201);
    });
    const post = () => slow.request('/slow', { method: 'POST', headers: { 'idempotency-key': 'slow-key' }, body: '{}' });
    const first = post();
    await sleep(1_500);
    const duplicate = await post();
    expect((await first).status).toBe(201);
    expect(duplicate.status).toBe(201);
    expect(duplicate.headers.get('idempotent-replayed')).toBe('true');
    expect(runs).toBe(1);
  });
});

describe('a first attempt that fails', () => {
  it('with a 5xx releases the key: the retry does the work', async () => {
    const key = randomUUID();
    const json = { resourceType: 'Basic', code: { text: 'idempotency-5xx' } };
    // An unexpected database error on this one insert: the server answers 500.
    await baton.db.execute(sql.raw(`CREATE FUNCTION idempotency_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`));
    await baton.db.execute(sql.raw(`CREATE TRIGGER idempotency_test_fail BEFORE INSERT ON resources FOR EACH ROW WHEN (NEW.resource_type = 'Basic') EXECUTE FUNCTION idempotency_test_fail()`));
    let failed: Response;
    try {
      failed = await baton.request('/fhir/Basic', { method: 'POST', headers: { 'idempotency-key': key }, json });
    } finally {
      await baton.db.execute(sql.raw('DROP TRIGGER idempotency_test_fail ON resources'));
      await baton.db.execute(sql.raw('DROP FUNCTION idempotency_test_fail()'));
    }
    expect(failed.status).toBe(500);
    const retried = await baton.request('/fhir/Basic', { method: 'POST', headers: { 'idempotency-key': key }, json });
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
  });
});

describe('a first attempt refused for the moment', () => {
  it('with 429 releases the key: the retry, once there is room, does the work', async () => {
    const token = await baton.token({ clientId: 'idempotency-quota' });
    const kickOff = (key?: string) =>
      baton.request('/fhir/$export', {
        method: 'POST',
        token,
        headers: { prefer: 'respond-async', accept: 'application/fhir+json', ...(key ? { 'idempotency-key': key } : {}) },
        json: { resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'Patient' }] },
      });
    // The default quota: three exports queued at once per client (no worker runs here).
    for (let i = 0; i < 3; i++) expect((await kickOff()).status).toBe(202);
    const key = randomUUID();
    const refused = await kickOff(key);
    expect(refused.status).toBe(429);
    await baton.db.execute(sql`UPDATE export_jobs SET status = 'cancelled' WHERE client_id = 'idempotency-quota'`);
    const retried = await kickOff(key);
    expect(retried.status).toBe(202);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
  });
});

describe('retention', () => {
  it('forgets a key after its window: the key then names a new request, and the purge deletes it', async () => {
    const key = randomUUID();
    const first = await createPatient(key, patient('expiry-1'));
    expect(first.status).toBe(201);
    await baton.db.execute(sql`UPDATE idempotency_keys SET expires = now() - interval '1 second' WHERE key = ${key}`);
    const reused = await createPatient(key, patient('expiry-2'));
    expect(reused.status).toBe(201);
    expect(reused.headers.get('idempotent-replayed')).toBeNull();
    expect(await patientsWith('expiry-2')).toBe(1);

    await baton.db.execute(sql`UPDATE idempotency_keys SET expires = now() - interval '1 second' WHERE key = ${key}`);
    expect(await purgeExpiredIdempotencyKeys(baton.db)).toBeGreaterThanOrEqual(1);
    expect(await baton.db.execute(sql`SELECT 1 FROM idempotency_keys WHERE key = ${key}`)).toHaveLength(0);
  });

  it('is BATON_IDEMPOTENCY_RETENTION_HOURS, 24 by default, a whole number of hours from 1 to 720', () => {
    expect(loadConfig({}).idempotency.retentionHours).toBe(24);
    expect(loadConfig({ BATON_IDEMPOTENCY_RETENTION_HOURS: '720' }).idempotency.retentionHours).toBe(720);
    for (const value of ['0', '721', '1.5', 'a day']) expect(() => loadConfig({ BATON_IDEMPOTENCY_RETENTION_HOURS: value })).toThrow(ConfigError);
  });

  it('keeps a key for the configured number of hours', async () => {
    const other = await startBaton({ config: { idempotency: { retentionHours: 2 } } });
    try {
      const key = randomUUID();
      expect((await other.request('/fhir/Patient', { method: 'POST', headers: { 'idempotency-key': key }, json: patient('retention') })).status).toBe(201);
      const [row] = await other.db.execute<{ hours: number }>(sql`SELECT round(extract(epoch FROM expires - created) / 3600) AS hours FROM idempotency_keys WHERE key = ${key}`);
      expect(Number(row.hours)).toBe(2);
    } finally {
      await other.close();
    }
  });
});

describe('two Baton apps on one database', () => {
  let db: Database;
  let other: ReturnType<typeof createApp>;

  beforeAll(async () => {
    // On PostgreSQL a second connection pool, as another process has; PGlite has a single user.
    db = baton.databaseUrl ? await connectDatabase({ databaseUrl: baton.databaseUrl, dataDir: 'memory://', maxConnections: 4 }) : baton.db;
    other = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 1024 * 1024 }, db, logger: createLogger('silent'), validator: baton.validator });
  });
  afterAll(async () => {
    if (db !== baton.db) await db?.close();
  });

  const createIn = async (app: ReturnType<typeof createApp>, key: string, json: unknown) =>
    app.request('/fhir/Patient', { method: 'POST', headers: { authorization: `Bearer ${await baton.token()}`, 'content-type': 'application/fhir+json', 'idempotency-key': key }, body: JSON.stringify(json) });

  it('share keys: a retry sent to the other app is replayed', async () => {
    const key = randomUUID();
    const first = await createIn(baton.app, key, patient('two-apps'));
    expect(first.status).toBe(201);
    const again = await createIn(other, key, patient('two-apps'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
    expect((await createIn(other, key, patient('two-apps-other'))).status).toBe(422);
    expect(await patientsWith('two-apps')).toBe(1);
  });

  it('share claims: duplicates sent to both at once make one resource', async () => {
    const key = randomUUID();
    const responses = await Promise.all([baton.app, other, baton.app, other].map((app) => createIn(app, key, patient('two-apps-concurrent'))));
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    expect(new Set(responses.map((r) => r.headers.get('location'))).size).toBe(1);
    expect(await patientsWith('two-apps-concurrent')).toBe(1);
  });
});
