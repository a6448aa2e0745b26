import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import type { Database } from './connection.ts';

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url));

/** Applies every migration in migrations/ not yet applied; the same SQL on PGlite and PostgreSQL. */
export async function migrateDatabase(db: Database): Promise<void> {
  // Several Baton processes may start at once against one database: one migrates, the others wait.
  if (db.kind === 'postgres') {
    await db.transaction(async (tx) => {
      await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('baton:migrate'))`);
      await migratePostgres(db.drizzle as Parameters<typeof migratePostgres>[0], { migrationsFolder: MIGRATIONS_FOLDER });
    });
  } else {
    await migratePglite(db.drizzle as Parameters<typeof migratePglite>[0], { migrationsFolder: MIGRATIONS_FOLDER });
  }
}

/** How many migrations the journal lists and how many the database has applied. */
export async function migrationStatus(db: Database): Promise<{ expected: number; applied: number }> {
  const journal = JSON.parse(readFileSync(`${MIGRATIONS_FOLDER}/meta/_journal.json`, 'utf8')) as { entries: unknown[] };
  const rows = await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`);
  return { expected: journal.entries.length, applied: rows[0]?.n ?? 0 };
}
