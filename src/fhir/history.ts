import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import { isVisible } from './access.ts';
import { badRequest, FhirError, outcome } from './errors.ts';
import { assertId, assertResourceType, type FhirContext } from './interactions.ts';
import { type HistoryRecord, readCurrent, readHistory } from './store.ts';
import { notFound } from './errors.ts';

/** history-instance, history-type and history-whole-system (http.html#history). */
export interface HistoryRequest {
  resourceType?: string;
  id?: string;
  params: URLSearchParams;
  /** The URL the client called, for the self and next links. */
  url: URL;
}

const DEFAULT_COUNT = 20;
const MAX_COUNT = 1000;

export async function history(ctx: FhirContext, request: HistoryRequest): Promise<Bundle> {
  const { resourceType, id, params } = request;
  if (resourceType) assertResourceType(resourceType);
  // SMART: instance history is part of read, type and system history of search.
  ctx.access.authorize(id ? 'r' : 's', resourceType ?? '*');
  const separate = resourceType ? ctx.separateStores?.[resourceType] : undefined;
  let visible: SQL | undefined;
  if (id) {
    assertId(id);
    const type = resourceType as string;
    const current = separate ? await separate.readCurrent(ctx.q, id) : await readCurrent(ctx.q, type, id);
    if (!current || !(await isVisible(ctx.q, ctx.access, type, id, separate))) throw notFound(`${resourceType}/${id} is not known`);
  } else if (resourceType) {
    const filter = ctx.access.visibility(resourceType, sql.raw('r'), 's');
    if (filter && separate) throw new FhirError(403, outcome('error', 'forbidden', `The history of ${resourceType} is available only to clients that may search all of it`));
    if (filter) visible = sql`(resource_type, id) IN (SELECT r.resource_type, r.id FROM resources r WHERE r.resource_type = ${resourceType} AND ${filter})`;
  } else if (ctx.access.filtersRows) {
    throw new FhirError(403, outcome('error', 'forbidden', 'Whole-system history is not available to this client; ask for the history of a resource type'));
  }
  // Whole-system history is the FHIR store's: a separately stored type (the audit trail) has a type history of its own.
  const count = parseCount(params.get('_count'));
  const since = parseInstant(params.get('_since'), '_since');
  const at = parseInstant(params.get('_at'), '_at');
  const cursor = params.get('_cursor');
  if (cursor !== null && !/^[1-9][0-9]{0,15}$/.test(cursor)) throw badRequest('_cursor is not a cursor this server issued', ['_cursor']);
  const query = { resourceType, id, since, before: at, beforeSeq: cursor === null ? undefined : Number(cursor), limit: count + 1, visible };
  const records = separate ? await separate.readHistory(ctx.q, query) : await readHistory(ctx.q, query);
  const page = records.slice(0, count);
  ctx.audit.returned(page.map((r) => ({ resourceType: r.resourceType, id: r.id, versionId: r.versionId, content: r.json })));
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'history',
    link: [{ relation: 'self', url: request.url.toString() }],
    entry: page.map((r) => historyEntry(ctx.baseUrl, r)),
  };
  if (records.length > count) {
    const next = new URL(request.url);
    next.searchParams.set('_cursor', String(page[page.length - 1].seq));
    bundle.link?.push({ relation: 'next', url: next.toString() });
  }
  return bundle;
}

function historyEntry(baseUrl: string, record: HistoryRecord): BundleEntry {
  const instance = `${record.resourceType}/${record.id}`;
  const entry: BundleEntry = {
    fullUrl: `${baseUrl}/${instance}`,
    request: { method: record.method, url: record.method === 'POST' ? record.resourceType : instance },
    response: {
      status: record.deleted ? '204 No Content' : record.versionId === 1 ? '201 Created' : '200 OK',
      etag: `W/"${record.versionId}"`,
      lastModified: new Date(record.lastUpdatedMs).toISOString(),
    },
  };
  if (!record.deleted) entry.resource = JSON.parse(record.json) as Resource;
  return entry;
}

export function parseCount(value: string | null, fallback = DEFAULT_COUNT): number {
  if (value === null) return fallback;
  if (!/^[0-9]+$/.test(value)) throw badRequest(`_count must be a non-negative integer; got "${value.slice(0, 20)}"`, ['_count']);
  return Math.min(Number(value), MAX_COUNT);
}

const INSTANT = /^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/;

/** An instant-like search value (`2024`, `2024-05-01`, `2024-05-01T10:00:00Z`) → ISO instant. */
export function parseInstant(value: string | null, name: string): string | undefined {
  if (value === null) return undefined;
  const ms = INSTANT.test(value) ? Date.parse(value.length === 4 ? `${value}-01-01` : value.length === 7 ? `${value}-01` : value) : NaN;
  if (Number.isNaN(ms)) throw badRequest(`${name} must be a FHIR instant such as 2024-05-01T10:00:00Z; got "${value.slice(0, 40)}"`, [name]);
  return new Date(ms).toISOString();
}
