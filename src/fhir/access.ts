import type { Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';
import type { SeparateStore } from './separate-store.ts';

/**
 * What the caller may do, as every data path asks it. The REST interactions, search, includes,
 * history and bundles consult the AccessPolicy on their FhirContext and nothing else, so one
 * implementation (src/auth/access-policy.ts) decides for every route. The SMART permission
 * letters: c create, r read (vread, instance history), u update (patch), d delete, s search
 * (type history).
 */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

export interface AccessPolicy {
  /** Throws the 403 FhirError unless the caller may do `permission` on `resourceType` (`*`: every type). */
  authorize(permission: Permission, resourceType: string): void;
  /** Throws the 403 FhirError unless the caller may invoke the operation with this canonical URL. */
  authorizeOperation(canonical: string): void;
  /**
   * A predicate over `alias` (a row of `resources`) limiting which resources of the type the
   * caller may see for `permission` ('r' or 's'); undefined when every resource of the type is
   * visible. Invisible resources answer 404, never 403, so their existence does not leak.
   */
  visibility(resourceType: string, alias: SQL, permission: 'r' | 's'): SQL | undefined;
  /** Whether the caller may see resources of the type at all (scopes); included resources of other types are left out. */
  mayRead(resourceType: string): boolean;
  /** Who is calling, for the audit trail; undefined for Baton itself. */
  readonly caller?: { clientId: string; kind: 'partner' | 'internal' | 'operator'; tokenId?: string; organization?: readonly { system: string; value: string }[] };
  /** True when visibility() may filter some type: whole-system views, which cannot apply a per-type filter, are refused. */
  readonly filtersRows: boolean;
}

/** Baton itself (start-up, seeding, background jobs): everything, unfiltered. */
export const systemAccess: AccessPolicy = {
  authorize: () => undefined,
  authorizeOperation: () => undefined,
  visibility: () => undefined,
  mayRead: () => true,
  filtersRows: false,
};

/** Whether the current resource `type/id` is visible under the policy (true when nothing restricts the type). */
export async function isVisible(q: Queryable, access: AccessPolicy, resourceType: string, id: string, separate?: SeparateStore): Promise<boolean> {
  const r = sql.raw('r');
  const filter = access.visibility(resourceType, r, 'r');
  if (!filter) return true;
  // A store of its own has no `resources` row to filter: only callers who may see all of it see any.
  if (separate) return false;
  const rows = await q.execute(sql`SELECT 1 FROM resources ${r} WHERE ${r}.resource_type = ${resourceType} AND ${r}.id = ${id} AND ${filter}`);
  return rows.length > 0;
}

/** The resources the policy lets the caller read, in their order; one query per restricted type. */
export async function visibleOnly<T extends Resource>(q: Queryable, access: AccessPolicy, resources: T[]): Promise<T[]> {
  const readable = resources.filter((resource) => access.mayRead(resource.resourceType));
  const byType = new Map<string, string[]>();
  for (const resource of readable) byType.set(resource.resourceType, [...(byType.get(resource.resourceType) ?? []), resource.id as string]);
  const hidden = new Set<string>();
  const r = sql.raw('r');
  for (const [type, ids] of byType) {
    const filter = access.visibility(type, r, 'r');
    if (!filter) continue;
    const rows = await q.execute<{ id: string }>(sql`SELECT ${r}.id FROM resources ${r} WHERE ${r}.resource_type = ${type} AND ${r}.id IN ${ids} AND ${filter}`);
    const shown = new Set(rows.map((row) => row.id));
    for (const id of ids) if (!shown.has(id)) hidden.add(`${type}/${id}`);
  }
  return readable.filter((resource) => !hidden.has(`${resource.resourceType}/${resource.id}`));
}
