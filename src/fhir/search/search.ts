import type { Bundle, BundleEntry, BundleLink, OperationOutcome, Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../../db/connection.ts';
import type { AccessPolicy } from '../access.ts';
import { badRequest, FhirError, outcome } from '../errors.ts';
import { assertResourceType, type FhirContext } from '../interactions.ts';
import { applyRepresentation } from '../representation.ts';
import { includedResources } from './include.ts';
import { parseSearchRequest } from './parse.ts';
import type { SearchRequest } from './request.ts';
import { SearchSql } from './sql.ts';

/** Conditional interactions act on one match; more than this many is reported, never listed. */
const MAX_CONDITIONAL_IDS = 1000;
/** _total=estimate counts this many matches before it estimates. */
const ESTIMATE_FROM = 1000;

/**
 * Ids of the current resources of a type matching FHIR search parameters: conditional create,
 * update and delete and transaction conditional references. Unknown parameters are an error
 * here (strict): silently dropping one would widen the condition to resources it never meant.
 */
export async function findResourceIds(q: Queryable, resourceType: string, params: URLSearchParams, baseUrl: string, access: AccessPolicy): Promise<string[]> {
  assertResourceType(resourceType);
  const request = parseSearchRequest(resourceType, params, { strict: true, baseUrl });
  if (request.filters.length === 0) throw badRequest('A condition needs at least one search parameter that filters, such as identifier=system|value');
  const builder = new SearchSql({ baseUrl });
  const rows = await q.execute<{ id: string }>(
    sql`SELECT r.id FROM resources r WHERE ${visibleWhere(builder.where(request), access, resourceType)} ORDER BY r.id LIMIT ${MAX_CONDITIONAL_IDS}`,
  );
  return rows.map((row) => row.id);
}

/** search-type (http.html#search): a searchset Bundle of matches, includes and an outcome for what was ignored. */
export async function searchResources(ctx: FhirContext, resourceType: string, params: URLSearchParams, url: URL, strict: boolean): Promise<Bundle> {
  assertResourceType(resourceType);
  ctx.access.authorize('s', resourceType);
  const request = parseSearchRequest(resourceType, params, { strict, baseUrl: ctx.baseUrl });
  refuseSeparateIncludes(ctx, request);
  const builder = new SearchSql({ baseUrl: ctx.baseUrl, namesInline: identifierLookup(request) });
  const matching = matchingIn(ctx, builder, request);
  // _summary=count, or a page of nothing (_count=0): what is asked is how many.
  const countOnly = request.summary === 'count' || (request.count === 0 && request.total !== 'none');

  let page: string[] = [];
  let hasNext = false;
  if (!countOnly && request.count > 0) {
    const rows = await matching.page();
    hasNext = rows.length > request.count;
    page = hasNext ? rows.slice(0, request.count) : rows;
  }

  // A page that is not full, and not past the end, already tells the total. Otherwise counting is
  // done when asked for (search.html#total): _total=accurate counts every match, _total=estimate
  // counts up to a bound and then takes the planner's estimate, and by default the total is left
  // out, so that a broad search over a million resources stays as cheap as its first page.
  const known = !countOnly && request.count > 0 && !hasNext && (page.length > 0 || request.offset === 0) ? request.offset + page.length : undefined;
  let total: number | undefined;
  if (countOnly || request.total === 'accurate') total = await matching.count();
  else if (request.total === 'estimate') total = known ?? (await matching.estimate());
  else if (request.total !== 'none') total = known;

  const matches = page.map((json) => JSON.parse(json) as Resource);
  const included = await includedResources(ctx.q, ctx.access, builder, request, matches);
  ctx.audit.returned([...matches, ...included].map((resource) => ({ resourceType: resource.resourceType, id: resource.id as string, content: resource })));
  const representation = { summary: request.summary, elements: request.elements };
  const shaped = request.summary !== undefined || request.elements !== undefined;
  const entry: BundleEntry[] = [
    ...matches.map((resource) => entryOf(ctx.baseUrl, shaped ? applyRepresentation(resource, representation) : resource, 'match')),
    ...included.map((resource) => entryOf(ctx.baseUrl, resource, 'include')),
  ];
  if (request.ignored.length > 0) entry.push({ resource: ignoredOutcome(resourceType, request.ignored), search: { mode: 'outcome' } });

  const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset' };
  if (total !== undefined) bundle.total = total;
  bundle.link = pageLinks(url, request, hasNext);
  if (entry.length > 0) bundle.entry = entry;
  return bundle;
}

/**
 * A lookup by business identifier: every filter is `identifier` equal to a value (with or without
 * its system), sorted by id. Identifiers are near-unique, so one generic plan (an index probe)
 * suits every value, and the statement names its type and parameter for PostgreSQL to keep it.
 */
function identifierLookup(request: SearchRequest): boolean {
  return (
    request.filters.length > 0 &&
    request.sort.length === 0 &&
    request.filters.every(
      (f) => f.kind === 'index' && !f.negate && f.rows.table === 'token' && f.rows.codes.length === 1 && f.rows.codes[0] === 'identifier' && f.predicates.every((p) => p.type === 'token' && p.code !== undefined),
    )
  );
}

/** The resources matching a search, in the FHIR store or in the type's own store. */
interface Matching {
  /** The page's JSON, plus one more resource when there is a next page. */
  page(): Promise<string[]>;
  count(): Promise<number>;
  estimate(): Promise<number>;
}

function matchingIn(ctx: FhirContext, builder: SearchSql, request: SearchRequest): Matching {
  const { resourceType } = request;
  const separate = ctx.separateStores?.[resourceType];
  if (separate) {
    // A store of its own has no `resources` row to filter: only callers who may see all of it search it.
    if (ctx.access.visibility(resourceType, sql.raw('r'), 's')) {
      throw new FhirError(403, outcome('error', 'forbidden', `Searching ${resourceType} is available only to clients that may see all of it`));
    }
    return {
      page: () => separate.searchPage(ctx.q, request),
      count: () => separate.countMatches(ctx.q, request),
      estimate: () => separate.estimateMatches(ctx.q, request),
    };
  }
  const where = visibleWhere(builder.where(request), ctx.access, resourceType);
  return {
    async page() {
      // The page's ids are chosen first, from indexes, and only their content is read.
      const rows = await ctx.q.execute<{ json: string }>(sql`SELECT c.content AS json
        FROM unnest(ARRAY(SELECT r.id FROM resources r WHERE ${where} ORDER BY ${builder.orderBy(request.sort)} LIMIT ${request.count + 1} OFFSET ${request.offset}))
          WITH ORDINALITY AS page(id, ord)
        JOIN resources c ON c.resource_type = ${builder.typeName(resourceType)} AND c.id = page.id
        ORDER BY page.ord`);
      return rows.map((row) => row.json);
    },
    count: () => countMatches(ctx.q, where),
    estimate: () => estimateMatches(ctx.q, where),
  };
}

/** _include and _revinclude follow the FHIR store's reference index, which holds nothing of a separately stored type. */
function refuseSeparateIncludes(ctx: FhirContext, request: SearchRequest): void {
  const separate = (type: string | undefined) => type !== undefined && ctx.separateStores?.[type] !== undefined;
  if (separate(request.resourceType) && request.include.length + request.revinclude.length > 0) {
    throw badRequest(`_include and _revinclude are not supported on ${request.resourceType} searches`, request.include.length > 0 ? ['_include'] : ['_revinclude']);
  }
  const rule = request.revinclude.find((r) => separate(r.sourceType));
  if (rule) throw badRequest(`${rule.sourceType} cannot be reverse-included; search ${rule.sourceType} by its own parameters instead`, ['_revinclude']);
}

/** The search's conditions on `r`, narrowed to what the caller may see. */
function visibleWhere(where: SQL, access: AccessPolicy, resourceType: string): SQL {
  const visible = access.visibility(resourceType, sql.raw('r'), 's');
  return visible ? sql`${where} AND ${visible}` : where;
}

async function countMatches(q: Queryable, where: SQL): Promise<number> {
  return (await q.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM resources r WHERE ${where}`))[0].n;
}

/** Counted up to a bound, beyond it the query planner's estimate of the rows. */
function estimateMatches(q: Queryable, where: SQL): Promise<number> {
  return estimateRows(q, sql`SELECT 1 FROM resources r WHERE ${where}`);
}

/** The rows `query` selects: counted up to a bound, beyond it the query planner's estimate (_total=estimate). */
export async function estimateRows(q: Queryable, query: SQL): Promise<number> {
  const [{ n }] = await q.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM (${query} LIMIT ${ESTIMATE_FROM + 1}) bounded`);
  if (n <= ESTIMATE_FROM) return n;
  const [row] = await q.execute<{ 'QUERY PLAN': unknown }>(sql`EXPLAIN (FORMAT JSON) ${query}`);
  const plan = row['QUERY PLAN'];
  const [{ Plan }] = (typeof plan === 'string' ? JSON.parse(plan) : plan) as { Plan: { 'Plan Rows': number } }[];
  return Math.max(n, Math.round(Plan['Plan Rows']));
}

function entryOf(baseUrl: string, resource: Resource, mode: 'match' | 'include'): BundleEntry {
  return { fullUrl: `${baseUrl}/${resource.resourceType}/${resource.id}`, resource, search: { mode } };
}

function ignoredOutcome(resourceType: string, ignored: string[]): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: ignored.map((name) => ({
      severity: 'warning',
      code: 'not-supported',
      diagnostics: `The search parameter "${name.slice(0, 80)}" is not known for ${resourceType} and was ignored`,
      expression: [name],
    })),
  };
}

/** self, next and previous, absolute, carrying the parameters that were applied (search.html#conformance). */
function pageLinks(url: URL, request: SearchRequest, hasNext: boolean): BundleLink[] {
  const at = (offset: number): string => {
    const link = new URL(url);
    link.pathname = link.pathname.replace(/\/_search$/, '');
    const params = new URLSearchParams(request.applied.filter(([key]) => key !== '_offset'));
    if (offset > 0) params.set('_offset', String(offset));
    link.search = params.toString();
    return link.toString();
  };
  const links: BundleLink[] = [{ relation: 'self', url: at(request.offset) }];
  if (hasNext) links.push({ relation: 'next', url: at(request.offset + request.count) });
  if (request.offset > 0 && request.count > 0) links.push({ relation: 'previous', url: at(Math.max(0, request.offset - request.count)) });
  return links;
}
