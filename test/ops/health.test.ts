import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealPending } from '../../src/audit/sealer.ts';
import { insertAuditEvents } from '../../src/audit/writer.ts';
import { AUDIT, auditEvent } from '../audit/sealed-trail.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton.close());

describe('health', () => {
  it('answers /livez without touching dependencies', async () => {
    const res = await baton.request('/livez');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/health+json');
    expect(await body(res)).toEqual({ status: 'pass' });
  });

  it('reports pass on /readyz with per-check details when the database answers and migrations are applied', async () => {
    const res = await baton.request('/readyz');
    expect(res.status).toBe(200);
    const health = await body(res);
    expect(health.status).toBe('pass');
    expect(health.checks['database:responseTime'][0].status).toBe('pass');
    expect(health.checks['database:migrations'][0].observedValue).toMatch(/^(\d+)\/\1$/);
    expect(health.checks['audit:sealingLag'][0]).toMatchObject({ status: 'pass', observedUnit: 's' });
  });

  it('warns on /readyz while audit events wait more than a minute to be sealed, and passes once they are', async () => {
    const other = await startBaton();
    try {
      await sealPending({ db: other.db, audit: AUDIT });
      await insertAuditEvents(other.db, [{ ...auditEvent(), recorded: new Date(Date.now() - 90_000).toISOString() }, auditEvent()]);
      const behind = await other.request('/readyz');
      expect(behind.status).toBe(200);
      const health = await body(behind);
      expect(health.status).toBe('warn');
      const check = health.checks['audit:sealingLag'][0];
      expect(check).toMatchObject({ status: 'warn', observedUnit: 's', output: expect.stringMatching(/^2 audit events wait to be sealed; the oldest was recorded 9\d(\.\d)? s ago$/) });
      expect(check.observedValue).toBeGreaterThanOrEqual(90);
      await sealPending({ db: other.db, audit: AUDIT });
      const sealed = await body(await other.request('/readyz'));
      expect(sealed.status).toBe('pass');
      expect(sealed.checks['audit:sealingLag'][0]).toMatchObject({ status: 'pass', observedValue: 0 });
    } finally {
      await other.close();
    }
  });

  it('fails /readyz with 503 when a migration is missing', async () => {
    const other = await startBaton();
    try {
      await other.db.execute(sql`DELETE FROM drizzle.__drizzle_migrations`);
      const res = await other.request('/readyz');
      expect(res.status).toBe(503);
      const health = await body(res);
      expect(health.status).toBe('fail');
      expect(health.checks['database:migrations'][0].status).toBe('fail');
    } finally {
      await other.close();
    }
  });
});

describe('metrics', () => {
  it('counts requests by route pattern, method and status, never by id', async () => {
    await baton.request('/fhir/Patient/secret-member-id-123');
    await baton.request('/fhir/Patient/secret-member-id-123');
    const res = await baton.request('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).not.toContain('secret-member-id-123');
    const line = text.split('\n').find((l) => l.startsWith('baton_http_requests_total{') && l.includes('route="/fhir/:type/:id"'));
    expect(line).toMatch(/method="GET".*status="404".* 2$/);
    expect(text).toContain('baton_http_request_duration_seconds_bucket');
  });
});
