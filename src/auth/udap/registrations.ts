import { sql } from 'drizzle-orm';
import type { Queryable } from '../../db/connection.ts';

/** A client registered through UDAP: who it is (san) within which trust community. */
export interface UdapRegistration {
  clientId: string;
  /** The client URI (subjectAltName URI of its certificate). */
  san: string;
  /** SHA-256 fingerprint of the trust anchor its certificate chains to. */
  community: string;
}

export async function findUdapRegistration(db: Queryable, clientId: string): Promise<UdapRegistration | undefined> {
  const rows = await db.execute<UdapRegistration>(sql`
    SELECT client_id AS "clientId", san, community FROM auth_udap_registrations WHERE client_id = ${clientId}`);
  return rows[0];
}

/** The registration of this application in this community, locked until the transaction ends (so re-registrations queue). */
export async function lockUdapRegistration(tx: Queryable, san: string, community: string): Promise<UdapRegistration | undefined> {
  const rows = await tx.execute<UdapRegistration>(sql`
    SELECT client_id AS "clientId", san, community FROM auth_udap_registrations WHERE san = ${san} AND community = ${community} FOR UPDATE`);
  return rows[0];
}

/** Records (or replaces) the software statement a client is registered by. */
export async function saveUdapRegistration(db: Queryable, registration: UdapRegistration, softwareStatement: string): Promise<void> {
  await db.execute(sql`
    INSERT INTO auth_udap_registrations (client_id, san, community, software_statement)
    VALUES (${registration.clientId}, ${registration.san}, ${registration.community}, ${softwareStatement})
    ON CONFLICT (client_id) DO UPDATE SET software_statement = EXCLUDED.software_statement, updated = now()`);
}
