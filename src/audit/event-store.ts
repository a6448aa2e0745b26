import type { AuditEvent } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';
import { badRequest } from '../fhir/errors.ts';
import type { RowSource } from '../fhir/search/parameters.ts';
import type { Filter, Predicate, SearchRequest, SortRule } from '../fhir/search/request.ts';
import { estimateRows } from '../fhir/search/search.ts';
import { all, any, dateCondition, escapeLike, startsWith } from '../fhir/search/sql.ts';
import type { SeparateStore } from '../fhir/separate-store.ts';
import type { HistoryQuery, HistoryRecord, StoredResource } from '../fhir/store.ts';
import { DATE_CODE, type Key, keyDigest, predicateKeys, presenceKey } from './event-keys.ts';

/**
 * AuditEvent as the FHIR API serves it: the sealed trail. Read, vread, history and search answer
 * from audit_events (the recorded content) through audit_index (written by the sealer), so an
 * event is visible once sealed, and never changes. Every FHIR search parameter of AuditEvent is
 * answered, by equality through the index's keys (event-keys.ts), strings by prefix, :exact and
 * :contains, the date as an instant column; chains, _has, token :text and uri :below are not
 * (400), nor is sorting by anything but the date, _lastUpdated and _id.
 */
export function auditEventStore(baseUrl: string): SeparateStore {
  return {
    async readCurrent(q, id) {
      const [row] = await q.execute<EventRow>(sql`SELECT ${EVENT_COLUMNS} FROM audit_index x JOIN audit_events e ON e.seq = x.event_seq WHERE x.event_id = ${id}`);
      return row ? stored(row) : undefined;
    },
    async readHistory(q, query) {
      return (await q.execute<EventRow>(sql`SELECT ${EVENT_COLUMNS} FROM audit_index x JOIN audit_events e ON e.seq = x.event_seq
        WHERE ${historyWhere(query)} ORDER BY x.position DESC LIMIT ${query.limit}`)).map(historyRecord);
    },
    async searchPage(q, request) {
      const search = new EventSearch(request, baseUrl);
      const where = await search.narrowed(q);
      const rows = await q.execute<EventRow>(sql`SELECT ${EVENT_COLUMNS}
        FROM unnest(ARRAY(SELECT i.position FROM audit_index i WHERE ${where} ORDER BY ${search.orderBy()} LIMIT ${request.count + 1} OFFSET ${request.offset}))
          WITH ORDINALITY AS page(position, ord)
        JOIN audit_index x ON x.position = page.position
        JOIN audit_events e ON e.seq = x.event_seq
        ORDER BY page.ord`);
      return rows.map((row) => stored(row).json);
    },
    async countMatches(q, request) {
      const [{ n }] = await q.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM audit_index i WHERE ${new EventSearch(request, baseUrl).where()}`);
      return n;
    },
    estimateMatches: (q, request) => estimateRows(q, sql`SELECT 1 FROM audit_index i WHERE ${new EventSearch(request, baseUrl).where()}`),
  };
}

/**
 * The AuditEvent as served: the recorded content as version 1, last updated when it was
 * recorded (the content itself carries neither, so its hash is what was sealed).
 */
export function servedAuditEvent(event: AuditEvent, eventId: string, lastUpdated: string): AuditEvent & { id: string } {
  return { ...event, id: eventId, meta: { ...event.meta, versionId: '1', lastUpdated } };
}

/** Up to this many positions selected by a search's conditions are looked up one by one (see EventSearch.narrowed). */
const FEW_POSITIONS = 5000;
/** Dates spanning at most this long are met in the recorded index when positions are selected (see EventSearch.narrowed). */
const NARROW_WINDOW_MS = 7 * 86_400_000;

interface EventRow {
  position: number;
  event_id: string;
  content: string;
  recorded_ms: number;
}

const EVENT_COLUMNS = sql`x.position::float8 AS position, x.event_id, e.content, (extract(epoch FROM x.recorded) * 1000)::float8 AS recorded_ms`;

function stored(row: EventRow): StoredResource {
  const event = servedAuditEvent(JSON.parse(row.content) as AuditEvent, row.event_id, new Date(row.recorded_ms).toISOString());
  return { resourceType: 'AuditEvent', id: row.event_id, versionId: 1, lastUpdatedMs: row.recorded_ms, deleted: false, json: JSON.stringify(event) };
}

function historyRecord(row: EventRow): HistoryRecord {
  return { ...stored(row), seq: row.position, method: 'POST' };
}

function historyWhere(query: HistoryQuery): SQL {
  const where: SQL[] = [sql`TRUE`];
  if (query.id) where.push(sql`x.event_id = ${query.id}`);
  if (query.since) where.push(sql`x.recorded >= ${query.since}::timestamptz`);
  if (query.before) where.push(sql`x.recorded < ${query.before}::timestamptz`);
  if (query.beforeSeq !== undefined) where.push(sql`x.position < ${query.beforeSeq}`);
  return sql.join(where, sql` AND `);
}

/** A SearchRequest on AuditEvent as conditions on audit_index `i`. */
class EventSearch {
  /** Keys every match holds (filters with one alternative), tested together by one `@>`. */
  private readonly required: Key[] = [];
  /** Filters with several alternatives: a match holds one of each list's keys. */
  private readonly alternatives: Key[][] = [];
  private readonly conditions: SQL[] = [];
  /** The date filters (recorded, _lastUpdated): each a list of alternatives. */
  private readonly dates: Predicate[][] = [];

  constructor(
    private readonly request: SearchRequest,
    private readonly baseUrl: string,
  ) {
    for (const filter of request.filters) this.add(filter);
  }

  where(): SQL {
    const all = [...this.keyConditions(), ...this.conditions];
    return all.length > 0 ? sql.join(all, sql` AND `) : sql`TRUE`;
  }

  /**
   * The conditions, with the positions they select when those are few. The planner cannot tell
   * how many events hold a key (a member's, a token's: no statistic knows each of millions), so
   * with a sort and a LIMIT it may walk the recorded index backwards through most of the trail
   * looking for them. The positions are selected first, and the page is chosen among them: by
   * the keys alone, or, when the dates asked for span a few days at most, under every condition,
   * so that a busy client's key meets the day in the indexes instead of thousands of its rows
   * being fetched to count them (over a wide span the planner, misjudging a member's key as
   * common, would intersect it with millions of dated entries). Many positions leave the choice
   * to the planner, which then rightly walks the recorded index.
   */
  async narrowed(q: Queryable): Promise<SQL> {
    const keys = this.keyConditions();
    if (keys.length === 0) return this.where();
    const window = this.dateWindow();
    const conditions = window.to - window.from <= NARROW_WINDOW_MS ? this.where() : sql.join(keys, sql` AND `);
    // Materialized: planned for every row it selects, not drawn by the LIMIT into walking an index.
    const positions = await q.execute<{ position: string }>(sql`
      WITH selected AS MATERIALIZED (SELECT i.position FROM audit_index i WHERE ${conditions})
      SELECT position::text AS position FROM selected LIMIT ${FEW_POSITIONS + 1}`);
    if (positions.length > FEW_POSITIONS) return this.where();
    return sql`i.position = ANY(${sql.param(positions.map((p) => p.position))}::bigint[]) AND ${this.where()}`;
  }

  /** The instants (epoch ms) the date filters confine every match to; unbounded sides are infinite. */
  private dateWindow(): { from: number; to: number } {
    let from = -Infinity;
    let to = Infinity;
    for (const alternatives of this.dates) {
      const bounds = alternatives.map(predicateBounds);
      from = Math.max(from, Math.min(...bounds.map((b) => b.from)));
      to = Math.min(to, Math.max(...bounds.map((b) => b.to)));
    }
    return { from, to };
  }

  private keyConditions(): SQL[] {
    return [...(this.required.length > 0 ? [sql`i.keys @> ${keyArray(this.required)}`] : []), ...this.alternatives.map((keys) => sql`i.keys && ${keyArray(keys)}`)];
  }

  /** By the date (recorded), _lastUpdated (the same instant) or _id, then by sealing order; by sealing order alone when unsorted. */
  orderBy(): SQL {
    const keys = this.request.sort.map((rule) => sql`${sortColumn(rule)} ${sql.raw(rule.descending ? 'DESC' : 'ASC')}`);
    const last = this.request.sort.at(-1);
    keys.push(sql`i.position ${sql.raw(last?.descending ? 'DESC' : 'ASC')}`);
    return sql.join(keys, sql`, `);
  }

  private add(filter: Filter): void {
    switch (filter.kind) {
      case 'column':
        if (filter.predicates.every((p) => p.type !== 'id')) this.dates.push(filter.predicates);
        this.conditions.push(any(filter.predicates.map((p) => (p.type === 'id' ? sql`i.event_id = ${p.id}` : instantCondition(p)))));
        return;
      case 'index':
        return this.addIndex(filter);
      case 'missing': {
        const present = any(filter.present.map((sources) => all(sources.map((rows) => sql`i.keys && ${keyArray(presenceKeys(rows))}`))));
        this.conditions.push(filter.missing ? sql`NOT ${present}` : present);
        return;
      }
      case 'chain':
        throw badRequest('Chained search parameters are not supported on AuditEvent searches');
      case 'has':
        throw badRequest('_has is not supported on AuditEvent searches', ['_has']);
      case 'composite':
        throw badRequest('Composite search parameters are not supported on AuditEvent searches');
    }
  }

  private addIndex(filter: Extract<Filter, { kind: 'index' }>): void {
    const { rows, predicates } = filter;
    if (rows.table === 'string') {
      this.conditions.push(sql`i.position IN (SELECT s.position FROM audit_index_strings s WHERE s.code IN ${rows.codes} AND ${any(predicates.map(stringCondition))})`);
      return;
    }
    if (rows.table === 'date') {
      if (rows.codes.some((code) => code !== DATE_CODE)) throw badRequest(`AuditEvent searches by date compare AuditEvent.recorded only`);
      this.dates.push(predicates);
      this.conditions.push(any(predicates.map(instantCondition)));
      return;
    }
    const keys = predicates.flatMap((p) => {
      const found = predicateKeys(rows, p, this.baseUrl);
      if (!found) throw badRequest(`${unsupported(p)} is not supported on AuditEvent searches`);
      return found;
    });
    if (filter.negate) this.conditions.push(keys.length > 0 ? sql`NOT (i.keys && ${keyArray(keys)})` : sql`TRUE`);
    else if (keys.length === 1) this.required.push(keys[0]);
    else if (keys.length > 1) this.alternatives.push(keys);
    else this.conditions.push(sql`FALSE`);
  }
}

function keyArray(keys: Key[]): SQL {
  return sql`${sql.param([...new Set(keys)].map(keyDigest))}::uuid[]`;
}

/** The keys telling that the parameter stored as `rows` has a value (a reference parameter narrowed to a type: a reference to that type). */
function presenceKeys(rows: RowSource): Key[] {
  return rows.codes.map((code) => presenceKey(code, rows.targetType));
}

function sortColumn(rule: SortRule): SQL {
  if ('column' in rule) return rule.column === 'id' ? sql`i.event_id` : sql`i.recorded`;
  if (rule.rows.table === 'date' && rule.rows.codes.every((code) => code === DATE_CODE)) return sql`i.recorded`;
  throw badRequest('AuditEvent searches sort by date, _lastUpdated or _id only', ['_sort']);
}

/**
 * A date prefix over the single instant `recorded` (search.html#prefix, as dateCondition with
 * start = end): ge and le become one bound each, which the recorded index serves.
 */
function instantCondition(p: Predicate): SQL {
  if (p.type !== 'date') throw badRequest(`${unsupported(p)} is not supported on AuditEvent searches`);
  const at = sql`i.recorded`;
  if (p.prefix === 'ge') return sql`${at} >= ${p.range.start}::timestamptz`;
  if (p.prefix === 'le') return sql`${at} <= ${p.range.end}::timestamptz`;
  return dateCondition(at, at, p);
}

/** The instants a date predicate admits, as far as it bounds them (ne and ap: not at all). */
function predicateBounds(p: Predicate): { from: number; to: number } {
  if (p.type !== 'date') return { from: -Infinity, to: Infinity };
  // Open ends ('-infinity', 'infinity') parse as NaN.
  const [start, end] = [Date.parse(p.range.start), Date.parse(p.range.end)];
  const from = Number.isNaN(start) ? -Infinity : start;
  const to = Number.isNaN(end) ? Infinity : end;
  switch (p.prefix) {
    case 'eq':
      return { from, to };
    case 'gt':
    case 'ge':
    case 'sa':
      return { from, to: Infinity };
    case 'lt':
    case 'le':
    case 'eb':
      return { from: -Infinity, to };
    default:
      return { from: -Infinity, to: Infinity };
  }
}

function stringCondition(p: Predicate): SQL {
  if (p.type !== 'string') throw badRequest(`${unsupported(p)} is not supported on AuditEvent searches`);
  if (p.mode === 'exact') return sql`s.exact = ${p.value}`;
  if (p.mode === 'contains') return sql`s.value LIKE ${`%${escapeLike(p.value)}%`}`;
  return startsWith(sql`s.value`, p.value);
}

function unsupported(p: Predicate): string {
  switch (p.type) {
    case 'token-text':
      return 'The :text modifier';
    case 'uri':
      return 'The :below modifier';
    default:
      return `A ${p.type} comparison`;
  }
}
