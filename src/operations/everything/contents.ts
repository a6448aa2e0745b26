import type { Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../../db/connection.ts';
import type { AccessPolicy } from '../../fhir/access.ts';
import { patientCompartmentParams, referenceRowCodes } from '../../fhir/compartment.ts';
import { getResourceTypes, isResourceType } from '../../fhir/definitions.ts';
import { searchParamsOf } from '../../fhir/search/parameters.ts';
import { SearchSql } from '../../fhir/search/sql.ts';
import { careDateCodes } from './care-dates.ts';
import type { Cursor, EverythingInput } from './parameters.ts';

/**
 * What Patient/$everything returns, in one fixed order so that pages never repeat or skip a
 * resource: rank 0 the Patient itself, rank 1 its record (the resources of its Patient
 * compartment), rank 2 the resources those reference that belong to no patient (Organization,
 * Practitioner, PractitionerRole, Location, Medication, Device, …); within a rank by type and id.
 * A page is two SQL statements: which record types the member has, then the page itself, whose
 * ids come from the reference and date indexes, narrowed by the caller's visibility type by type;
 * only the page's content is read.
 */
export interface EverythingEntry {
  rank: number;
  resource: Resource & { id: string };
}

export interface EverythingPage {
  entries: EverythingEntry[];
  /** How many resources the whole answer holds, over all pages. */
  total: number;
  hasNext: boolean;
}

/**
 * Resource types that are in the R4 Patient compartment but are not the member's record:
 * another Patient (compartment param `link`) is someone else, whatever the link says, and the
 * answer holds exactly one Patient (Inferno's PDex $everything test asserts it); a Group lists
 * members and would name the others; the audit trail is the auditors' (AuditEvent search), and
 * would grow with every call of this very operation.
 */
const NOT_RECORD = new Set(['Patient', 'Group', 'AuditEvent']);

/**
 * Types outside the R4 Patient compartment that still point at their patient: US Core's
 * implantable Device names it in Device.patient, and PDex counts the member's devices in the
 * member's history.
 */
const ALSO_RECORD: Record<string, string[]> = { Device: ['patient'] };

let recordCodes: Map<string, string[]> | undefined;
let directoryTypes: string[] | undefined;

/** The member-record types and, for each, the sp_reference codes whose Patient targets put a resource in the record. */
function recordTypes(): Map<string, string[]> {
  if (!recordCodes) {
    recordCodes = new Map();
    for (const type of getResourceTypes()) {
      if (NOT_RECORD.has(type)) continue;
      const params = patientCompartmentParams(type) ?? ALSO_RECORD[type];
      if (!params) continue;
      recordCodes.set(type, referenceRowCodes(type, params));
    }
  }
  return recordCodes;
}

/**
 * Types a member's record may reference that are nobody's record: the targets of the record
 * types' (and the Patient's) reference parameters outside the Patient compartment. References
 * into another patient's compartment are not followed: that is someone else's data.
 */
function referencedTypes(): string[] {
  if (!directoryTypes) {
    const targets = new Set<string>();
    for (const type of ['Patient', ...recordTypes().keys()]) {
      for (const param of searchParamsOf(type).values()) if (param.type === 'reference') for (const target of param.targets) targets.add(target);
    }
    directoryTypes = [...targets].filter((type) => isResourceType(type) && type !== 'Patient' && !patientCompartmentParams(type)).sort();
  }
  return directoryTypes;
}

export async function everythingPage(q: Queryable, access: AccessPolicy, baseUrl: string, patientId: string, input: EverythingInput): Promise<EverythingPage> {
  const builder = new SearchSql({ baseUrl });
  const wanted = (type: string) => !input.types || input.types.includes(type);
  const readable = (type: string) => access.mayRead(type);
  const directory = referencedTypes().filter((type) => wanted(type) && readable(type));
  // The record is read in full only when it is needed as the source of references.
  const record = await recordTypesPresent(
    q,
    builder,
    patientId,
    [...recordTypes().keys()].filter((type) => readable(type) && (directory.length > 0 || wanted(type))),
  );
  const since = input.since ? sql` AND last_updated >= ${input.since}` : sql``;

  const recordBranches = record.map((type) => recordBranch(type, patientId, input, access, builder));
  const member = recordBranches.length > 0 ? sql.join(recordBranches, sql` UNION ALL `) : EMPTY;
  const wantedRecord = record.filter(wanted);
  const everything = [
    sql`SELECT 0 AS rank, 'Patient'::text AS resource_type, ${patientId}::text AS id`,
    ...(wantedRecord.length > 0 ? [sql`SELECT 1, resource_type, id FROM member WHERE resource_type IN ${wantedRecord}${since}`] : []),
    ...(directory.length > 0
      ? [sql`SELECT 2, d.resource_type, d.id FROM directory d
          WHERE NOT EXISTS (SELECT 1 FROM member m WHERE m.resource_type = d.resource_type AND m.id = d.id)${since}`]
      : []),
  ];
  const referenced =
    directory.length > 0
      ? sql`, referenced AS (
          SELECT DISTINCT x.target_type AS resource_type, x.target_id AS id
          FROM (SELECT resource_type, id FROM member UNION ALL SELECT 'Patient', ${patientId}) s
          JOIN sp_reference x ON x.resource_type = s.resource_type AND x.resource_id = s.id
          WHERE x.target_type IN ${directory} AND ${builder.local(x)}),
        directory AS (${directoryBranches(directory, access)})`
      : sql``;

  const after = input.cursor ?? { rank: -1, type: '', id: '' };
  const limit = input.count === 0 ? 0 : input.count + 1;
  const rows = await q.execute<{ total: number; rank: number | null; json: string | null }>(sql`
    WITH member AS (${member})${referenced},
    everything AS (${sql.join(everything, sql` UNION ALL `)})
    SELECT t.total, p.rank, p.json
    FROM (SELECT count(*)::int AS total FROM everything) t
    LEFT JOIN (
      SELECT e.rank, e.resource_type, e.id, c.content AS json
      FROM (SELECT * FROM everything
            WHERE (rank, resource_type COLLATE "C", id COLLATE "C") > (${after.rank}::int, ${after.type}::text COLLATE "C", ${after.id}::text COLLATE "C")
            ORDER BY rank, resource_type COLLATE "C", id COLLATE "C" LIMIT ${limit}) e
      JOIN resources c ON c.resource_type = e.resource_type AND c.id = e.id
    ) p ON true
    ORDER BY p.rank, p.resource_type COLLATE "C", p.id COLLATE "C"`);

  const found = rows.filter((row) => row.json !== null).map((row) => ({ rank: row.rank as number, resource: JSON.parse(row.json as string) as Resource & { id: string } }));
  const hasNext = input.count > 0 && found.length > input.count;
  return { entries: hasNext ? found.slice(0, input.count) : found, total: rows[0].total, hasNext };
}

/** Where the page after `entry` starts. */
export function cursorAfter(entry: EverythingEntry): Cursor {
  return { rank: entry.rank, type: entry.resource.resourceType, id: entry.resource.id };
}

const EMPTY = sql`SELECT NULL::text AS resource_type, NULL::text AS id, NULL::timestamptz AS last_updated WHERE FALSE`;
const r = sql.raw('r');
const x = sql.raw('x');

/**
 * Of `candidates`, the types the member has resources of. A statement's planning time grows with
 * its branches (a branch per record type cost more to plan than to run), so the page's statement
 * gets a branch only for the few types a member's record actually holds.
 */
async function recordTypesPresent(q: Queryable, builder: SearchSql, patientId: string, candidates: string[]): Promise<string[]> {
  if (candidates.length === 0) return [];
  const pairs = candidates.flatMap((type) => (recordTypes().get(type) as string[]).map((code) => sql`(${type}::text, ${code}::text)`));
  const pr = sql.raw('pr');
  const rows = await q.execute<{ resource_type: string }>(sql`SELECT DISTINCT c.resource_type FROM (VALUES ${sql.join(pairs, sql`, `)}) AS c(resource_type, code)
    WHERE EXISTS (SELECT 1 FROM sp_reference ${pr}
      WHERE ${pr}.resource_type = c.resource_type AND ${pr}.code = c.code AND ${pr}.target_type = 'Patient' AND ${pr}.target_id = ${patientId} AND ${builder.local(pr)})`);
  return rows.map((row) => row.resource_type).sort();
}

/** The member's current resources of one record type that the caller may see, within the care dates. */
function recordBranch(type: string, patientId: string, input: EverythingInput, access: AccessPolicy, builder: SearchSql): SQL {
  const codes = recordTypes().get(type) as string[];
  const pr = sql.raw('pr');
  const conditions = [
    sql`${r}.resource_type = ${type}`,
    sql`NOT ${r}.deleted`,
    sql`${r}.id IN (SELECT ${pr}.resource_id FROM sp_reference ${pr}
      WHERE ${pr}.resource_type = ${type} AND ${pr}.code IN ${codes} AND ${pr}.target_type = 'Patient' AND ${pr}.target_id = ${patientId} AND ${builder.local(pr)})`,
  ];
  const visible = access.visibility(type, r, 's');
  if (visible) conditions.push(visible);
  const careDates = careDateCodes(type);
  if (careDates && (input.careFrom || input.careTo)) conditions.push(careDateCondition(type, careDates, input));
  return sql`SELECT ${type}::text AS resource_type, ${r}.id, ${r}.last_updated FROM resources ${r} WHERE ${sql.join(conditions, sql` AND `)}`;
}

/** In the care range when one of its care dates overlaps it, or when it has no care date at all. */
function careDateCondition(type: string, codes: string[], input: EverythingInput): SQL {
  const cd = sql.raw('cd');
  const dated = sql`${cd}.resource_type = ${type} AND ${cd}.resource_id = ${r}.id AND ${cd}.code IN ${codes}`;
  const overlaps = [
    ...(input.careFrom ? [sql`${cd}."end" >= ${input.careFrom}`] : []),
    ...(input.careTo ? [sql`${cd}.start <= ${input.careTo}`] : []),
  ];
  return sql`(NOT EXISTS (SELECT 1 FROM sp_date ${cd} WHERE ${dated})
    OR EXISTS (SELECT 1 FROM sp_date ${cd} WHERE ${dated} AND ${sql.join(overlaps, sql` AND `)}))`;
}

/**
 * The referenced resources the caller may see. Types its policy does not narrow share one join;
 * each narrowed type gets its own branch, with the policy's condition over that type.
 */
function directoryBranches(types: string[], access: AccessPolicy): SQL {
  const open: string[] = [];
  const branches: SQL[] = [];
  for (const type of types) {
    const visible = access.visibility(type, r, 's');
    if (!visible) open.push(type);
    else {
      branches.push(sql`SELECT ${r}.resource_type, ${r}.id, ${r}.last_updated FROM resources ${r}
        WHERE ${r}.resource_type = ${type} AND NOT ${r}.deleted AND ${r}.id IN (SELECT id FROM referenced WHERE resource_type = ${type}) AND ${visible}`);
    }
  }
  if (open.length > 0) {
    branches.unshift(sql`SELECT ${r}.resource_type, ${r}.id, ${r}.last_updated FROM referenced ${x}
      JOIN resources ${r} ON ${r}.resource_type = ${x}.resource_type AND ${r}.id = ${x}.id
      WHERE ${x}.resource_type IN ${open} AND NOT ${r}.deleted`);
  }
  return sql.join(branches, sql` UNION ALL `);
}
