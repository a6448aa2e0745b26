import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealPending } from '../../src/audit/sealer.ts';
import { type Database, connectDatabase } from '../../src/db/connection.ts';
import { migrateDatabase } from '../../src/db/migrate.ts';
import { freshDatabase } from '../support/baton.ts';
import { AUDIT, auditEvent, recordEvents } from './sealed-trail.ts';

const run = promisify(execFile);
const dataDir = mkdtempSync(join(tmpdir(), 'baton-audit-cli-'));
let database: Awaited<ReturnType<typeof freshDatabase>>;

/** The embedded database admits one process at a time: each step opens and closes it. */
async function withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await connectDatabase({ databaseUrl: database.databaseUrl, dataDir, maxConnections: 2 });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

async function verifyCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await run(process.execPath, ['--import', 'tsx', 'src/audit/verify-cli.ts', ...args], {
    env: { ...process.env, DATABASE_URL: database.databaseUrl ?? '', BATON_DATA_DIR: dataDir, ...env },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
  return result;
}

beforeAll(async () => {
  database = await freshDatabase();
  await withDatabase(async (db) => {
    await migrateDatabase(db);
    await recordEvents(db, Array.from({ length: 12 }, () => auditEvent()));
    await sealPending({ db, audit: AUDIT });
  });
});
afterAll(() => database?.drop());

describe('npm run audit:verify', () => {
  it('prints the verification as JSON and exits 0 when the trail verifies, 2 on bad arguments or configuration', async () => {
    // Only one of these opens the embedded database: it admits one process at a time.
    const [whole, badRange, unknownOption, badKey, unmigrated] = await Promise.all([
      verifyCli([]),
      verifyCli(['--from', '0']),
      verifyCli(['--since', '1']),
      verifyCli([], { BATON_AUDIT_KEY: join(dataDir, 'absent.pem') }),
      verifyCli([], { DATABASE_URL: '', BATON_DATA_DIR: mkdtempSync(join(tmpdir(), 'baton-audit-cli-empty-')) }),
    ]);
    expect(whole.code).toBe(0);
    expect(JSON.parse(whole.stdout)).toEqual({ verified: true, checkedEvents: 12, lastCheckpoint: { position: 10, time: expect.any(String) } });
    const range = await verifyCli(['--from', '5', '--to', '8']);
    expect(range.code).toBe(0);
    expect(JSON.parse(range.stdout)).toMatchObject({ verified: true, checkedEvents: 4 });
    expect(badRange).toMatchObject({ code: 2, stdout: '', stderr: expect.stringContaining('from must be a positive integer') });
    expect(unknownOption).toMatchObject({ code: 2, stderr: expect.stringContaining('--since') });
    expect(badKey).toMatchObject({ code: 2, stderr: expect.stringContaining('BATON_AUDIT_KEY') });
    expect(unmigrated).toMatchObject({ code: 2, stderr: expect.stringContaining('not migrated') });
  });

  it('exits 1 naming the first invalid position when the trail was tampered with', async () => {
    await withDatabase((db) =>
      db.transaction(async (tx) => {
        await tx.execute(sql`SET LOCAL session_replication_role = replica`);
        await tx.execute(sql`DELETE FROM audit_events WHERE seq = (SELECT event_seq FROM audit_chain WHERE position = 3)`);
      }),
    );
    const tampered = await verifyCli([]);
    expect(tampered.code).toBe(1);
    expect(JSON.parse(tampered.stdout)).toMatchObject({ verified: false, checkedEvents: 2, firstInvalidPosition: 3, reason: expect.stringContaining('deleted') });
  });
});
