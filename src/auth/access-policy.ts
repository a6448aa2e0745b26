import { type SQL, sql } from 'drizzle-orm';
import type { AccessPolicy, Permission } from '../fhir/access.ts';
import { compartmentReferenceCodes, patientCompartmentParams } from '../fhir/compartment.ts';
import { FhirError, outcome } from '../fhir/errors.ts';
import { parseSearchRequest } from '../fhir/search/parse.ts';
import { SearchSql } from '../fhir/search/sql.ts';
import type { ClientKind } from './client-registration.ts';
import { parseResourceScope } from './scopes.ts';

/** Who is calling: a registered client (by its access token) or an operator (by the admin credential). */
export interface Principal {
  clientId: string;
  kind: ClientKind | 'operator';
  scopes: readonly string[];
  /** The x5t#S256 a certificate-bound access token names (RFC 8705); every request must come over that certificate. */
  certificateThumbprint?: string;
  /** The access token's jti, which the audit trail records (BALP OAUTHaccessTokenUse). */
  tokenId?: string;
  /** The client's Organization identifiers, for Provenance. */
  organization?: readonly { system: string; value: string }[];
}

interface ParsedScope {
  type: string;
  letters: Set<string>;
  /** The v2 `?param=value` constraint, as search parameters; undefined when unconstrained. */
  constraint: URLSearchParams | undefined;
}

/**
 * The AccessPolicy of a caller: SMART scopes decide which interactions it may perform, and a
 * partner payer additionally sees only the members it holds an active grant for (per-partner
 * isolation): the granted Patients and the resources in their Patient compartments. Resource
 * types outside the Patient compartment (Organization, Practitioner, Location, …) are directory
 * data, governed by scopes alone. A partner never writes member data through the REST API;
 * it reaches members only through operations such as $member-match.
 */
export class ScopedAccess implements AccessPolicy {
  readonly principal: Principal;
  private readonly scopes: ParsedScope[];
  private readonly operations: Set<string>;
  private readonly sqlBuilder: SearchSql;

  constructor(principal: Principal, baseUrl: string) {
    this.principal = principal;
    this.sqlBuilder = new SearchSql({ baseUrl });
    this.scopes = [];
    this.operations = new Set();
    for (const scope of principal.scopes) {
      const parsed = parseResourceScope(scope);
      if (parsed) this.scopes.push({ type: parsed.type, letters: parsed.letters, constraint: parsed.query ? new URLSearchParams(parsed.query.slice(1)) : undefined });
      else this.operations.add(scope);
    }
  }

  get caller(): AccessPolicy['caller'] {
    const { clientId, kind, tokenId, organization } = this.principal;
    return { clientId, kind, ...(tokenId ? { tokenId } : {}), ...(organization ? { organization } : {}) };
  }

  get isolated(): boolean {
    return this.principal.kind === 'partner';
  }

  authorize(permission: Permission, resourceType: string): void {
    const granting = this.granting(permission, resourceType);
    // A constrained scope narrows what is read or searched; it never grants a write, since
    // whether new content satisfies the constraint is not known before it is stored.
    const permits = permission === 'r' || permission === 's' ? granting.length > 0 : granting.some((s) => !s.constraint);
    if (!permits) throw forbidden(`The access token's scopes do not permit ${PERMISSION_NAMES[permission]} on ${resourceType === '*' ? 'all resource types' : resourceType}`);
    if (this.isolated && permission !== 'r' && permission !== 's' && isMemberData(resourceType)) {
      throw forbidden(`A partner payer cannot ${PERMISSION_NAMES[permission]} ${resourceType} resources: member data is reached through $member-match`);
    }
  }

  authorizeOperation(canonical: string): void {
    if (!this.operations.has(canonical)) throw forbidden(`The access token's scopes do not include the operation scope ${canonical}`);
  }

  mayRead(resourceType: string): boolean {
    return this.granting('r', resourceType).length > 0;
  }

  get filtersRows(): boolean {
    return this.isolated || this.scopes.some((s) => s.constraint);
  }

  visibility(resourceType: string, alias: SQL, permission: 'r' | 's'): SQL | undefined {
    const conditions: SQL[] = [];
    const granting = this.granting(permission, resourceType);
    if (!granting.some((s) => !s.constraint)) {
      const allowed = granting.flatMap((s) => this.constraintSql(resourceType, s.constraint as URLSearchParams, alias));
      conditions.push(allowed.length > 0 ? sql`(${sql.join(allowed, sql` OR `)})` : sql`FALSE`);
    }
    if (this.isolated) {
      const member = this.memberCondition(resourceType, alias);
      if (member) conditions.push(member);
    }
    return conditions.length > 0 ? sql.join(conditions, sql` AND `) : undefined;
  }

  /**
   * The scopes granting `permission` on the type. The audit trail is for auditors: only a scope
   * naming AuditEvent reaches it (system/AuditEvent.rs), not `system/*`, except for operators.
   */
  private granting(permission: Permission, resourceType: string): ParsedScope[] {
    const wildcardCovers = resourceType !== 'AuditEvent' || this.principal.kind === 'operator';
    return this.scopes.filter((s) => ((s.type === '*' && wildcardCovers) || s.type === resourceType) && s.letters.has(permission));
  }

  /** The resources a v2 constraint such as `category=laboratory` admits; a constraint that is not a valid search admits none. */
  private constraintSql(resourceType: string, constraint: URLSearchParams, alias: SQL): SQL[] {
    if (resourceType === '*') return [];
    try {
      const request = parseSearchRequest(resourceType, constraint, { strict: true, baseUrl: undefined });
      return [sql`${alias}.id IN (SELECT r.id FROM resources r WHERE ${this.sqlBuilder.where(request)})`];
    } catch {
      return [];
    }
  }

  /**
   * The granted members themselves, or resources in a granted member's Patient compartment that
   * one of the member's grants reaches. The Patient is never withheld by label: the partner
   * already holds the member's demographics, and a grant without its member would be useless.
   */
  private memberCondition(resourceType: string, alias: SQL): SQL | undefined {
    const client = this.principal.clientId;
    const active = sql`g.valid_from <= now() AND (g.valid_until IS NULL OR g.valid_until > now())`;
    if (resourceType === 'Patient') {
      return sql`${alias}.id IN (SELECT g.patient_id FROM access_grants g WHERE g.client_id = ${client} AND ${active})`;
    }
    const params = compartmentReferenceCodes(resourceType);
    if (!params) return undefined;
    const cr = sql.raw('cr');
    // A grant from an HRex #regular consent does not reach data carrying one of its excluded
    // security labels (meta.security, indexed as _security). The member's grants are OR-ed: a
    // #sensitive grant for the same member (nothing excluded) shows what a #regular one hides.
    // The label lookup runs only for grants with exclusions, on sp_token's (type, id, code) index.
    const reaches = sql`(g.excluded_security IS NULL OR NOT EXISTS (SELECT 1 FROM sp_token sl
      WHERE sl.resource_type = ${resourceType} AND sl.resource_id = ${cr}.resource_id AND sl.code = '_security'
        AND sl.system || '|' || sl.value = ANY (g.excluded_security)))`;
    const inGrantedCompartment = sql`${alias}.id IN (SELECT ${cr}.resource_id FROM sp_reference ${cr} JOIN access_grants g ON g.patient_id = ${cr}.target_id
      WHERE ${cr}.resource_type = ${resourceType} AND ${cr}.code IN ${params} AND ${cr}.target_type = 'Patient' AND ${this.sqlBuilder.local(cr)}
        AND g.client_id = ${client} AND ${active} AND ${reaches})`;
    if (resourceType !== 'Group') return inGrantedCompartment;
    // A Group made for one partner ($bulk-member-match result Groups, tagged with its client id)
    // is that partner's alone, even with no local member (its unmatched members are contained
    // copies of what the partner sent); any other Group is seen through its granted members.
    const gt = sql.raw('gt');
    const tagged = (which: SQL) => sql`${alias}.id IN (SELECT ${gt}.resource_id FROM sp_token ${gt}
      WHERE ${gt}.resource_type = 'Group' AND ${gt}.code = '_tag' AND ${gt}.system = ${REQUESTING_CLIENT_TAG}${which})`;
    const reachable = sql`(${tagged(sql` AND ${gt}.value = ${client}`)} OR (${inGrantedCompartment} AND NOT ${tagged(sql``)}))`;
    // A Group lists members: it is shown only when every member in it is granted, or it would name the others.
    const gm = sql.raw('gm');
    return sql`${reachable} AND NOT EXISTS (SELECT 1 FROM sp_reference ${gm}
      WHERE ${gm}.resource_type = 'Group' AND ${gm}.resource_id = ${alias}.id AND ${gm}.code = 'member' AND ${gm}.target_type = 'Patient'
        AND ${gm}.target_id NOT IN (SELECT g.patient_id FROM access_grants g WHERE g.client_id = ${client} AND ${active}))`;
  }
}

/**
 * meta.tag system naming, by client id, the partner a Group was made for (the requester of a
 * $bulk-member-match). Only Baton writes such Groups: a partner never writes Group (member data).
 */
export const REQUESTING_CLIENT_TAG = 'urn:baton:requesting-client';

const PERMISSION_NAMES: Record<Permission, string> = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' };

/** Patients and the types of the Patient compartment: the data a member's consent governs. */
function isMemberData(resourceType: string): boolean {
  return resourceType === '*' || resourceType === 'Patient' || patientCompartmentParams(resourceType) !== undefined;
}

function forbidden(diagnostics: string): FhirError {
  return new FhirError(403, outcome('error', 'forbidden', diagnostics));
}
