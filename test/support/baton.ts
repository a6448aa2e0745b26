import { randomBytes } from 'node:crypto';
import type { Hono } from 'hono';
import postgres from 'postgres';
import { createApp } from '../../src/app.ts';
import { connectDatabase, type Database } from '../../src/db/connection.ts';
import { migrateDatabase } from '../../src/db/migrate.ts';
import type { FhirContext } from '../../src/fhir/interactions.ts';
import { createValidator } from '../../src/fhir/profiles.ts';
import type { ResourceValidator } from '../../src/fhir/validation.ts';
import { createLogger } from '../../src/logger.ts';

export const BASE_URL = 'http://baton.test/fhir';

export interface TestBaton {
  app: Hono;
  db: Database;
  validator: ResourceValidator;
  ctx: FhirContext;
  /** The database URL when running on PostgreSQL (a database of this test file's own). */
  databaseUrl: string | undefined;
  request(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

/**
 * A Baton app on a database of its own: in-memory PGlite, or, when DATABASE_URL is set (CI's
 * PostgreSQL run), a freshly created database so runs never see each other's data.
 */
export async function startBaton(options: { profilePackages?: string[] } = {}): Promise<TestBaton> {
  const { databaseUrl, drop } = await freshDatabase();
  const db = await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections: 10 });
  await migrateDatabase(db);
  const logger = createLogger('silent');
  const validator = await createValidator(options.profilePackages ?? [], logger);
  const app = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 16 * 1024 * 1024 }, db, logger, validator });
  return {
    app,
    db,
    validator,
    databaseUrl,
    ctx: { db, q: db, inTransaction: false, baseUrl: BASE_URL, validator },
    request: (path, init = {}) => {
      const { json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (json !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/fhir+json');
      return Promise.resolve(app.request(path, { ...rest, headers, body: json !== undefined ? JSON.stringify(json) : rest.body }));
    },
    close: async () => {
      await db.close();
      await drop();
    },
  };
}

export async function freshDatabase(): Promise<{ databaseUrl: string | undefined; drop: () => Promise<void> }> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) return { databaseUrl: undefined, drop: async () => undefined };
  const name = `baton_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    databaseUrl: url.toString(),
    drop: async () => {
      const again = postgres(adminUrl, { max: 1, onnotice: () => undefined });
      await again.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await again.end();
    },
  };
}

/** Reads the JSON body of a FHIR response. */
export async function body<T = Record<string, any>>(response: Response): Promise<T> {
  return (await response.json()) as T;
}
