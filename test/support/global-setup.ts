import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import { migrate } from 'drizzle-orm/pglite/migrator';
import type { TestProject } from 'vitest/node';
import { connectDatabase } from '../../src/db/connection.ts';
import { MIGRATIONS_FOLDER, migrateDatabase } from '../../src/db/migrate.ts';
import { freshDatabase } from './baton.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A migrated PGlite data directory (dumpDataDir), for test databases to start from. */
    pgliteSnapshot: string | undefined;
    /** A migrated PostgreSQL database that test databases are created from (CREATE DATABASE … TEMPLATE). */
    postgresTemplate: string | undefined;
  }
}

/**
 * Migrates one database before the run, for every test database to be copied from: a fresh
 * PGlite spends ~3 s in initdb and migrations (most of a small test file's time on CI's two
 * cores); loading a dump takes ~1 s. Tests still run migrateDatabase, which finds nothing to do.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.DATABASE_URL) {
    const template = await freshDatabase();
    // Two connections: migrateDatabase holds its lock on one while the migrator runs on another.
    const db = await connectDatabase({ databaseUrl: template.databaseUrl, dataDir: 'memory://', maxConnections: 2 });
    await migrateDatabase(db);
    await db.close();
    project.provide('postgresTemplate', new URL(template.databaseUrl as string).pathname.slice(1));
    project.provide('pgliteSnapshot', undefined);
    return template.drop;
  }
  const dir = mkdtempSync(join(tmpdir(), 'baton-test-snapshot-'));
  // PGlite itself rather than connectDatabase: only it can dump its data directory.
  const pglite = await PGlite.create('memory://');
  await migrate(drizzle(pglite), { migrationsFolder: MIGRATIONS_FOLDER });
  const path = join(dir, 'migrated.tar');
  writeFileSync(path, Buffer.from(await (await pglite.dumpDataDir('none')).arrayBuffer()));
  await pglite.close();
  project.provide('pgliteSnapshot', path);
  project.provide('postgresTemplate', undefined);
  return async () => rmSync(dir, { recursive: true, force: true });
}
