import { randomUUID } from 'node:crypto';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';
import type { ClientKind, ClientRegistration, Identifier } from './client-registration.ts';

/** A registered client as the admin API shows it (snake_case, the OAuth names). */
export interface RegisteredClient {
  client_id: string;
  name: string;
  kind: ClientKind;
  organization: { identifier: Identifier[] };
  jwks?: { keys: Record<string, unknown>[] };
  jwks_uri?: string;
  scope: string;
  created: string;
  disabled: boolean;
}

interface ClientRow {
  client_id: string;
  name: string;
  kind: ClientKind;
  organization_identifiers: Identifier[] | string;
  jwks: { keys: Record<string, unknown>[] } | string | null;
  jwks_uri: string | null;
  scope: string;
  created: string | Date;
  disabled: boolean;
}

const COLUMNS = sql`client_id, name, kind, organization_identifiers, jwks, jwks_uri, scope, created, disabled`;

export async function createClient(db: Queryable, registration: ClientRegistration): Promise<RegisteredClient> {
  const rows = await db.execute<ClientRow>(sql`INSERT INTO auth_clients ${registrationValues(randomUUID(), registration)} RETURNING ${COLUMNS}`);
  return toClient(rows[0]);
}

/**
 * Registers the client under a chosen client_id, or replaces the registration already under it
 * (keeping its created time and disabled flag) when it differs. Registration files name their
 * clients' ids so that a restart changes nothing.
 */
export async function upsertClient(db: Queryable, clientId: string, registration: ClientRegistration): Promise<'created' | 'updated' | 'unchanged'> {
  const rows = await db.execute<{ inserted: boolean }>(sql`
    INSERT INTO auth_clients AS c ${registrationValues(clientId, registration)}
    ON CONFLICT (client_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, organization_identifiers = EXCLUDED.organization_identifiers,
      jwks = EXCLUDED.jwks, jwks_uri = EXCLUDED.jwks_uri, scope = EXCLUDED.scope
    WHERE (c.name, c.kind, c.organization_identifiers, c.jwks, c.jwks_uri, c.scope)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.kind, EXCLUDED.organization_identifiers, EXCLUDED.jwks, EXCLUDED.jwks_uri, EXCLUDED.scope)
    RETURNING (xmax = 0) AS inserted`);
  // PostgreSQL: xmax is 0 on a freshly inserted row version, the updating transaction's id on an updated one.
  if (rows.length === 0) return 'unchanged';
  return rows[0].inserted ? 'created' : 'updated';
}

/** The ids of the clients registered under this name and kind, oldest first. */
export async function findClientIdsByName(db: Queryable, name: string, kind: ClientKind): Promise<string[]> {
  const rows = await db.execute<{ client_id: string }>(sql`SELECT client_id FROM auth_clients WHERE name = ${name} AND kind = ${kind} ORDER BY created, client_id`);
  return rows.map((row) => row.client_id);
}

export async function listClients(db: Queryable): Promise<RegisteredClient[]> {
  const rows = await db.execute<ClientRow>(sql`SELECT ${COLUMNS} FROM auth_clients ORDER BY created, client_id`);
  return rows.map(toClient);
}

/** The client, if registered and not disabled. */
export async function findActiveClient(db: Queryable, clientId: string): Promise<RegisteredClient | undefined> {
  const rows = await db.execute<ClientRow>(sql`SELECT ${COLUMNS} FROM auth_clients WHERE client_id = ${clientId} AND NOT disabled`);
  return rows[0] && toClient(rows[0]);
}

/** Whether a client was deleted. Its jti rows go too: a re-registered id starts afresh. */
export async function deleteClient(db: Queryable, clientId: string): Promise<boolean> {
  const rows = await db.execute<{ client_id: string }>(sql`DELETE FROM auth_clients WHERE client_id = ${clientId} RETURNING client_id`);
  await db.execute(sql`DELETE FROM auth_assertion_jtis WHERE client_id = ${clientId}`);
  return rows.length > 0;
}

/**
 * RFC 7523 §3 (7): records a client assertion's jti; false when the client used it before.
 * The client's expired rows are dropped on the way: an expired assertion is rejected anyway.
 */
export async function recordAssertionJti(db: Queryable, clientId: string, jti: string, expiresEpochSeconds: number): Promise<boolean> {
  await db.execute(sql`DELETE FROM auth_assertion_jtis WHERE client_id = ${clientId} AND expires < now()`);
  const rows = await db.execute(sql`
    INSERT INTO auth_assertion_jtis (client_id, jti, expires)
    VALUES (${clientId}, ${jti}, to_timestamp(${expiresEpochSeconds}))
    ON CONFLICT (client_id, jti) DO NOTHING
    RETURNING jti`);
  return rows.length > 0;
}

function registrationValues(clientId: string, registration: ClientRegistration): SQL {
  return sql`(client_id, name, kind, organization_identifiers, jwks, jwks_uri, scope)
    VALUES (${clientId}, ${registration.name}, ${registration.kind}, ${JSON.stringify(registration.organizationIdentifiers)}::jsonb,
            ${registration.jwks ? JSON.stringify(registration.jwks) : null}::jsonb, ${registration.jwksUri ?? null}, ${registration.scopes.join(' ')})`;
}

/** jsonb arrives parsed from postgres.js and PGlite alike, except when bound as text; both shapes are accepted. */
function json<T>(value: T | string): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

function toClient(row: ClientRow): RegisteredClient {
  const jwks = row.jwks === null ? undefined : json(row.jwks);
  return {
    client_id: row.client_id,
    name: row.name,
    kind: row.kind,
    organization: { identifier: json(row.organization_identifiers) },
    ...(jwks ? { jwks } : {}),
    ...(row.jwks_uri ? { jwks_uri: row.jwks_uri } : {}),
    scope: row.scope,
    created: row.created instanceof Date ? row.created.toISOString() : new Date(row.created).toISOString(),
    disabled: row.disabled,
  };
}
