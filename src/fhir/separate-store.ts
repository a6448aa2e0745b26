import type { Queryable } from '../db/connection.ts';
import type { SearchRequest } from './search/request.ts';
import type { HistoryQuery, HistoryRecord, StoredResource } from './store.ts';

/**
 * A resource type kept outside `resources` and its search index: AuditEvent, whose store is the
 * sealed audit trail (src/audit/event-store.ts). Read, vread, history and search of the type are
 * answered by it; its resources have one version and are never written through the API.
 */
export interface SeparateStore {
  readCurrent(q: Queryable, id: string): Promise<StoredResource | undefined>;
  /** As store.readHistory for one type; `seq` is the store's own order. */
  readHistory(q: Queryable, query: HistoryQuery): Promise<HistoryRecord[]>;
  /** The JSON of the request's page of matches, plus one more when there is a next page. A filter the store cannot answer is a 400. */
  searchPage(q: Queryable, request: SearchRequest): Promise<string[]>;
  /** How many resources match (_total=accurate, _summary=count). */
  countMatches(q: Queryable, request: SearchRequest): Promise<number>;
  /** How many match, counted up to a bound and estimated beyond it (_total=estimate). */
  estimateMatches(q: Queryable, request: SearchRequest): Promise<number>;
}

export type SeparateStores = Readonly<Partial<Record<string, SeparateStore>>>;
