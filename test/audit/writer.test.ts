import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealPending } from '../../src/audit/sealer.ts';
import { verifyAuditTrail } from '../../src/audit/verify.ts';
import { AuditWriter, insertAuditEvents } from '../../src/audit/writer.ts';
import { type TestBaton, startBaton } from '../support/baton.ts';
import { AUDIT, auditEvent } from './sealed-trail.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton?.close());

async function stored(ids: string[]): Promise<{ event_id: string; content: string; recorded: string }[]> {
  return baton.db.execute(sql`SELECT event_id, content, to_char(recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS recorded FROM audit_events WHERE event_id = ANY(${sql.param(ids)}::text[]) ORDER BY seq`);
}

describe('insertAuditEvents', () => {
  it('stores each event as its JSON text, in order, whatever its strings hold', async () => {
    const odd = ['a "quoted" \\ back\\slash', 'lone \ud800 surrogate', 'nul \u0000 char', 'braces {"x":[1]} and commas ,', 'emoji \ud83d\ude00'];
    const events = odd.map((text) => ({ ...auditEvent(), outcome: '4' as const, outcomeDesc: text }));
    await insertAuditEvents(baton.db, events);
    const rows = await stored(events.map((e) => e.id));
    expect(rows.map((r) => r.event_id)).toEqual(events.map((e) => e.id));
    expect(rows.map((r) => r.content)).toEqual(events.map((e) => JSON.stringify(e)));
    expect(rows.map((r) => r.recorded)).toEqual(events.map((e) => e.recorded));
    await sealPending({ db: baton.db, audit: AUDIT });
    expect(await verifyAuditTrail(baton.db)).toMatchObject({ verified: true });
  });
});

describe('audit_events.content', () => {
  it('is compressed with lz4 where the server has it, pglz otherwise, and reads back as stored', async () => {
    const [server] = await baton.db.execute<{ methods: string[] }>(sql`SELECT enumvals AS methods FROM pg_settings WHERE name = 'default_toast_compression'`);
    const event = { ...auditEvent(), outcome: '4' as const, outcomeDesc: 'x'.repeat(3000) };
    await insertAuditEvents(baton.db, [event]);
    const [row] = await baton.db.execute<{ method: string | null; content: string }>(sql`SELECT pg_column_compression(content) AS method, content FROM audit_events WHERE event_id = ${event.id}`);
    expect(row.content).toBe(JSON.stringify(event));
    expect(row.method).toBe(server.methods.includes('lz4') ? 'lz4' : 'pglz');
  });
});

describe('AuditWriter', () => {
  it('resolves each caller once its events are stored, concurrent callers sharing statements', async () => {
    const writer = new AuditWriter(baton.db);
    const batches = Array.from({ length: 30 }, (_, i) => Array.from({ length: (i % 3) + 1 }, () => auditEvent(`writer-${i}`)));
    await Promise.all(batches.map((events) => writer.record(events)));
    const ids = batches.flat().map((e) => e.id);
    expect((await stored(ids)).map((r) => r.event_id).sort()).toEqual([...ids].sort());
    // Each caller's events stay together and in their order.
    const order = (await stored(ids)).map((r) => r.event_id);
    for (const events of batches) {
      const at = order.indexOf(events[0].id);
      expect(order.slice(at, at + events.length)).toEqual(events.map((e) => e.id));
    }
  });
});
