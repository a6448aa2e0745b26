import { type SQL, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_APPEND_ONLY_SQLSTATE, fhirErrorFromDatabase } from '../../src/fhir/database-errors.ts';
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
    ['audit_index', 'event_id'],
    ['audit_index_strings', 'value'],
  ])('refuses UPDATE, DELETE and TRUNCATE on %s with SQLSTATE ZA001', async (table, column) => {
    const rows = await count(table);
    expect(rows).toBeGreaterThan(0);
    const t = sql.identifier(table);
    expect(await failureOf(sql`UPDATE ${t} SET ${sql.identifier(column)} = 'x'`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await failureOf(sql`DELETE FROM ${t}`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await failureOf(sql`TRUNCATE ${t}`)).toBe(AUDIT_APPEND_ONLY_SQLSTATE);
    expect(await count(table)).toBe(rows);
  });

  it('keeps AuditEvents out of the FHIR store, whose rows the REST API changes', async () => {
    for (const table of ['resources', 'resource_history', 'sp_token', 'sp_reference']) {
      const [row] = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM ${sql.identifier(table)} WHERE resource_type = 'AuditEvent'`);
      expect(row.n, table).toBe(0);
    }
    expect(await count('audit_index')).toBe(await count('audit_chain'));
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
    const error = fhirErrorFromDatabase(wrapped);
    expect(error?.status).toBe(405);
    expect(error?.outcome.issue?.[0].code).toBe('not-supported');
  });
});
