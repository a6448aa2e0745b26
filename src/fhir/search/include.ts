import type { Resource } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Queryable } from '../../db/connection.ts';
import { type AccessPolicy, visibleOnly } from '../access.ts';
import { readCurrentMany } from '../store.ts';
import type { IncludeRule, SearchRequest } from './request.ts';
import { rowsOfAny, type SearchSql } from './sql.ts';

/**
 * _include and _revinclude (search.html#include): the resources the matches reference, and those
 * referencing them. Rules without :iterate apply to the matches; :iterate rules apply again to
 * what was included, a few rounds at most. Only what the caller may read is included: types its
 * scopes do not cover, and resources hidden from it, are left out as if they did not exist.
 */
const MAX_ROUNDS = 4;
/** Per rule and round, so an include cannot pull a whole table into one page. */
const MAX_PER_RULE = 1000;

export async function includedResources(q: Queryable, access: AccessPolicy, builder: SearchSql, request: SearchRequest, matches: Resource[]): Promise<Resource[]> {
  if (request.include.length === 0 && request.revinclude.length === 0) return [];
  const seen = new Set(matches.map(keyOf));
  const included: Resource[] = [];
  let round = matches;
  for (let depth = 0; depth < MAX_ROUNDS && round.length > 0; depth++) {
    const applicable = (rule: IncludeRule) => depth === 0 || rule.iterate;
    const found: Resource[] = [];
    for (const rule of request.include.filter(applicable)) found.push(...(await forward(q, access, builder, rule, round)));
    for (const rule of request.revinclude.filter(applicable)) found.push(...(await reverse(q, access, builder, rule, round)));
    round = [];
    for (const resource of found) {
      const key = keyOf(resource);
      if (seen.has(key)) continue;
      seen.add(key);
      included.push(resource);
      round.push(resource);
    }
  }
  return included;
}

function keyOf(resource: Resource): string {
  return `${resource.resourceType}/${resource.id}`;
}

async function forward(q: Queryable, access: AccessPolicy, builder: SearchSql, rule: IncludeRule, round: Resource[]): Promise<Resource[]> {
  const ids = round.filter((r) => r.resourceType === rule.sourceType).map((r) => r.id as string);
  if (ids.length === 0 || rule.refs.length === 0) return [];
  const ref = sql.raw('ref');
  const type = rule.targetType === undefined ? sql`` : sql` AND ${ref}.target_type = ${rule.targetType}`;
  const targets = await q.execute<{ resourceType: string; id: string }>(sql`SELECT DISTINCT ${ref}.target_type AS "resourceType", ${ref}.target_id AS id
    FROM sp_reference ${ref}
    WHERE ${ref}.resource_type = ${rule.sourceType} AND ${ref}.resource_id IN ${ids} AND ${rowsOfAny(ref, rule.refs)}
      AND ${ref}.target_id IS NOT NULL${type} AND ${builder.local(ref)}
    LIMIT ${MAX_PER_RULE}`);
  const stored = await readCurrentMany(q, targets);
  return visibleOnly(
    q,
    access,
    stored.map((s) => JSON.parse(s.json) as Resource),
  );
}

async function reverse(q: Queryable, access: AccessPolicy, builder: SearchSql, rule: IncludeRule, round: Resource[]): Promise<Resource[]> {
  const targets = round.filter((r) => rule.targetType === undefined || r.resourceType === rule.targetType);
  if (targets.length === 0 || rule.refs.length === 0 || !access.mayRead(rule.sourceType)) return [];
  const visible = access.visibility(rule.sourceType, sql.raw('r'), 'r');
  const ref = sql.raw('ref');
  const keys = sql.join(
    targets.map((t) => sql`(${t.resourceType}, ${t.id as string})`),
    sql`, `,
  );
  const rows = await q.execute<{ json: string }>(sql`SELECT r.content AS json FROM resources r
    WHERE r.resource_type = ${rule.sourceType} AND NOT r.deleted AND r.id IN (
      SELECT ${ref}.resource_id FROM sp_reference ${ref}
      WHERE ${ref}.resource_type = ${rule.sourceType} AND ${rowsOfAny(ref, rule.refs)}
        AND ${ref}.target_id IN ${targets.map((t) => t.id as string)} AND (${ref}.target_type, ${ref}.target_id) IN (${keys})
        AND ${builder.local(ref)})${visible ? sql` AND ${visible}` : sql``}
    ORDER BY r.id LIMIT ${MAX_PER_RULE}`);
  return rows.map((row) => JSON.parse(row.json) as Resource);
}
