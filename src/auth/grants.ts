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
  /**
   * `system|code` security labels of data the grant does not reach (a consent under HRex
   * `#regular` withholds sensitive data). Absent or empty: the grant reaches all of the member's data.
   */
  excludedSecurity?: readonly string[];
}

/**
 * Lets a partner client see one member (per-partner isolation, src/auth/access-policy.ts) for
 * the period given, less the data carrying an excluded security label. $member-match creates
 * these after a match with an acceptable consent.
 */
export async function createGrant(q: Queryable, grant: NewGrant): Promise<string> {
  const id = randomUUID();
  // Stored as NULL when nothing is excluded, so the access check's common case is one IS NULL test.
  const excluded = grant.excludedSecurity?.length ? sql.param([...grant.excludedSecurity]) : null;
  await q.execute(sql`
    INSERT INTO access_grants (id, client_id, patient_id, valid_from, valid_until, consent, excluded_security)
    VALUES (${id}, ${grant.clientId}, ${grant.patientId}, COALESCE(${grant.validFrom ?? null}::timestamptz, now()), ${grant.validUntil ?? null}::timestamptz, ${grant.consent ?? null}, ${excluded}::text[])`);
  return id;
}
