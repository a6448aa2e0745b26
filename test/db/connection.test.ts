import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type Database } from '../../src/db/connection.ts';
import { freshDatabase } from '../support/baton.ts';

/** Both databases answer executeBytes the same way: each column's text as UTF-8 bytes, NULL as null, in column order. */
let db: Database;
let drop: () => Promise<void>;

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
  db = await connectDatabase({ databaseUrl: fresh.databaseUrl, dataDir: 'memory://', maxConnections: 2 });
});
afterAll(async () => {
  await db?.close();
  await drop?.();
});

describe('executeBytes', () => {
  it('answers each column as the bytes of its text, NULL as null, in column order, with bound parameters', async () => {
    const text = '{"name":"Zoë \\"Ann\\" Ng","note":"☃"}';
    const rows = await db.executeBytes(sql`SELECT v.id, v.content, NULL::text AS missing FROM (VALUES ('b', ${text}::text), ('a', 'x')) v(id, content) ORDER BY v.id DESC`);
    expect(rows).toHaveLength(2);
    expect(rows.map((row) => row.map((column) => column?.toString() ?? null))).toEqual([
      ['b', text, null],
      ['a', 'x', null],
    ]);
    expect(Buffer.isBuffer(rows[0][1])).toBe(true);
    expect((rows[0][1] as Buffer).equals(Buffer.from(text))).toBe(true);
  });

  it('runs inside a transaction and sees its writes', async () => {
    const seen = await db.transaction(async (tx) => {
      await tx.execute(sql`CREATE TEMPORARY TABLE bytes_probe (v text) ON COMMIT DROP`);
      await tx.execute(sql`INSERT INTO bytes_probe VALUES ('written')`);
      return tx.executeBytes(sql`SELECT v FROM bytes_probe`);
    });
    expect(seen.map(([v]) => v?.toString())).toEqual(['written']);
  });
});
