import { randomUUID } from 'node:crypto';
import type { Consent, Coverage, Identifier, Patient, Resource } from '@medplum/fhirtypes';
import canonicalize from 'canonicalize';
import { sql } from 'drizzle-orm';
import type { Queryable } from '../../db/connection.ts';
import { createGrant } from '../../auth/grants.ts';
import { type AccessPolicy, systemAccess } from '../../fhir/access.ts';
import * as interactions from '../../fhir/interactions.ts';
import { type StoredResource, WriteBuffer } from '../../fhir/store.ts';
import type { ResourceValidator } from '../../fhir/validation.ts';

/**
 * What a match does at this payer (HRex $member-match): link CoverageToLink to the member, store
 * the Consent (period, policy, requesting payer) and grant the requesting partner access to the
 * member for the consent's period, re-checked at every access (src/auth/access-policy.ts). The
 * same steps serve an automatic match and an operator's approval of a reviewed one.
 */
export interface MatchLink {
  patientId: string;
  /** The partner client that asked. */
  clientId: string;
  /** `Patient/<MemberPatient.id>` of the request: references to it now mean the member. */
  requestPatientReference: string;
  coverageToLink?: Coverage;
  consent?: Consent;
  /** What the consent lets the partner see; undefined when no consent came (the grant is then not created). */
  grant?: { start: string; end: string; excludedSecurity: string[] };
}

export const UMB_SYSTEM = 'urn:baton:unique-member-id';
const V2_0203 = 'http://terminology.hl7.org/CodeSystem/v2-0203';
const HREX_TEMP = 'http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp';

/**
 * Writes the link in the caller's transaction `q` (whose end must flush ctx.audit) and returns the
 * member's unique identifier. The caller's identity stays on the writes (audit and Provenance),
 * but the writes are Baton's: a partner may not write member data itself.
 */
export async function linkMatchedMember(ctx: interactions.FhirContext, q: Queryable, link: MatchLink): Promise<Identifier> {
  const access: AccessPolicy = { ...systemAccess, ...(ctx.access.caller ? { caller: ctx.access.caller } : {}) };
  // The link's versions (and their Provenance) are written together when it is done: two statements, not two per version.
  const buffer = new WriteBuffer(q);
  const writes: interactions.FhirContext = { ...ctx, q, inTransaction: true, writes: buffer, access, validator: validatedAlready(ctx.validator) };
  const member = `Patient/${link.patientId}`;
  const coverage = link.coverageToLink && rebased(link.coverageToLink, link.requestPatientReference, member);
  const consent = link.consent && rebased(link.consent, link.requestPatientReference, member);
  // What is stored already is read at once (one round trip), the member's Patient under a row
  // lock: a repeated request (a retry, a new answer after review) stores nothing twice.
  const [, storedCoverage, storedConsent] = await Promise.all([
    buffer.lock([{ resourceType: 'Patient', id: link.patientId }]),
    coverage && storedAlike(q, 'beneficiary', link.patientId, coverage),
    consent && storedAlike(q, 'patient', link.patientId, consent),
  ]);
  // Minting the identifier is Baton's own act, not the partner's: no Provenance names the partner for it.
  const identifier = await uniqueMemberIdentifier({ ...writes, access: systemAccess }, await buffer.current('Patient', link.patientId), link.patientId);
  if (coverage && !storedCoverage) await interactions.create(writes, 'Coverage', coverage);
  const consentReference = consent && `Consent/${storedConsent ?? (await interactions.create(writes, 'Consent', consent)).id}`;
  await buffer.flush();
  // A grant can only exist already for a Consent stored before.
  const repeated = !consent || storedConsent !== undefined;
  if (link.grant && !(repeated && (await grantExists(q, link, consentReference)))) {
    await createGrant(q, {
      clientId: link.clientId,
      patientId: link.patientId,
      validFrom: link.grant.start,
      validUntil: link.grant.end,
      ...(consentReference ? { consent: consentReference } : {}),
      excludedSecurity: link.grant.excludedSecurity,
    });
  }
  return identifier;
}

/**
 * The link writes nothing the validator has not passed: CoverageToLink and Consent were checked
 * as the request's input (rebasing changes one reference), the member's Patient was valid when
 * stored and gains an identifier of a fixed shape, and the Provenance Baton makes for them holds
 * no client content. Checking them again took a tenth of a match's CPU.
 */
function validatedAlready(validator: ResourceValidator): ResourceValidator {
  return { profiles: validator.profiles, validate: () => undefined };
}

/**
 * The member's unique member identifier (HRex MemberIdentifier: types MB and UMB). A member
 * keeps one for good: the one already on the Patient, else one minted now and written to the
 * Patient, so `Patient?identifier=<value>` finds the member.
 */
async function uniqueMemberIdentifier(ctx: interactions.FhirContext, stored: StoredResource | undefined, patientId: string): Promise<Identifier> {
  if (!stored || stored.deleted) throw new Error('linkMatchedMember: the matched member is not stored');
  const patient = JSON.parse(stored.json) as Patient;
  const existing = (patient.identifier ?? []).find((id) => id.system === UMB_SYSTEM && id.value);
  if (existing?.value) return memberIdentifier(existing.value);
  const value = randomUUID();
  await interactions.update(ctx, 'Patient', patientId, { ...patient, identifier: [...(patient.identifier ?? []), memberIdentifier(value)] });
  return memberIdentifier(value);
}

function memberIdentifier(value: string): Identifier {
  return {
    type: {
      coding: [
        { system: V2_0203, code: 'MB' },
        { system: HREX_TEMP, code: 'UMB' },
      ],
    },
    system: UMB_SYSTEM,
    value,
  };
}

/** A current resource of the member's with the same content (id and meta aside), found through its reference to the member. */
async function storedAlike(q: Queryable, code: string, patientId: string, resource: Resource): Promise<string | undefined> {
  const rows = await q.execute<{ id: string; content: string }>(sql`
    SELECT r.id, r.content FROM sp_reference cr JOIN resources r ON r.resource_type = cr.resource_type AND r.id = cr.resource_id AND NOT r.deleted
    WHERE cr.resource_type = ${resource.resourceType} AND cr.code = ${code} AND cr.target_type = 'Patient' AND cr.target_id = ${patientId}`);
  const wanted = canonicalize(resource);
  return rows.find((row) => {
    const { id: _id, meta: _meta, ...content } = JSON.parse(row.content) as Resource;
    return canonicalize(content) === wanted;
  })?.id;
}

async function grantExists(q: Queryable, link: MatchLink, consent: string | undefined): Promise<boolean> {
  const grant = link.grant as NonNullable<MatchLink['grant']>;
  const rows = await q.execute(sql`
    SELECT 1 FROM access_grants WHERE client_id = ${link.clientId} AND patient_id = ${link.patientId} AND consent IS NOT DISTINCT FROM ${consent ?? null}
      AND valid_from = ${grant.start}::timestamptz AND valid_until = ${grant.end}::timestamptz
      AND coalesce(excluded_security, '{}') = ${sql.param(grant.excludedSecurity)}::text[]`);
  return rows.length > 0;
}

/** The resource as stored here: a new id, and the request's Patient references pointing at the member. */
function rebased<T extends Resource>(resource: T, from: string, to: string): T {
  const { id: _id, meta: _meta, ...rest } = JSON.parse(JSON.stringify(resource, (key, value) => (key === 'reference' && value === from ? to : value))) as T;
  return rest as T;
}
