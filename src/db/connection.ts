import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import type { SQL } from 'drizzle-orm';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { PgDialect } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';

/** Something SQL can run on: the database itself or an open transaction. */
export interface Queryable {
  execute<T = Record<string, unknown>>(query: SQL): Promise<T[]>;
  /**
   * Rows as arrays of their columns' text as the database sent it (UTF-8 bytes; null for NULL),
   * not decoded into strings: for text that is only passed on, such as export files. A string
   * per row would live on the V8 heap until collected; these bytes stay outside it. The
   * statement is planned for its values each time (not prepared).
   */
  executeBytes(query: SQL): Promise<(Buffer | null)[][]>;
}

export interface Database extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /**
   * Runs fn in one database transaction; everything fn executes through `tx` commits or rolls
   * back together. If a statement fails, the transaction fails with the first failure, also when
   * fn did not wait for that statement or caught its error.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Calls onNotify at every NOTIFY on `channel` (from any process, once the notifying
   * transaction commits) until the returned function is called. Notifications only wake
   * listeners up: they can be lost while a connection is re-established, so listeners poll too.
   */
  listen(channel: string, onNotify: () => void): Promise<() => Promise<void>>;
  /** The drizzle handle, for the migrator. */
  readonly drizzle: DrizzleHandle;
  close(): Promise<void>;
}

type DrizzleHandle = ReturnType<typeof drizzlePglite> | ReturnType<typeof drizzlePostgres>;

interface DrizzleLike {
  execute(query: SQL): Promise<unknown>;
}

/** postgres.js answers an array of rows, PGlite a result object: one shape for callers. */
function queryable(handle: DrizzleLike): Queryable {
  const execute = async <T>(query: SQL): Promise<T[]> => {
    const result = (await handle.execute(query)) as T[] | { rows: T[] };
    return Array.isArray(result) ? result : result.rows;
  };
  return {
    execute,
    // PGlite hands over decoded values only: encoded again, for the same shape.
    async executeBytes(query: SQL): Promise<(Buffer | null)[][]> {
      const rows = await execute<Record<string, unknown>>(query);
      return rows.map((row) => Object.values(row).map((value) => (value === null ? null : Buffer.from(String(value)))));
    },
  };
}

const dialect = new PgDialect();

/**
 * On PostgreSQL, statements go to postgres.js directly as prepared statements: drizzle's
 * postgres-js session sends every query unprepared, which halves read throughput (measured:
 * 6.0k vs 11.7k queries/s at 32 concurrent). Statement shapes are few (values are always bound
 * parameters, bulk writes bind arrays), so the per-connection statement cache stays small.
 */
function preparedQueryable(client: postgres.Sql | postgres.TransactionSql): Queryable {
  return {
    async execute<T>(query: SQL): Promise<T[]> {
      const { sql: text, params } = dialect.sqlToQuery(query);
      return (await client.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true })) as unknown as T[];
    },
    // Not prepared: each statement is planned for its values (export pages, where a generic plan
    // took the rows written since transactionTime for a third of the type and rescanned them for
    // every recorded item: 400 ms per page instead of 20). Pages are large, so planning is cheap.
    async executeBytes(query: SQL): Promise<(Buffer | null)[][]> {
      const { sql: text, params } = dialect.sqlToQuery(query);
      return (await client.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: false }).raw()) as unknown as (Buffer | null)[][];
    },
  };
}

/**
 * The statements of a PGlite transaction, watched for the first that fails. Statements can be
 * sent without waiting for each other (a transaction Bundle's chunks); once one fails, every
 * later one fails with 25P02 (transaction aborted), and the error worth reporting is the first
 * (a unique violation is a 409, an abort a 500). postgres.js's begin() does the same itself.
 */
class FailureWatch implements Queryable {
  private first: unknown;

  constructor(private readonly q: Queryable) {}

  execute<R>(query: SQL): Promise<R[]> {
    return this.observe(this.q.execute<R>(query));
  }

  executeBytes(query: SQL): Promise<(Buffer | null)[][]> {
    return this.observe(this.q.executeBytes(query));
  }

  private observe<R>(statement: Promise<R>): Promise<R> {
    statement.catch((error: unknown) => {
      this.first ??= error;
    });
    return statement;
  }

  /** What a failed transaction throws: the first failure when `error` only reports the abort. */
  cause(error: unknown): unknown {
    return this.first !== undefined && sqlState(error) === '25P02' ? this.first : error;
  }
}

/** The SQLSTATE of a database error: postgres.js's own, or the cause of drizzle's wrapper (PGlite). */
export function sqlState(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string') return e.code;
  }
  return undefined;
}

export interface ConnectOptions {
  databaseUrl: string | undefined;
  /** Where PGlite keeps its files; 'memory://' for a throwaway database. */
  dataDir: string;
  maxConnections?: number;
  /** PGlite only: a dump of a data directory (PGlite's dumpDataDir) to start from instead of an empty one. */
  loadDataDir?: Blob;
}

export async function connectDatabase(options: ConnectOptions): Promise<Database> {
  if (options.databaseUrl) {
    const client = postgres(options.databaseUrl, {
      max: options.maxConnections ?? 20,
      onnotice: () => undefined,
      // Timestamps stay ISO strings end to end; numerics stay exact strings.
      types: { date: { to: 1184, from: [1082, 1114, 1184], serialize: (x: string) => x, parse: (x: string) => x } },
    });
    const db = drizzlePostgres(client);
    return {
      kind: 'postgres',
      drizzle: db,
      ...preparedQueryable(client),
      transaction: <T>(fn: (tx: Queryable) => Promise<T>) => client.begin((tx) => fn(preparedQueryable(tx))) as Promise<T>,
      listen: async (channel, onNotify) => {
        const { unlisten } = await client.listen(channel, () => onNotify());
        return unlisten;
      },
      close: () => client.end({ timeout: 5 }),
    };
  }
  if (!options.dataDir.startsWith('memory://')) mkdirSync(options.dataDir, { recursive: true });
  const client = await PGlite.create({ dataDir: options.dataDir, ...(options.loadDataDir ? { loadDataDir: options.loadDataDir } : {}) });
  const db = drizzlePglite(client);
  return {
    kind: 'pglite',
    drizzle: db,
    ...queryable(db),
    transaction: async (fn) => {
      let watch: FailureWatch | undefined;
      try {
        return await db.transaction(async (tx) => {
          watch = new FailureWatch(queryable(tx));
          return fn(watch);
        });
      } catch (error) {
        throw watch ? watch.cause(error) : error;
      }
    },
    listen: (channel, onNotify) => client.listen(channel, () => onNotify()),
    close: () => client.close(),
  };
}
