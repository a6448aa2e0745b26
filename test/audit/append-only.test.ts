import { type SQL, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_APPEND_ONLY_SQLSTATE, conflictFromDatabase } from '../../src/fhir/database-errors.ts';
import { sealPending } from '../../src/audit/sealer.ts';
import { type TestBaton, body, startBaton } from '../support/baton.ts';
import { AUDIT, auditEvent, recordEvents } from './sealed-trail.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
  await recordEvents(baton.db, [auditEvent(), auditEvent()]);
  await sealPending({ db: baton.db, audit: AUDIT });
});
afterAll(() => baton?.close());

/** The SQLSTATE a statement fails with (drizzle wraps the driver's error), or undefined when it succeeds. */
async function failureOf(statement: SQL): Promise<string | undefined> {
  try {
    await baton.db.execute(statement);
    return undefined;
  } catch (error) {
    for (let e = error as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) if (typeof e.code === 'string') return e.code;
    throw error;
  }
}

async function count(table: string): Promise<number> {
  const [row] = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM ${sql.identifier(table)}`);
  return row.n;
}

describe('the audit trail is append-only', () => {
  it.each([
    ['audit_events', 'content'],
    ['audit_chain', 'chain_hash'],
    ['audit_checkpoints', 'jws'],
    ['audit_signing_keys', 'alg'],
  ])('refuses UPDATE, DELETE and TRUNCATE on %s with SQLSTATE ZA001', async (table, column) => {
    const rows = await count(table);
    expect(rows).toBeGreaterThan(0);
    const t = sql.identifier(table);
    expect(await failureOf(sql`UPDATE ${t} SET ${sql.identifier(column)} = 'x'`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await failureOf(sql`DELETE FROM ${t}`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await failureOf(sql`TRUNCATE ${t}`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await count(table)).toBe(rows);
  });

  it.each(['resources', 'resource_history'])('refuses UPDATE, DELETE and TRUNCATE of the AuditEvent rows in %s, and leaves other types alone', async (table) => {
    const t = sql.identifier(table);
    const auditEvents = sql`SELECT count(*)::int AS n FROM ${t} WHERE resource_type = 'AuditEvent'`;
    const [before] = await baton.db.execute<{ n: number }>(auditEvents);
    expect(before.n).toBe(2);
    expect(await failureOf(sql`UPDATE ${t} SET content = '{}' WHERE resource_type = 'AuditEvent'`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await failureOf(sql`UPDATE ${t} SET resource_type = 'Basic' WHERE resource_type = 'AuditEvent'`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await failureOf(sql`DELETE FROM ${t} WHERE resource_type = 'AuditEvent'`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await failureOf(sql`TRUNCATE ${t}`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await baton.db.execute(auditEvents)).toEqual([before]);

    const created = await body(await baton.request('/fhir/Basic', { method: 'POST', json: { resourceType: 'Basic', code: { text: 'note' } } }));
    expect(await failureOf(sql`UPDATE ${t} SET last_updated = last_updated WHERE resource_type = 'Basic' AND id = ${created.id}`)).toBeUndefined();
  });

  it('lets the REST API update and delete other types as before', async () => {
    const created = await body(await baton.request('/fhir/Basic', { method: 'POST', json: { resourceType: 'Basic', code: { text: 'v1' } } }));
    const updated = await baton.request(`/fhir/Basic/${created.id}`, { method: 'PUT', json: { ...created, code: { text: 'v2' } } });
    expect(updated.status).toBe(200);
    expect((await baton.request(`/fhir/Basic/${created.id}`, { method: 'DELETE' })).status).toBe(204);
  });
});

describe('a refusal that reaches a request', () => {
  it('is a 405 with an OperationOutcome, not a server fault', () => {
    const wrapped = { name: 'DrizzleQueryError', cause: { code: AUDIT_APPEND_ONLY_SQLSTATE } };
    const error = conflictFromDatabase(wrapped);
    expect(error?.status).toBe(405);
    expect(error?.outcome.issue?.[0].code).toBe('not-supported');
  });
});
