import { resolve } from 'node:path';

/** Typed configuration, read from the environment once at start (STYLE: nothing else reads process.env). */
export interface Config {
  port: number;
  host: string;
  baseUrl: string;
  /** postgres://… ; undefined means the embedded PGlite database under dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  seed: 'demo' | 'none';
  logLevel: string;
  payer: { name: string; identifiers: { system: string; value: string }[] };
  /** FHIR NPM packages (folders or .tgz) whose StructureDefinitions are loaded as profiles. */
  profilePackages: string[];
  /** Largest request body accepted, in bytes. */
  maxBodyBytes: number;
  /** Bearer token of the client-registration admin API; undefined keeps that API closed. */
  adminToken: string | undefined;
  /** The SMART scopes an operator holds on /fhir when presenting the admin token. */
  adminScopes: string[];
}

export class ConfigError extends Error {}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const port = integer(env.PORT ?? '8080', 'PORT', 0, 65535);
  const host = env.HOST ?? '127.0.0.1';
  const baseUrl = (env.BATON_BASE_URL ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}/fhir`).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(baseUrl)) throw new ConfigError('BATON_BASE_URL must be an absolute http(s) URL');
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) throw new ConfigError('DATABASE_URL must be a postgres:// URL');
  const seed = env.BATON_SEED ?? 'demo';
  if (seed !== 'demo' && seed !== 'none') throw new ConfigError('BATON_SEED must be "demo" or "none"');
  const logLevel = env.LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  return {
    port,
    host,
    baseUrl,
    databaseUrl,
    dataDir: resolve(env.BATON_DATA_DIR ?? './data'),
    seed,
    logLevel,
    payer: {
      name: env.BATON_PAYER_NAME ?? 'Baton Health Plan',
      identifiers: parseIdentifiers(env.BATON_PAYER_IDENTIFIER ?? 'http://hl7.org/fhir/sid/us-npi|1234567893'),
    },
    profilePackages: (env.BATON_PROFILE_PACKAGES ?? '').split(',').map((s) => s.trim()).filter(Boolean).map((p) => resolve(p)),
    maxBodyBytes: integer(env.BATON_MAX_BODY_BYTES ?? String(16 * 1024 * 1024), 'BATON_MAX_BODY_BYTES', 1024, 1024 ** 3),
    adminToken: env.BATON_ADMIN_TOKEN || undefined,
    adminScopes: parseScopes(env.BATON_ADMIN_SCOPE ?? 'system/*.rs'),
  };
}

function integer(text: string, name: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

function parseScopes(text: string): string[] {
  const scopes = text.split(/\s+/).filter(Boolean);
  if (scopes.length === 0 || !scopes.every((s) => /^(system\/\S+|https?:\/\/\S+)$/.test(s))) {
    throw new ConfigError('BATON_ADMIN_SCOPE must be space-separated SMART system scopes (system/*.rs) or operation URLs');
  }
  return scopes;
}

function parseIdentifiers(text: string): { system: string; value: string }[] {
  return text.split(',').map((pair) => {
    const bar = pair.indexOf('|');
    const system = pair.slice(0, bar).trim();
    const value = pair.slice(bar + 1).trim();
    if (bar < 1 || !value) throw new ConfigError('BATON_PAYER_IDENTIFIER must be system|value pairs separated by commas');
    return { system, value };
  });
}
