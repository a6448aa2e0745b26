import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealPending } from '../../src/audit/sealer.ts';
import { startBaton, type TestBaton } from '../support/baton.ts';
import { AUDIT, auditEvent } from './sealed-trail.ts';

/**
 * Transaction ids are ordered as numbers, never as text: '10000' sorts before '9999' as text, and
 * a sealer ordering by a text alias once sealed the higher ids first and moved its head past the
 * others, which were then never sealed.
 */
let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton?.close());

describe('sealing order', () => {
  it('seals transactions across a change in the number of digits of their ids in numeric order', async () => {
    const [{ current }] = await baton.db.execute<{ current: string }>(sql`SELECT pg_current_xact_id()::text AS current`);
    // Two ids below every running transaction, on either side of a power of ten: 99…9 and 100…0.
    const boundary = 10 ** (current.length - 1);
    expect(boundary).toBeGreaterThan(1);
    const [low, high] = [boundary - 1, boundary];
    const [a, b] = [auditEvent(), auditEvent()];
    await baton.db.execute(sql`INSERT INTO audit_events (txid, event_id, recorded, content) VALUES
      (${String(high)}::xid8, ${b.id}, ${b.recorded}::timestamptz, ${JSON.stringify(b)}),
      (${String(low)}::xid8, ${a.id}, ${a.recorded}::timestamptz, ${JSON.stringify(a)})`);
    await sealPending({ db: baton.db, audit: AUDIT });
    const chain = await baton.db.execute<{ txid: string }>(sql`SELECT event_txid::text AS txid FROM audit_chain ORDER BY position`);
    expect(chain.map((row) => Number(row.txid))).toEqual([low, high]);
  });
});
