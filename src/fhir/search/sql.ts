import { type SQL, sql } from 'drizzle-orm';
import type { IndexTable } from './extract.ts';
import type { CompositeSource, RowSource } from './parameters.ts';
import type { Filter, Predicate, SearchRequest, SortRule } from './request.ts';
import { FIRST_INSTANT, LAST_INSTANT, referenceTarget } from './values.ts';

/**
 * SearchRequest → SQL. Every value is a bound parameter; `sql.raw` only carries table, alias,
 * column and operator names chosen here, and, with `namesInline`, resource type names and
 * parameter codes. Index rows exist only for live resources, so a positive filter is an
 * `id IN (index subquery)`; negations look at the resources table.
 */
export interface SqlOptions {
  /** Our public base URL: absolute references under it count as local. */
  baseUrl: string | undefined;
  /**
   * The type and parameter names of the conditions on the resources and the index rows written
   * into the statement rather than bound: PostgreSQL costs a generic plan by them, and may then
   * keep one. Only for searches whose every value is near-unique (search.ts decides), where a
   * generic plan suits every value; bound, a name makes the generic plan look dear, and each
   * search was planned anew (0.3 ms of the database's CPU, more than running it). Values, and a
   * page's LIMIT and OFFSET, stay bound: the statements are no more than the types and parameters.
   */
  namesInline?: boolean;
}

/** A resource type name or a search parameter code: the only names that may be written into a statement. */
const NAME = /^[A-Za-z_][A-Za-z0-9_:.-]{0,127}$/;

const TABLES: Record<IndexTable, SQL> = {
  string: sql.raw('sp_string'),
  token: sql.raw('sp_token'),
  date: sql.raw('sp_date'),
  number: sql.raw('sp_number'),
  quantity: sql.raw('sp_quantity'),
  reference: sql.raw('sp_reference'),
  uri: sql.raw('sp_uri'),
};

/** Upper bound of every string starting with a prefix, in the byte order of text_pattern_ops. */
const MAX_CHAR = '\u{10FFFF}';

export class SearchSql {
  private aliases = 0;
  private readonly options: SqlOptions;

  constructor(options: SqlOptions) {
    this.options = options;
  }

  /**
   * The current, live resources of the request's type matching every filter, as alias `r`. A
   * filter that selects ids from the resource's own index rows already excludes deleted
   * resources; then `deleted` is not read, and the ids come from indexes alone.
   */
  where(request: SearchRequest): SQL {
    const r = sql.raw('r');
    const conditions = [sql`${r}.resource_type = ${this.name(request.resourceType)}`];
    if (!request.filters.some(selectsOwnRows)) conditions.push(sql`NOT ${r}.deleted`);
    for (const filter of request.filters) conditions.push(this.condition(request.resourceType, filter, r));
    return sql.join(conditions, sql` AND `);
  }

  orderBy(sort: SortRule[]): SQL {
    const r = sql.raw('r');
    const keys = sort.map((rule) => {
      const direction = sql.raw(rule.descending ? 'DESC NULLS LAST' : 'ASC NULLS LAST');
      if ('column' in rule) return sql`${r}.${sql.raw(rule.column)} ${direction}`;
      const s = this.alias('s');
      const column = sql.raw(sortColumn(rule.rows.table, rule.descending));
      const aggregate = sql.raw(rule.descending ? 'max' : 'min');
      return sql`(SELECT ${aggregate}(${s}.${column}) FROM ${TABLES[rule.rows.table]} ${s} WHERE ${s}.resource_type = ${r}.resource_type AND ${s}.resource_id = ${r}.id AND ${rowsOf(s, rule.rows)}) ${direction}`;
    });
    // The id breaks ties, so pages neither repeat nor skip resources.
    keys.push(sql`${r}.id`);
    return sql.join(keys, sql`, `);
  }

  /** A resource type name as this builder writes names: a literal with `namesInline`, else bound. */
  typeName(type: string): SQL {
    return this.name(type);
  }

  /** A type name or parameter code: a literal when names go inline (and it is one), else bound. */
  private name(value: string): SQL {
    return this.options.namesInline && NAME.test(value) ? sql.raw(`'${value}'`) : sql`${value}`;
  }

  private alias(prefix: string): SQL {
    this.aliases += 1;
    return sql.raw(`${prefix}${this.aliases}`);
  }

  /** A boolean over the resources row `r` of `type`. */
  private condition(type: string, filter: Filter, r: SQL): SQL {
    switch (filter.kind) {
      case 'index':
        if (!filter.negate) return sql`${r}.id IN (${this.ids(type, filter)})`;
        return sql`NOT EXISTS (${this.rowsOfResource(type, filter.rows, r, filter.predicates)})`;
      case 'missing': {
        const present = any(filter.present.map((sources) => all(sources.map((rows) => sql`EXISTS (${this.rowsOfResource(type, rows, r, [])})`))));
        return filter.missing ? sql`NOT ${present}` : present;
      }
      case 'column':
        return any(filter.predicates.map((p) => (p.type === 'id' ? sql`${r}.id = ${p.id}` : this.predicate(p, r, filter.column))));
      default:
        return sql`${r}.id IN (${this.ids(type, filter)})`;
    }
  }

  /** Index rows of one resource `r` (matching one of the predicates, when there are any). */
  private rowsOfResource(type: string, rows: RowSource, r: SQL, predicates: Predicate[]): SQL {
    const t = this.alias('t');
    const matching = predicates.length ? sql` AND ${any(predicates.map((p) => this.predicate(p, t, rows.table)))}` : sql``;
    return sql`SELECT 1 FROM ${TABLES[rows.table]} ${t} WHERE ${t}.resource_type = ${type} AND ${t}.resource_id = ${r}.id AND ${rowsOf(t, rows)}${matching}`;
  }

  /** A subquery selecting the ids of the `type` resources matching the filter. */
  private ids(type: string, filter: Filter): SQL {
    switch (filter.kind) {
      case 'index': {
        if (filter.negate) break;
        const t = this.alias('t');
        const table = filter.rows.table;
        return sql`SELECT ${t}.resource_id FROM ${TABLES[table]} ${t} WHERE ${t}.resource_type = ${this.name(type)} AND ${rowsOf(t, filter.rows, (code) => this.name(code))} AND ${any(
          filter.predicates.map((p) => this.predicate(p, t, table)),
        )}`;
      }
      case 'composite':
        return sql.join(
          filter.sources.map((source) => this.compositeIds(type, source, filter.alternatives)),
          sql` UNION ALL `,
        );
      case 'chain': {
        const ref = this.alias('ref');
        const targets = filter.targets.map(
          (target) => sql`(${ref}.target_type = ${target.type} AND ${ref}.target_id IN (${this.ids(target.type, target.filter)}))`,
        );
        return sql`SELECT ${ref}.resource_id FROM sp_reference ${ref} WHERE ${ref}.resource_type = ${type} AND ${rowsOf(ref, filter.rows)} AND ${any(targets)} AND ${this.local(ref)}`;
      }
      case 'has': {
        const ref = this.alias('ref');
        return sql`SELECT ${ref}.target_id FROM sp_reference ${ref} WHERE ${ref}.resource_type = ${filter.type} AND ${rowsOf(ref, filter.rows)} AND ${ref}.target_type = ${type} AND ${this.local(ref)} AND ${ref}.resource_id IN (${this.ids(filter.type, filter.filter)})`;
      }
      default:
        break;
    }
    const x = this.alias('x');
    return sql`SELECT ${x}.id FROM resources ${x} WHERE ${x}.resource_type = ${type} AND NOT ${x}.deleted AND ${this.condition(type, filter, x)}`;
  }

  /**
   * Resources with one alternative's components all matching (search.html#composite): within one
   * element instance (same grp) for stored composites, within the resource for the AND form.
   */
  private compositeIds(type: string, source: CompositeSource, alternatives: Predicate[][]): SQL {
    const components: RowSource[] = source.kind === 'and' ? source.components : source.components.map((c) => ({ table: c.table, codes: [c.code] }));
    const aliases = components.map(() => this.alias('c'));
    const [first] = aliases;
    const sameElement = source.kind === 'rows';
    const joins = components.slice(1).map((component, i) => {
      const c = aliases[i + 1];
      const grp = sameElement ? sql` AND ${c}.grp = ${first}.grp` : sql``;
      return sql` JOIN ${TABLES[component.table]} ${c} ON ${c}.resource_type = ${first}.resource_type AND ${c}.resource_id = ${first}.resource_id AND ${rowsOf(c, component)}${grp}`;
    });
    const matches = alternatives.map((predicates) => all(predicates.map((p, i) => this.predicate(p, aliases[i], components[i].table))));
    return sql`SELECT ${first}.resource_id FROM ${TABLES[components[0].table]} ${first}${sql.join(joins, sql``)} WHERE ${first}.resource_type = ${type} AND ${rowsOf(first, components[0])} AND ${any(matches)}`;
  }

  /** A reference row pointing at one of our resources: `Type/id`, or an absolute URL under our base. */
  local(ref: SQL): SQL {
    const relative = sql`strpos(${ref}.reference, ':') = 0`;
    if (!this.options.baseUrl) return relative;
    return sql`(${relative} OR starts_with(${ref}.reference, ${`${this.options.baseUrl}/`}))`;
  }

  /** One predicate over an index row `t` of `table` (or over `r.last_updated` for `_lastUpdated`). */
  private predicate(p: Predicate, t: SQL, table: IndexTable | 'last_updated' | 'id'): SQL {
    switch (p.type) {
      case 'string':
        if (p.mode === 'exact') return sql`${t}.exact = ${p.value}`;
        if (p.mode === 'contains') return sql`${t}.value LIKE ${`%${escapeLike(p.value)}%`}`;
        return startsWith(sql`${t}.value`, p.value);
      case 'token': {
        const conditions: SQL[] = [];
        if (p.code !== undefined) conditions.push(sql`${t}.value = ${p.code}`);
        if (p.system === null) conditions.push(sql`${t}.system IS NULL`);
        else if (p.system !== undefined) conditions.push(sql`${t}.system = ${p.system}`);
        return all(conditions);
      }
      case 'token-text':
        return sql`(starts_with(${t}.text, ${p.text}) OR strpos(${t}.text, ${` ${p.text}`}) > 0)`;
      case 'token-of-type':
        return sql`(${t}.type_system = ${p.typeSystem} AND ${t}.type_code = ${p.typeCode} AND ${t}.value = ${p.value})`;
      case 'date':
        if (table === 'last_updated') return dateCondition(sql`${t}.last_updated`, sql`${t}.last_updated`, p);
        return dateCondition(sql`${t}.start`, sql`${t}."end"`, p);
      case 'number': {
        const conditions = [numberCondition(sql`${t}.low`, sql`${t}.high`, p)];
        if (p.system !== undefined) conditions.push(sql`${t}.system = ${p.system}`);
        if (p.unit !== undefined) conditions.push(p.system !== undefined ? sql`${t}.unit_code = ${p.unit}` : sql`(${t}.unit_code = ${p.unit} OR ${t}.unit = ${p.unit})`);
        return all(conditions);
      }
      case 'reference':
        return this.referenceCondition(p, t);
      case 'uri':
        if (p.mode === 'eq') return sql`${t}.value = ${p.value}`;
        // :below follows path segments: http://a/fhir is above http://a/fhir/ValueSet/1, not above http://a/fhirx.
        if (p.mode === 'below') return sql`(${t}.value = ${p.value} OR ${startsWith(sql`${t}.value`, p.value.endsWith('/') ? p.value : `${p.value}/`)})`;
        return sql`${t}.value IN (${sql.join(
          uriAncestors(p.value).map((u) => sql`${u}`),
          sql`, `,
        )})`;
      case 'id':
        return sql`${t}.id = ${p.id}`;
    }
  }

  private referenceCondition(p: Extract<Predicate, { type: 'reference' }>, t: SQL): SQL {
    if (p.url !== undefined) {
      // Absolute URLs match as written; those shaped …/Type/id also carry a target, which the index finds.
      const target = referenceTarget(p.url);
      if (!target) return sql`(${t}.target_id IS NULL AND ${t}.reference = ${p.url})`;
      return sql`(${t}.reference = ${p.url} AND ((${t}.target_id = ${target.id} AND ${t}.target_type = ${target.type}) OR ${t}.target_id IS NULL))`;
    }
    const type = p.targetType === undefined ? sql`` : sql` AND ${t}.target_type = ${p.targetType}`;
    return sql`(${t}.target_id = ${p.id as string}${type} AND ${this.local(t)})`;
  }
}

/** True when the filter's ids come from the resource's own index rows, which exist only while it is not deleted. */
function selectsOwnRows(filter: Filter): boolean {
  return (filter.kind === 'index' && !filter.negate) || filter.kind === 'composite' || filter.kind === 'chain';
}

/** The rows of a source: its codes, and its target type for narrowed references (`patient` = Patient subjects). */
function rowsOf(t: SQL, rows: RowSource, name: (code: string) => SQL = (code) => sql`${code}`): SQL {
  const code = rows.codes.length === 1 ? sql`${t}.code = ${name(rows.codes[0])}` : sql`${t}.code IN ${rows.codes}`;
  return rows.targetType === undefined ? code : sql`${code} AND ${t}.target_type = ${rows.targetType}`;
}

/** Rows of any of the sources (the reference parameters an `_include=Type:*` follows). */
export function rowsOfAny(t: SQL, sources: RowSource[]): SQL {
  return any(sources.map((rows) => rowsOf(t, rows)));
}

/** OR of one or more conditions. */
export function any(conditions: SQL[]): SQL {
  return conditions.length === 1 ? conditions[0] : sql`(${sql.join(conditions, sql` OR `)})`;
}

/** AND of conditions; TRUE for none. */
export function all(conditions: SQL[]): SQL {
  if (conditions.length === 0) return sql`TRUE`;
  return conditions.length === 1 ? conditions[0] : sql`(${sql.join(conditions, sql` AND `)})`;
}

/** A prefix match the text_pattern_ops index serves even in a generic plan: a range, then the exact test. */
export function startsWith(column: SQL, prefix: string): SQL {
  return sql`(${column} ~>=~ ${prefix}::text AND ${column} ~<~ ${prefix + MAX_CHAR}::text AND starts_with(${column}, ${prefix}::text))`;
}

export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** The URL and every parent path of it, for uri:above (`http://a/fhir/ValueSet/1` is below `http://a/fhir`). */
export function uriAncestors(uri: string): string[] {
  const out = [uri];
  const authority = uri.indexOf('://');
  const floor = authority < 0 ? 0 : uri.indexOf('/', authority + 3);
  for (let i = uri.lastIndexOf('/'); i > floor && floor >= 0; i = uri.lastIndexOf('/', i - 1)) out.push(uri.slice(0, i));
  if (floor > 0) out.push(uri.slice(0, floor));
  return [...new Set(out)];
}

/**
 * Date prefixes over the resource's range [rs, re] and the search value's [vs, ve]
 * (search.html#prefix): eq = contained, gt = something after ve, ge = gt or eq, sa = starts after…
 */
export function dateCondition(rs: SQL, re: SQL, p: Extract<Predicate, { type: 'date' }>): SQL {
  const vs = sql`${p.range.start}::timestamptz`;
  const ve = sql`${p.range.end}::timestamptz`;
  const eq = sql`(${rs} >= ${vs} AND ${re} <= ${ve})`;
  switch (p.prefix) {
    case 'eq':
      return eq;
    case 'ne':
      return sql`NOT ${eq}`;
    case 'gt':
      return sql`${re} > ${ve}`;
    case 'lt':
      return sql`${rs} < ${vs}`;
    case 'ge':
      return sql`(${re} > ${ve} OR ${eq})`;
    case 'le':
      return sql`(${rs} < ${vs} OR ${eq})`;
    case 'sa':
      return sql`${rs} > ${ve}`;
    case 'eb':
      return sql`${re} < ${vs}`;
    case 'ap': {
      // "Approximately": the value widened by 10% of its distance from now (search.html#prefix).
      const now = Date.now();
      const start = Date.parse(p.range.start);
      const end = Date.parse(p.range.end);
      const slack = Math.max(Math.abs(now - start), Math.abs(now - end)) * 0.1;
      const from = new Date(Math.max(FIRST_INSTANT, start - slack)).toISOString();
      const to = new Date(Math.min(LAST_INSTANT, end + slack)).toISOString();
      return sql`(${rs} <= ${to}::timestamptz AND ${re} >= ${from}::timestamptz)`;
    }
  }
}

/** Number prefixes over [low, high] (equal for a plain number; a Range may be open at either end). */
function numberCondition(low: SQL, high: SQL, p: Extract<Predicate, { type: 'number' }>): SQL {
  const v = sql`${p.value}::numeric`;
  const half = sql`${p.half}::numeric`;
  const eq = sql`(${low} >= ${v} - ${half} AND ${high} < ${v} + ${half})`;
  switch (p.prefix) {
    case 'eq':
      return eq;
    case 'ne':
      return sql`NOT coalesce(${eq}, false)`;
    case 'gt':
      return sql`(${high} > ${v} OR ${high} IS NULL)`;
    case 'lt':
      return sql`(${low} < ${v} OR ${low} IS NULL)`;
    case 'ge':
      return sql`(${high} >= ${v} OR ${high} IS NULL)`;
    case 'le':
      return sql`(${low} <= ${v} OR ${low} IS NULL)`;
    case 'sa':
      return sql`${low} > ${v}`;
    case 'eb':
      return sql`${high} < ${v}`;
    case 'ap':
      // Within 10% of the value (search.html#prefix).
      return sql`((${low} IS NULL OR ${low} <= ${v} + abs(${v}) * 0.1) AND (${high} IS NULL OR ${high} >= ${v} - abs(${v}) * 0.1))`;
  }
}

function sortColumn(table: IndexTable, descending: boolean): string {
  switch (table) {
    case 'date':
      return descending ? '"end"' : 'start';
    case 'number':
    case 'quantity':
      return descending ? 'high' : 'low';
    case 'reference':
      return 'reference';
    default:
      return 'value';
  }
}
