import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';

export interface NewGrant {
  clientId: string;
  patientId: string;
  /** ISO instants; validFrom defaults to now, validUntil to open-ended. */
  validFrom?: string;
  validUntil?: string;
  /** `Consent/<id>` the grant rests on. */
  consent?: string;
}

/**
 * Lets a partner client see one member (per-partner isolation, src/auth/access-policy.ts) for
 * the period given. $member-match creates these after a match with an acceptable consent.
 */
export async function createGrant(q: Queryable, grant: NewGrant): Promise<string> {
  const id = randomUUID();
  await q.execute(sql`
    INSERT INTO access_grants (id, client_id, patient_id, valid_from, valid_until, consent)
    VALUES (${id}, ${grant.clientId}, ${grant.patientId}, COALESCE(${grant.validFrom ?? null}::timestamptz, now()), ${grant.validUntil ?? null}::timestamptz, ${grant.consent ?? null})`);
  return id;
}
