import type postgres from 'postgres';

/**
 * The server settings that decide write and cache costs, as a report states them: figures from a
 * server with the 128 MB shared_buffers and 1 GB max_wal_size of a default install are not
 * comparable with those of one configured for production (README, "PostgreSQL settings").
 */
const NAMES = ['shared_buffers', 'effective_cache_size', 'max_wal_size', 'checkpoint_timeout', 'wal_compression', 'synchronous_commit', 'autovacuum', 'work_mem', 'random_page_cost'];

export async function postgresSettings(sql: postgres.Sql): Promise<Record<string, string>> {
  const rows = await sql<{ name: string; value: string }[]>`SELECT name, current_setting(name) AS value FROM pg_settings WHERE name IN ${sql(NAMES)} ORDER BY name`;
  return Object.fromEntries(rows.map((row) => [row.name, row.value]));
}
