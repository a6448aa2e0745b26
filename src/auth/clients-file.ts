import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import { type ClientRegistration, parseRegistration } from './client-registration.ts';
import { findClientIdsByName, upsertClient } from './clients.ts';

/** BATON_CLIENTS_FILE cannot be read or holds a bad entry: a configuration error, the start stops. */
export class ClientsFileError extends Error {}

export interface FileEntry {
  /** The entry's stable client_id; without one the entry is matched by name and kind. */
  clientId: string | undefined;
  registration: ClientRegistration;
}

export interface ClientsFileResult {
  created: number;
  updated: number;
  unchanged: number;
}

/** client_ids travel in URL paths (DELETE /admin/clients/{id}) and as the assertions' iss. */
const CLIENT_ID = /^[A-Za-z0-9._~-]{1,128}$/;

/**
 * Parses a registrations file: a JSON array of admin-API bodies (`{name, kind, organization,
 * jwks | jwks_uri, scope}`), each with an optional `client_id`. Every entry is checked before any
 * is registered; a problem names the entry.
 */
export function parseClientsFile(text: string): FileEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ClientsFileError(`not JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(value)) throw new ClientsFileError('must be a JSON array of client registrations');
  const entries: FileEntry[] = [];
  const seen = new Set<string>();
  for (const [index, body] of value.entries()) {
    const label = entryLabel(index, body);
    const parsed = parseRegistration(body);
    const clientId = (body as { client_id?: unknown } | null)?.client_id;
    const problems = 'problems' in parsed ? [...parsed.problems] : [];
    if (clientId !== undefined && !(typeof clientId === 'string' && CLIENT_ID.test(clientId))) {
      problems.push('client_id must be 1 to 128 letters, digits or . _ ~ -');
    }
    if (problems.length > 0) throw new ClientsFileError(`${label}: ${problems.join('; ')}`);
    const { registration } = parsed as { registration: ClientRegistration };
    const identity = typeof clientId === 'string' ? `client_id ${clientId}` : `name "${registration.name}" and kind ${registration.kind} without a client_id`;
    if (seen.has(identity)) throw new ClientsFileError(`${label}: another entry has the same ${identity}`);
    seen.add(identity);
    entries.push({ clientId: clientId as string | undefined, registration });
  }
  return entries;
}

/**
 * Registers the file's clients (BATON_CLIENTS_FILE), idempotently: an entry with a client_id is
 * upserted under it, one without is matched to the client of the same name and kind. All entries
 * commit together, under a lock so that processes starting together do not register one twice.
 */
export async function loadClientsFile(
  db: Database,
  path: string,
  /** Called in the registering transaction for each client created or changed (the audit trail records it there). */
  onChange: (tx: Queryable, clientId: string, change: 'created' | 'updated') => Promise<void> = async () => undefined,
): Promise<ClientsFileResult> {
  const prefix = `BATON_CLIENTS_FILE ${path}`;
  const text = await readFile(path, 'utf8').catch((error: unknown) => {
    throw new ClientsFileError(`${prefix} cannot be read (${(error as { code?: string }).code ?? 'error'})`);
  });
  let entries: FileEntry[];
  try {
    entries = parseClientsFile(text);
  } catch (error) {
    throw error instanceof ClientsFileError ? new ClientsFileError(`${prefix}: ${error.message}`) : error;
  }
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('baton.clients_file'))`);
    const result: ClientsFileResult = { created: 0, updated: 0, unchanged: 0 };
    for (const [index, entry] of entries.entries()) {
      const clientId = entry.clientId ?? (await clientIdByName(tx, entry.registration, `${prefix}: ${entryLabel(index, entry.registration)}`));
      const change = await upsertClient(tx, clientId, entry.registration);
      result[change] += 1;
      if (change !== 'unchanged') await onChange(tx, clientId, change);
    }
    return result;
  });
}

/** The id of the one client with the entry's name and kind, or a new id when there is none. */
async function clientIdByName(db: Queryable, registration: ClientRegistration, label: string): Promise<string> {
  const ids = await findClientIdsByName(db, registration.name, registration.kind);
  if (ids.length > 1) {
    throw new ClientsFileError(`${label}: ${ids.length} ${registration.kind} clients are registered under this name; give the entry the client_id of the one it describes`);
  }
  return ids[0] ?? randomUUID();
}

function entryLabel(index: number, body: unknown): string {
  const name = (body as { name?: unknown } | null)?.name;
  return typeof name === 'string' && name.trim() ? `entry [${index}] "${name.trim()}"` : `entry [${index}]`;
}
