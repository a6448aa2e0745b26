import { type SQL, sql } from 'drizzle-orm';
import type { AccessPolicy } from '../fhir/access.ts';
import { patientCompartmentParams } from '../fhir/compartment.ts';
import { getResourceTypes } from '../fhir/definitions.ts';
import { searchParam } from '../fhir/search/parameters.ts';
import { parseSearchRequest } from '../fhir/search/parse.ts';
import { SearchSql } from '../fhir/search/sql.ts';
import type { AssociatedProvenance, ExportKind, TypeFilter } from './request.ts';

/**
 * Which resources an export holds, as SQL over a row of `resources`: the part of the export
 * that does not depend on time (the snapshot as of transactionTime is snapshot.ts's). The same
 * predicate is used when a job is planned and at every download, so a file's count is what its
 * download streams, unless a grant has expired in between (then the member's data is left out).
 *
 * - A system export holds every type; a Patient or Group export holds the Patient compartments
 *   (of the members when there are members: the Group's, or the `patient` parameter's) and the
 *   resources outside the compartment (Organization, Practitioner, Location, Medication, …)
 *   that those compartments reference. A partner's system export is its members' export: its
 *   grants decide the compartments, and directory data comes only as far as they reference it.
 * - `_typeFilter` searches narrow their type (several on one type are alternatives).
 * - The caller's access policy decides the rest (scopes, a partner's grants and their labels).
 * - Provenance goes with what it targets (Bulk Data includeAssociatedData).
 *
 * Membership is read from the search index, which follows current versions: a resource whose
 * compartment reference changed after transactionTime is selected by its current references,
 * and one deleted since has no index rows left, so only a system export (no compartment, no
 * filter, no partner) still holds it.
 */
export interface SelectionScope {
  kind: ExportKind;
  /** A subquery of the member Patient ids when the export is limited to members. */
  members?: SQL;
  /** A subquery of the ids of a type outside the compartment that the export's compartments reference (export_references). */
  references: (resourceType: string) => SQL;
  typeFilters: readonly TypeFilter[];
  associatedProvenance?: AssociatedProvenance;
  /** The exported types: the Provenance that goes with them targets these. */
  types: readonly string[];
}

export class ExportSelection {
  private readonly search: SearchSql;
  private aliases = 0;

  constructor(
    private readonly scope: SelectionScope,
    private readonly access: AccessPolicy & { readonly isolated: boolean },
    private readonly baseUrl: string,
  ) {
    this.search = new SearchSql({ baseUrl });
  }

  /** Whether non-compartment types are limited to what the exported compartments reference. */
  get referencedOnly(): boolean {
    return this.scope.kind !== 'system' || this.access.isolated;
  }

  /** The condition on `row` (a current `resources` row of the type) for being in the export. */
  includes(resourceType: string, row: SQL): SQL {
    const conditions = [...this.scoped(resourceType, row), ...this.filtered(resourceType, row)];
    const visible = this.access.visibility(resourceType, row, 's');
    if (visible) conditions.push(visible);
    return all(conditions);
  }

  /**
   * The ids of the non-compartment `types` that the export's compartment resources reference,
   * as (target_type, target_id) rows: run once when a job is resolved. With members (a Group's,
   * the `patient` parameter's, or a partner's granted members), it walks from the members to
   * their compartment resources and on to what those reference, so its cost follows the
   * members' data, not the database's size; without, it is one pass over the references.
   */
  referencedIds(types: readonly string[]): SQL {
    const ref = sql.raw('ref');
    const target = sql`${ref}.target_type IN ${types} AND ${ref}.target_id IS NOT NULL AND ${this.search.local(ref)}`;
    const members = this.scope.members ?? (this.access.isolated ? this.visiblePatients() : undefined);
    if (!members) {
      // Every compartment resource the caller may see (this caller sees them all, or through scope constraints).
      const src = sql.raw('src');
      const visibleSources = [...compartmentTypes(), 'Patient'].map((type) => {
        const visible = this.access.visibility(type, src, 's');
        return visible ? sql`(${ref}.resource_type = ${type} AND ${visible})` : sql`${ref}.resource_type = ${type}`;
      });
      const join = this.access.filtersRows ? sql` JOIN resources ${src} ON ${src}.resource_type = ${ref}.resource_type AND ${src}.id = ${ref}.resource_id` : sql``;
      return sql`SELECT DISTINCT ${ref}.target_type, ${ref}.target_id FROM sp_reference ${ref}${join} WHERE ${target} AND ${any(visibleSources)}`;
    }
    // What the caller may not see of the referencing resources (a partner's other members, data
    // its consent withholds) must not reveal, through what it references, who saw whom.
    const patient = this.alias('p');
    const visiblePatient = this.access.visibility('Patient', patient, 's');
    const patientJoin = visiblePatient ? sql` JOIN resources ${patient} ON ${patient}.resource_type = 'Patient' AND ${patient}.id = m.id AND ${visiblePatient}` : sql``;
    const sources = [sql`SELECT 'Patient' AS resource_type, m.id AS resource_id FROM (${members}) m(id)${patientJoin}`];
    for (const type of compartmentTypes()) {
      const cr = this.alias('cr');
      const src = this.alias('src');
      const visible = this.access.visibility(type, src, 's');
      const join = visible ? sql` JOIN resources ${src} ON ${src}.resource_type = ${cr}.resource_type AND ${src}.id = ${cr}.resource_id AND ${visible}` : sql``;
      sources.push(sql`SELECT ${cr}.resource_type, ${cr}.resource_id FROM sp_reference ${cr}${join}
        WHERE ${cr}.resource_type = ${type} AND ${cr}.code IN ${compartmentCodes(type)} AND ${cr}.target_type = 'Patient' AND ${this.search.local(cr)} AND ${cr}.target_id IN (${members})`);
    }
    return sql`SELECT DISTINCT ${ref}.target_type, ${ref}.target_id FROM (${sql.join(sources, sql` UNION `)}) s
      JOIN sp_reference ${ref} ON ${ref}.resource_type = s.resource_type AND ${ref}.resource_id = s.resource_id
      WHERE ${target}`;
  }

  /** The Patients the caller may see (a partner's granted members). */
  private visiblePatients(): SQL {
    const p = this.alias('p');
    const visible = this.access.visibility('Patient', p, 's');
    return sql`SELECT ${p}.id FROM resources ${p} WHERE ${p}.resource_type = 'Patient' AND NOT ${p}.deleted${visible ? sql` AND ${visible}` : sql``}`;
  }

  /** The export's scope: compartments, members, referenced resources, associated Provenance. */
  private scoped(resourceType: string, row: SQL): SQL[] {
    if (resourceType === 'Provenance' && this.scope.associatedProvenance) return [this.associated(row, this.scope.associatedProvenance === 'latest')];
    const outside = resourceType !== 'Patient' && !isCompartmentType(resourceType);
    if (this.scope.kind === 'system') return this.referencedOnly && outside ? [sql`${row}.id IN (${this.scope.references(resourceType)})`] : [];
    if (outside) return [sql`${row}.id IN (${this.scope.references(resourceType)})`];
    const compartment = this.inCompartment(resourceType, row);
    // Bulk Data 2.0 (includeAssociatedData): a patient-level export holds the Provenance of every
    // resource in the compartments, not only that whose target is the Patient itself.
    if (resourceType === 'Provenance') return [sql`(${compartment} OR ${this.associated(row, false)})`];
    return compartment === undefined ? [] : [compartment];
  }

  /** The row is in a member's Patient compartment (any Patient's, when the export has no members); undefined: no condition. */
  private inCompartment(resourceType: string, row: SQL): SQL | undefined {
    const { members } = this.scope;
    if (resourceType === 'Patient') return members ? sql`${row}.id IN (${members})` : undefined;
    const cr = this.alias('cr');
    const member = members ? sql` AND ${cr}.target_id IN (${members})` : sql``;
    return sql`EXISTS (SELECT 1 FROM sp_reference ${cr} WHERE ${cr}.resource_type = ${resourceType} AND ${cr}.resource_id = ${row}.id
      AND ${cr}.code IN ${compartmentCodes(resourceType)} AND ${cr}.target_type = 'Patient' AND ${this.search.local(cr)}${member})`;
  }

  /**
   * A Provenance (row) targeting a resource the export holds; `latest`: and no later Provenance
   * targets that resource (by lastUpdated, then id).
   */
  private associated(row: SQL, latest: boolean): SQL {
    const pt = this.alias('pt');
    const target = this.alias('tr');
    const simple: string[] = [];
    const conditional: SQL[] = [];
    for (const type of this.scope.types) {
      if (type === 'Provenance') continue;
      const conditions = [...this.scoped(type, target), ...this.filtered(type, target)];
      const visible = this.access.visibility(type, target, 's');
      if (visible) conditions.push(visible);
      if (conditions.length === 0) simple.push(type);
      else conditional.push(sql`(${pt}.target_type = ${type} AND ${all(conditions)})`);
    }
    const targets = any([...(simple.length ? [sql`${pt}.target_type IN ${simple}`] : []), ...conditional]);
    let newest = sql``;
    if (latest) {
      const later = this.alias('pt');
      const other = this.alias('p');
      newest = sql` AND NOT EXISTS (SELECT 1 FROM sp_reference ${later} JOIN resources ${other} ON ${other}.resource_type = 'Provenance' AND ${other}.id = ${later}.resource_id
        WHERE ${later}.resource_type = 'Provenance' AND ${later}.code = 'target' AND ${later}.target_type = ${pt}.target_type AND ${later}.target_id = ${pt}.target_id
          AND NOT ${other}.deleted AND (${other}.last_updated, ${other}.id) > (${row}.last_updated, ${row}.id))`;
    }
    return sql`EXISTS (SELECT 1 FROM sp_reference ${pt} JOIN resources ${target} ON ${target}.resource_type = ${pt}.target_type AND ${target}.id = ${pt}.target_id
      WHERE ${pt}.resource_type = 'Provenance' AND ${pt}.resource_id = ${row}.id AND ${pt}.code = 'target' AND ${this.search.local(pt)}
        AND NOT ${target}.deleted AND ${targets}${newest})`;
  }

  /** The type's `_typeFilter` searches, any of which admits the row. */
  private filtered(resourceType: string, row: SQL): SQL[] {
    const filters = this.scope.typeFilters.filter((f) => f.type === resourceType);
    if (filters.length === 0) return [];
    const matches = filters.map((filter) => {
      const request = parseSearchRequest(resourceType, new URLSearchParams(filter.query), { strict: true, baseUrl: this.baseUrl });
      return sql`${row}.id IN (SELECT r.id FROM resources r WHERE ${this.search.where(request)})`;
    });
    return [any(matches)];
  }

  private alias(prefix: string): SQL {
    this.aliases += 1;
    return sql.raw(`${prefix}_${this.aliases}`);
  }
}

/** Types with a Patient compartment (Patient itself aside). */
export function isCompartmentType(resourceType: string): boolean {
  return resourceType !== 'Patient' && patientCompartmentParams(resourceType) !== undefined;
}

let compartmentTypeList: string[] | undefined;

function compartmentTypes(): string[] {
  compartmentTypeList ??= getResourceTypes().filter(isCompartmentType);
  return compartmentTypeList;
}

/**
 * The sp_reference codes holding a type's Patient compartment references: a compartment
 * parameter may be stored as another's rows (Condition's `patient` is its `subject` rows
 * narrowed to Patients), so the codes are those of the rows each parameter reads.
 */
function compartmentCodes(resourceType: string): string[] {
  const params = patientCompartmentParams(resourceType) ?? [];
  return [...new Set(params.flatMap((code) => searchParam(resourceType, code)?.rows?.codes ?? [code]))];
}

function all(conditions: SQL[]): SQL {
  return conditions.length === 0 ? sql`TRUE` : sql.join(conditions, sql` AND `);
}

function any(conditions: SQL[]): SQL {
  return conditions.length === 0 ? sql`FALSE` : sql`(${sql.join(conditions, sql` OR `)})`;
}
