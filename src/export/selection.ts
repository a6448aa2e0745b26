import { type SQL, sql } from 'drizzle-orm';
import { REQUESTING_CLIENT_TAG } from '../auth/access-policy.ts';
import type { AccessPolicy } from '../fhir/access.ts';
import { compartmentReferenceCodes, patientCompartmentParams } from '../fhir/compartment.ts';
import { getResourceTypes } from '../fhir/definitions.ts';
import { parseSearchRequest } from '../fhir/search/parse.ts';
import { SearchSql } from '../fhir/search/sql.ts';
import type { AssociatedProvenance, ExportKind, TypeFilter } from './request.ts';
import type { SnapshotRange } from './snapshot.ts';

/**
 * Which resources an export holds, as SQL over a row of `resources`: the part of the export
 * that does not depend on time (the snapshot as of transactionTime is snapshot.ts's). The same
 * predicate is used when a job is planned and at every download, so a file's count is what its
 * download streams, unless a grant has expired in between (then the member's data is left out).
 *
 * - A system export holds every type; a Patient or Group export holds the Patient compartments
 *   and the resources outside the compartment (Organization, Practitioner, Location,
 *   Medication, …) that those compartments reference, and the Provenance of what it holds.
 * - An export about members (a Group's, the `patient` parameter's, or a partner's: its
 *   granted members) is itemized: the ids of everything it may hold are recorded in
 *   export_items once, when the job is resolved, walking from the members to their
 *   compartments and what those reference, so its cost follows the members' data, not the
 *   database's size. A Patient export of everyone records only what it references outside the
 *   compartment.
 * - `_typeFilter` searches narrow their type (several on one type are alternatives); their
 *   matches are recorded when the job is resolved too.
 * - The caller's access policy decides the rest (scopes, a partner's grants and their labels),
 *   when items are recorded and again at every download.
 *
 * Compartments, references and filters are read from the search index, which follows current
 * versions: a resource whose references changed after transactionTime is selected by its
 * current ones, and one deleted since has no index rows left, so only a system export (no
 * compartment, no filter, no partner) still holds it. Deletions reported in `deleted[]` are
 * judged by their last content instead (job-scope.ts reportedDeletions, deleted-matches.ts).
 */
export interface SelectionScope {
  kind: ExportKind;
  /** A subquery of the member Patient ids when the export is about members. */
  members?: SQL;
  /** A subquery of the ids of a type the export is limited to (export_items), within an id range. */
  items: (resourceType: string, range?: SnapshotRange) => SQL;
  /** A subquery of every (resource_type, id) the export is limited to. */
  allItems: SQL;
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

  /** Whether the export holds only the ids recorded for it: it is about members (a partner's are its granted ones). */
  get itemized(): boolean {
    return this.scope.members !== undefined || this.access.isolated;
  }

  /**
   * The condition on `row` (a current `resources` row of the type) for being in the export;
   * `range` is the range of ids read, which bounds the walk of the recorded items too
   * (PostgreSQL does not carry a range from one side of a join to the other).
   */
  includes(resourceType: string, row: SQL, range: SnapshotRange = {}): SQL {
    const conditions = this.itemized ? this.recorded(resourceType, row, range) : this.searched(resourceType, row, range);
    const visible = this.access.visibility(resourceType, row, 's');
    if (visible) conditions.push(visible);
    return all(conditions);
  }

  /** Whether the type's rows are selected among its recorded items (export_items), so reading them can be paged by those items. */
  readsItems(resourceType: string): boolean {
    return this.itemized || this.isFiltered(resourceType) || (this.scope.kind === 'patient' && isOutsideCompartment(resourceType));
  }

  /** A type whose `_typeFilter` matches are recorded (searched once, when the job is resolved). */
  private isFiltered(resourceType: string): boolean {
    return this.scope.typeFilters.some((f) => f.type === resourceType);
  }

  /**
   * The statements recording the export's items (export_items) for `jobId`, run in order when
   * the job is resolved, after its members are recorded.
   */
  itemStatements(jobId: string, types: readonly string[]): SQL[] {
    const outside = types.filter(isOutsideCompartment);
    const statements: SQL[] = [];
    // Types with recorded items before their `_typeFilter` applies: those are narrowed to its matches, the others get them.
    const based = new Set<string>();
    if (!this.itemized) {
      if (this.scope.kind === 'patient' && outside.length > 0) {
        statements.push(sql`INSERT INTO export_items (job_id, resource_type, id) SELECT ${jobId}, t.target_type, t.target_id FROM (${this.referencedByAll(outside)}) t`);
        for (const type of outside) based.add(type);
      }
    } else {
      const members = this.scope.members ?? this.visiblePatients();
      const kept = types.filter((type) => type !== 'Provenance' && !isOutsideCompartment(type));
      for (const type of types) based.add(type);
      // One statement: the members' compartment resources (of every type: what they reference
      // counts even when their own type is not exported) are read once for both inserts. It is
      // the job's first: its two parts are of other types and each distinct, so no row can
      // conflict, and no ON CONFLICT clause makes each of ~600k rows (10k members) a speculative
      // insertion (2 s of 16 at 6M resources).
      const ref = sql.raw('ref');
      const inserts: SQL[] = [];
      if (kept.length > 0) inserts.push(sql`SELECT ${jobId}, s.resource_type, s.resource_id FROM sources s WHERE s.resource_type IN ${kept}`);
      if (outside.length > 0) {
        inserts.push(sql`SELECT DISTINCT ${jobId}, ${ref}.target_type, ${ref}.target_id FROM sources s
          JOIN sp_reference ${ref} ON ${ref}.resource_type = s.resource_type AND ${ref}.resource_id = s.resource_id
          WHERE ${ref}.target_type IN ${outside} AND ${ref}.target_id IS NOT NULL AND ${this.search.local(ref)}`);
      }
      if (inserts.length > 0) {
        statements.push(sql`WITH sources AS MATERIALIZED (${this.memberSources(members)})
          INSERT INTO export_items (job_id, resource_type, id) ${sql.join(inserts, sql` UNION ALL `)}`);
      }
      const client = this.access.isolated ? this.access.caller?.clientId : undefined;
      if (client && types.includes('Group')) {
        // A partner's own Groups ($bulk-member-match results, tagged with its client id) are in no granted member's compartment.
        statements.push(sql`INSERT INTO export_items (job_id, resource_type, id) SELECT ${jobId}, 'Group', t.resource_id FROM sp_token t
          WHERE t.resource_type = 'Group' AND t.code = '_tag' AND t.system = ${REQUESTING_CLIENT_TAG} AND t.value = ${client} ON CONFLICT DO NOTHING`);
      }
    }
    const narrow = (type: string): void => {
      const matches = this.filterMatches(type);
      if (!matches) return;
      statements.push(
        based.has(type)
          ? sql`DELETE FROM export_items WHERE job_id = ${jobId} AND resource_type = ${type} AND id NOT IN (${matches})`
          : sql`INSERT INTO export_items (job_id, resource_type, id) SELECT DISTINCT ${jobId}, ${type}, m.id FROM (${matches}) m(id)`,
      );
    };
    for (const type of types) if (type !== 'Provenance') narrow(type);
    // The Provenance of what is exported, once the other types are narrowed to what is.
    if (this.itemized && types.includes('Provenance')) statements.push(this.provenanceItems(jobId, this.scope.members ?? this.visiblePatients()));
    if (types.includes('Provenance')) narrow('Provenance');
    return statements;
  }

  /**
   * The row is one of the type's recorded items in the range: one of the page's own ids when it
   * is read by its items (an array the planner counts exactly; as a subquery of export_items its
   * rows were estimated from statistics that lag behind the job's inserts, and a page of 1,000
   * took 200 ms in a nested loop instead of 1,000 key lookups), else any in the range.
   */
  private inItems(resourceType: string, row: SQL, range: SnapshotRange): SQL {
    return range.ids ? sql`${row}.id = ANY(${sql.param(range.ids)}::text[])` : sql`${row}.id IN (${this.scope.items(resourceType, range)})`;
  }

  /** An itemized export: the row is one of the recorded items; LatestProvenanceResources keeps a Provenance that nothing later supersedes. */
  private recorded(resourceType: string, row: SQL, range: SnapshotRange): SQL[] {
    const conditions = [this.inItems(resourceType, row, range)];
    if (resourceType === 'Provenance' && this.scope.associatedProvenance === 'latest') conditions.push(this.latestOf(row, sql`(${this.scope.allItems})`));
    return conditions;
  }

  /**
   * Provenance of an itemized export: that targeting what it holds (Bulk Data: a patient-level
   * export holds the Provenance of every resource in the compartments), and, unless
   * includeAssociatedData narrows it to that, the Provenance in the members' compartments.
   */
  private provenanceItems(jobId: string, members: SQL): SQL {
    const pt = sql.raw('pt');
    const targets = sql`SELECT ${pt}.resource_id FROM export_items i JOIN sp_reference ${pt}
        ON ${pt}.resource_type = 'Provenance' AND ${pt}.code = 'target' AND ${pt}.target_type = i.resource_type AND ${pt}.target_id = i.id
      WHERE i.job_id = ${jobId} AND i.resource_type <> 'Provenance'`;
    const compartment = this.scope.associatedProvenance
      ? sql``
      : sql` UNION SELECT cr.resource_id FROM sp_reference cr WHERE cr.resource_type = 'Provenance' AND cr.code IN ${compartmentCodes('Provenance')}
          AND cr.target_type = 'Patient' AND ${this.search.local(sql.raw('cr'))} AND cr.target_id IN (${members})`;
    return sql`INSERT INTO export_items (job_id, resource_type, id) SELECT DISTINCT ${jobId}, 'Provenance', p.id FROM (${targets}${compartment}) p(id) ON CONFLICT DO NOTHING`;
  }

  /**
   * An export of everyone, or of the whole server: compartments searched row by row, the
   * directory data referenced and the `_typeFilter` matches read from the recorded items.
   */
  private searched(resourceType: string, row: SQL, range: SnapshotRange): SQL[] {
    const conditions: SQL[] = [];
    if (this.isFiltered(resourceType) || (this.scope.kind === 'patient' && isOutsideCompartment(resourceType))) {
      conditions.push(this.inItems(resourceType, row, range));
    }
    if (resourceType === 'Provenance' && this.scope.associatedProvenance) return [...conditions, this.associated(row, this.scope.associatedProvenance === 'latest')];
    if (this.scope.kind === 'system' || resourceType === 'Patient' || isOutsideCompartment(resourceType)) return conditions;
    const compartment = this.inSomeCompartment(resourceType, row);
    // Bulk Data 2.0 (includeAssociatedData): a patient-level export holds the Provenance of every
    // resource in the compartments, not only that whose target is the Patient itself.
    return [...conditions, resourceType === 'Provenance' ? sql`(${compartment} OR ${this.associated(row, false)})` : compartment];
  }

  /** The row is in some Patient's compartment. */
  private inSomeCompartment(resourceType: string, row: SQL): SQL {
    const cr = this.alias('cr');
    // A scalar subquery, probed row by row: as EXISTS, PostgreSQL would join every compartment
    // reference of the type for each page of 1,000 rows.
    return sql`(SELECT 1 FROM sp_reference ${cr} WHERE ${cr}.resource_type = ${resourceType} AND ${cr}.resource_id = ${row}.id
      AND ${cr}.code IN ${compartmentCodes(resourceType)} AND ${cr}.target_type = 'Patient' AND ${this.search.local(cr)} LIMIT 1) IS NOT NULL`;
  }

  /**
   * A Provenance (row) targeting a resource the export holds; `latest`: and no later Provenance
   * targets that resource. Exports that are not itemized only.
   */
  private associated(row: SQL, latest: boolean): SQL {
    const pt = this.alias('pt');
    const target = this.alias('tr');
    const simple: string[] = [];
    const conditional: SQL[] = [];
    for (const type of this.scope.types) {
      if (type === 'Provenance') continue;
      const conditions = this.searched(type, target, {});
      const visible = this.access.visibility(type, target, 's');
      if (visible) conditions.push(visible);
      if (conditions.length === 0) simple.push(type);
      else conditional.push(sql`(${pt}.target_type = ${type} AND ${all(conditions)})`);
    }
    const targets = any([...(simple.length ? [sql`${pt}.target_type IN ${simple}`] : []), ...conditional]);
    const newest = latest ? sql` AND ${this.notSuperseded(row, pt)}` : sql``;
    return sql`EXISTS (SELECT 1 FROM sp_reference ${pt} JOIN resources ${target} ON ${target}.resource_type = ${pt}.target_type AND ${target}.id = ${pt}.target_id
      WHERE ${pt}.resource_type = 'Provenance' AND ${pt}.resource_id = ${row}.id AND ${pt}.code = 'target' AND ${this.search.local(pt)}
        AND NOT ${target}.deleted AND ${targets}${newest})`;
  }

  /** A Provenance (row) that is the latest of some resource among `pairs` (resource_type, id) it targets. */
  private latestOf(row: SQL, pairs: SQL): SQL {
    const pt = this.alias('pt');
    return sql`EXISTS (SELECT 1 FROM sp_reference ${pt} WHERE ${pt}.resource_type = 'Provenance' AND ${pt}.resource_id = ${row}.id AND ${pt}.code = 'target'
      AND (${pt}.target_type, ${pt}.target_id) IN ${pairs} AND ${this.notSuperseded(row, pt)})`;
  }

  /** No other Provenance targeting what `pt` (a target row of `row`) points at is later (by lastUpdated, then id). */
  private notSuperseded(row: SQL, pt: SQL): SQL {
    const later = this.alias('pt');
    const other = this.alias('p');
    return sql`NOT EXISTS (SELECT 1 FROM sp_reference ${later} JOIN resources ${other} ON ${other}.resource_type = 'Provenance' AND ${other}.id = ${later}.resource_id
      WHERE ${later}.resource_type = 'Provenance' AND ${later}.code = 'target' AND ${later}.target_type = ${pt}.target_type AND ${later}.target_id = ${pt}.target_id
        AND NOT ${other}.deleted AND (${other}.last_updated, ${other}.id) > (${row}.last_updated, ${row}.id))`;
  }

  /**
   * The ids of the type's resources matching one of its `_typeFilter` searches (among the ids of
   * the subquery `among`, when given); undefined when the type has none.
   */
  filterMatches(resourceType: string, among?: SQL): SQL | undefined {
    if (!this.isFiltered(resourceType)) return undefined;
    const within = among ? sql`r.id IN (${among}) AND ` : sql``;
    const searches = this.scope.typeFilters
      .filter((f) => f.type === resourceType)
      .map((filter) => {
        const request = parseSearchRequest(resourceType, new URLSearchParams(filter.query), { strict: true, baseUrl: this.baseUrl });
        return sql`SELECT r.id FROM resources r WHERE ${within}${this.search.where(request)}`;
      });
    return sql.join(searches, sql` UNION `);
  }


  /**
   * The members and the resources of their compartments the caller may see, as (resource_type,
   * resource_id), walking from the members through the compartment references. What the caller
   * may not see (a partner's other members, data its consent withholds) is left out here, so
   * what it references is not revealed either.
   */
  private memberSources(members: SQL): SQL {
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
    return sql.join(sources, sql` UNION `);
  }

  /** The ids of the `types` (outside the compartment) that any compartment resource references: one pass over the references. */
  private referencedByAll(types: readonly string[]): SQL {
    const ref = sql.raw('ref');
    const src = sql.raw('src');
    const visibleSources = [...compartmentTypes(), 'Patient'].map((type) => {
      const visible = this.access.visibility(type, src, 's');
      return visible ? sql`(${ref}.resource_type = ${type} AND ${visible})` : sql`${ref}.resource_type = ${type}`;
    });
    const join = this.access.filtersRows ? sql` JOIN resources ${src} ON ${src}.resource_type = ${ref}.resource_type AND ${src}.id = ${ref}.resource_id` : sql``;
    return sql`SELECT DISTINCT ${ref}.target_type, ${ref}.target_id FROM sp_reference ${ref}${join}
      WHERE ${ref}.target_type IN ${types} AND ${ref}.target_id IS NOT NULL AND ${this.search.local(ref)} AND ${any(visibleSources)}`;
  }

  /** The Patients the caller may see (a partner's granted members). */
  private visiblePatients(): SQL {
    const p = this.alias('p');
    const visible = this.access.visibility('Patient', p, 's');
    return sql`SELECT ${p}.id FROM resources ${p} WHERE ${p}.resource_type = 'Patient' AND NOT ${p}.deleted${visible ? sql` AND ${visible}` : sql``}`;
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

/** Types neither Patient nor in its compartment: directory data (Organization, Practitioner, Location, Medication, …). */
export function isOutsideCompartment(resourceType: string): boolean {
  return resourceType !== 'Patient' && !isCompartmentType(resourceType);
}

let compartmentTypeList: string[] | undefined;

function compartmentTypes(): string[] {
  compartmentTypeList ??= getResourceTypes().filter(isCompartmentType);
  return compartmentTypeList;
}

/** The sp_reference codes holding a type's Patient compartment references. */
function compartmentCodes(resourceType: string): string[] {
  return compartmentReferenceCodes(resourceType) ?? [];
}

function all(conditions: SQL[]): SQL {
  return conditions.length === 0 ? sql`TRUE` : sql.join(conditions, sql` AND `);
}

function any(conditions: SQL[]): SQL {
  return conditions.length === 0 ? sql`FALSE` : sql`(${sql.join(conditions, sql` OR `)})`;
}
