import { randomBytes } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import postgres from 'postgres';
import { inject } from 'vitest';
import { type AppDeps, createApp } from '../../src/app.ts';
import { type AccessTokenSubject, signAccessToken } from '../../src/auth/access-token.ts';
import { SigningKeyStore } from '../../src/auth/signing-keys.ts';
import { connectDatabase, type Database } from '../../src/db/connection.ts';
import { migrateDatabase } from '../../src/db/migrate.ts';
import { sealPending } from '../../src/audit/sealer.ts';
import { systemAccess } from '../../src/fhir/access.ts';
import { noAudit } from '../../src/fhir/audit-sink.ts';
import type { FhirContext } from '../../src/fhir/interactions.ts';
import { createValidator } from '../../src/fhir/profiles.ts';
import type { ResourceValidator } from '../../src/fhir/validation.ts';
import { createLogger, type Logger } from '../../src/logger.ts';

export const BASE_URL = 'http://baton.test/fhir';

/** An id as Baton assigns them (src/db/ids.ts): a UUIDv7, version 7 and the RFC 9562 variant. */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export interface TestBaton {
  app: ReturnType<typeof createApp>;
  db: Database;
  validator: ResourceValidator;
  ctx: FhirContext;
  /** The database URL when running on PostgreSQL (a database of this test file's own). */
  databaseUrl: string | undefined;
  /**
   * Calls the app. Unless the headers carry an Authorization or `token` says otherwise, the call
   * bears a token of an internal client holding system/*.* (so REST tests exercise the REST
   * API, and authorization tests choose their caller); `token: null` sends none.
   */
  request(path: string, init?: RequestInit & { json?: unknown; token?: string | null }): Promise<Response>;
  /** Seals the AuditEvents recorded so far (the server's background sealer does it every ~250 ms): chained, checkpointed and searchable. */
  sealAudit(): Promise<{ sealed: number }>;
  /** An access token signed with this Baton's key, as its token endpoint would issue it. */
  token(subject?: Partial<AccessTokenSubject>): Promise<string>;
  close(): Promise<void>;
}

/** Checkpoints as configured by default, with a key generated in the database. */
const TEST_AUDIT = { key: undefined, checkpointEvery: 1000, checkpointSeconds: 60 };

/** The harness's own caller: an internal system with every REST permission. */
const HARNESS_CLIENT: AccessTokenSubject = { clientId: 'test-harness', kind: 'internal', scopes: ['system/*.*'], organization: [{ system: 'urn:baton:test', value: 'harness' }] };

/**
 * A Baton app on a database of its own: in-memory PGlite, or, when DATABASE_URL is set (CI's
 * PostgreSQL run), a freshly created database so runs never see each other's data.
 */
export async function startBaton(options: { profilePackages?: string[]; logger?: Logger; config?: Partial<AppDeps['config']> } = {}): Promise<TestBaton> {
  const { db, databaseUrl, drop } = await migratedDatabase();
  const logger = options.logger ?? createLogger('silent');
  const validator = await createValidator(options.profilePackages ?? [], logger);
  const app = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 16 * 1024 * 1024, ...options.config }, db, logger, validator });
  const token = tokenMinter(db, BASE_URL);
  let harnessToken: { value: string; minted: number } | undefined;
  // Re-minted before the five-minute lifetime runs out, for long test files.
  const defaultToken = async () => {
    if (!harnessToken || Date.now() - harnessToken.minted > 120_000) harnessToken = { value: await token(), minted: Date.now() };
    return harnessToken.value;
  };
  return {
    app,
    db,
    validator,
    databaseUrl,
    ctx: { db, q: db, inTransaction: false, baseUrl: BASE_URL, validator, access: systemAccess, audit: noAudit },
    request: async (path, init = {}) => {
      const { json, token: bearer, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (json !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/fhir+json');
      if (!headers.has('authorization') && bearer !== null) headers.set('authorization', `Bearer ${bearer ?? (await defaultToken())}`);
      return app.request(path, { ...rest, headers, body: json !== undefined ? JSON.stringify(json) : rest.body });
    },
    token,
    sealAudit: () => sealPending({ db, audit: TEST_AUDIT }),
    close: async () => {
      await db.close();
      await drop();
    },
  };
}

/** Mints access tokens as this database's Baton would issue them (its signing key, its base URL); the harness client by default. */
export function tokenMinter(db: Database, baseUrl: string): (subject?: Partial<AccessTokenSubject>) => Promise<string> {
  const keys = new SigningKeyStore(db);
  return async (subject = {}) => signAccessToken(await keys.get(), baseUrl, { ...HARNESS_CLIENT, ...subject });
}

/**
 * A migrated database of the caller's own, copied from the one the run's global setup migrated
 * (test/support/global-setup.ts): in memory on PGlite, a new database on PostgreSQL.
 */
export async function migratedDatabase(maxConnections = 10): Promise<NewDatabase & { db: Database }> {
  const { databaseUrl, drop } = await newDatabase(inject('postgresTemplate'));
  const snapshot = databaseUrl ? undefined : inject('pgliteSnapshot');
  const db = await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections, ...(snapshot ? { loadDataDir: await openAsBlob(snapshot) } : {}) });
  await migrateDatabase(db);
  return { db, databaseUrl, drop };
}

interface NewDatabase {
  databaseUrl: string | undefined;
  drop: () => Promise<void>;
}

/** An empty database of the caller's own on PostgreSQL; none on PGlite, where each connection to 'memory://' is a new database. */
export function freshDatabase(): Promise<NewDatabase> {
  return newDatabase(undefined);
}

async function newDatabase(template: string | undefined): Promise<NewDatabase> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) return { databaseUrl: undefined, drop: async () => undefined };
  // .ci/run drops the baton_test_<time>_<random> databases older than an hour (left by killed runs), reading the time back.
  const name = `baton_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}` : ''}`);
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
