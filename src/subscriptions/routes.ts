import { randomUUID } from 'node:crypto';
import type { Bundle } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { SubscriptionConfig } from '../config.ts';
import type { Queryable } from '../db/connection.ts';
import { newId } from '../db/ids.ts';
import { exportCaller } from '../export/caller.ts';
import { ScopedAccess } from '../auth/access-policy.ts';
import type { AccessPolicy } from '../fhir/access.ts';
import { badRequest, FhirError, notFound, outcome } from '../fhir/errors.ts';
import { history } from '../fhir/history.ts';
import { preferredHandling } from '../fhir/http/negotiation.ts';
import { searchResources } from '../fhir/search/search.ts';
import type { OperationRoute } from '../fhir/http/routes.ts';
import { interactionResponse } from '../fhir/http/respond.ts';
import * as interactions from '../fhir/interactions.ts';
import { type ClaimedSubscription, readEvents } from './delivery.ts';
import { bumpRegistryVersion, inCheckedSubscriptionWrite } from './events.ts';
import { notificationBundle, subscriptionStatus, type StatusView } from './notification.ts';
import { type BackportSubscription, checkSubscription, type PayloadContent, type SubscriptionSettings } from './subscription.ts';

/** Events one $events call returns at most. */
const MAX_EVENTS_PER_QUERY = 1000;

interface RegistryRow {
  id: string;
  clientId: string;
  clientKind: ClaimedSubscription['clientKind'];
  scopes: string[];
  topic: string;
  status: string;
  content: PayloadContent;
  eventCount: number;
  resourceError: string | null;
}

/**
 * The Subscription endpoints of the Backport IG: create and update go through the Backport checks
 * and the registry (the stored resource always starts as `requested`; the delivery worker's
 * handshake makes it active or error), $status and $events read the registry and the event log.
 * A partner sees and changes only its own subscriptions.
 */
export function subscriptionRoutes(config: Pick<SubscriptionConfig, 'allowLoopbackHttp' | 'timeoutSeconds' | 'maxCount'>): OperationRoute[] {
  const policy = { allowLoopbackHttp: config.allowLoopbackHttp, maxTimeoutSeconds: config.timeoutSeconds, defaultMaxCount: config.maxCount };
  const representation = (headers: Headers) => ({ pretty: false, preferReturn: /return=minimal/.test(headers.get('prefer') ?? '') ? ('minimal' as const) : ('representation' as const) });

  const write = async (ctx: interactions.FhirContext, body: unknown, id: string | undefined) => {
    ctx.access.authorize(id ? 'u' : 'c', 'Subscription');
    const resource = checkedBody(body);
    const settings = checkSubscription(resource, ctx.access, policy);
    const owner = exportCaller(ctx.access);
    const stored = { ...resource, status: settings.off ? ('off' as const) : ('requested' as const) };
    delete stored.error;
    if (settings.ends === undefined) delete stored.end;
    return interactions.auditedTransaction(ctx, async (q) => {
      const scoped = { ...ctx, q, inTransaction: true };
      const result = await inCheckedSubscriptionWrite(q, async () => {
        if (!id) return interactions.create(scoped, 'Subscription', stored, undefined, { id: newId() });
        const existing = await registryRow(q, id);
        if (existing) assertOwner(ctx.access, existing);
        return interactions.update(scoped, 'Subscription', id, stored);
      });
      await register(q, result.id as string, owner, settings);
      return result;
    });
  };

  return [
    { method: 'POST', path: '/Subscription', handle: async (ctx, { body, headers }) => interactionResponse(await write(ctx, body, undefined), representation(headers), true) },
    {
      method: 'GET',
      path: '/Subscription/$status',
      handle: async (ctx, { params }) => {
        ctx.access.authorize('r', 'Subscription');
        const ids = params.getAll('id').flatMap((v) => v.split(',')).filter(Boolean);
        const statuses = params.getAll('status').flatMap((v) => v.split(',')).filter(Boolean);
        const rows = (await registryRows(ctx.q, ids)).filter((row) => mayAccess(ctx.access, row) && (statuses.length === 0 || statuses.includes(row.status)));
        return searchset(rows.map((row) => subscriptionStatus(ctx.baseUrl, statusView(row), 'query-status', [], row.content)));
      },
    },
    {
      method: 'GET',
      path: '/Subscription/:id/$status',
      handle: async (ctx, { pathParams }) => {
        const row = await ownedRow(ctx, pathParams.id);
        return searchset([subscriptionStatus(ctx.baseUrl, statusView(row), 'query-status', [], row.content)]);
      },
    },
    {
      method: 'GET',
      path: '/Subscription/:id/$events',
      handle: async (ctx, { pathParams, params }) => {
        const row = await ownedRow(ctx, pathParams.id);
        const since = eventNumber(params.get('eventsSinceNumber'), 'eventsSinceNumber') ?? Math.max(1, row.eventCount - MAX_EVENTS_PER_QUERY + 1);
        const until = Math.min(eventNumber(params.get('eventsUntilNumber'), 'eventsUntilNumber') ?? row.eventCount, since + MAX_EVENTS_PER_QUERY - 1);
        const content = (params.get('content') as PayloadContent | null) ?? row.content;
        if (!['empty', 'id-only', 'full-resource'].includes(content)) throw badRequest('content must be empty, id-only or full-resource', ['content']);
        // A query cannot ask for more than the subscription's own payload level allows.
        const level = LEVELS.indexOf(content) <= LEVELS.indexOf(row.content) ? content : row.content;
        const events = until >= since ? await readEvents(ctx.q, ctx.baseUrl, { ...row, content: level }, since - 1, until) : [];
        return notificationBundle(ctx.baseUrl, statusView(row), 'query-event', events, level);
      },
    },
    // A partner's searches and histories reach its own subscriptions only (their channel headers carry its secrets).
    {
      method: 'GET',
      path: '/Subscription',
      handle: async (ctx, { params, headers }) => {
        const scoped = new URLSearchParams(params);
        const partner = partnerOf(ctx.access);
        // An _id added to the client's own: repeated parameters are AND-ed, so this only narrows.
        if (partner) scoped.append('_id', (await ownIds(ctx.q, partner)).join(',') || randomUUID());
        return searchResources(ctx, 'Subscription', scoped, new URL(`${ctx.baseUrl}/Subscription?${params.toString()}`), preferredHandling(headers.get('prefer') ?? undefined) === 'strict');
      },
    },
    {
      method: 'GET',
      path: '/Subscription/_history',
      handle: async (ctx, { params }) => {
        if (partnerOf(ctx.access)) throw new FhirError(403, outcome('error', 'forbidden', "A partner reads its own subscriptions' history at /Subscription/{id}/_history"));
        return history(ctx, { resourceType: 'Subscription', params, url: new URL(`${ctx.baseUrl}/Subscription/_history?${params.toString()}`) });
      },
    },
    {
      method: 'GET',
      path: '/Subscription/:id/_history',
      handle: async (ctx, { pathParams, params }) => {
        await ownedRowIfRegistered(ctx, pathParams.id);
        return history(ctx, { resourceType: 'Subscription', id: pathParams.id, params, url: new URL(`${ctx.baseUrl}/Subscription/${pathParams.id}/_history?${params.toString()}`) });
      },
    },
    {
      method: 'GET',
      path: '/Subscription/:id/_history/:vid',
      handle: async (ctx, { pathParams, headers }) => {
        await ownedRowIfRegistered(ctx, pathParams.id);
        return interactionResponse(await interactions.vread(ctx, 'Subscription', pathParams.id, pathParams.vid), representation(headers), false);
      },
    },
    {
      method: 'GET',
      path: '/Subscription/:id',
      handle: async (ctx, { pathParams, headers }) => {
        await ownedRowIfRegistered(ctx, pathParams.id);
        return interactionResponse(await interactions.read(ctx, 'Subscription', pathParams.id), representation(headers), false);
      },
    },
    { method: 'PUT', path: '/Subscription/:id', handle: async (ctx, { body, pathParams, headers }) => interactionResponse(await write(ctx, body, pathParams.id), representation(headers), true) },
    {
      method: 'DELETE',
      path: '/Subscription/:id',
      handle: async (ctx, { pathParams, headers }) => {
        await ownedRowIfRegistered(ctx, pathParams.id);
        return interactionResponse(await interactions.remove(ctx, 'Subscription', pathParams.id), representation(headers), true);
      },
    },
  ];
}

const LEVELS: readonly PayloadContent[] = ['empty', 'id-only', 'full-resource'];

function checkedBody(body: unknown): BackportSubscription {
  if (typeof body !== 'object' || body === null || (body as { resourceType?: unknown }).resourceType !== 'Subscription') throw badRequest('The body must be a Subscription resource', ['resourceType']);
  return body as BackportSubscription;
}

function eventNumber(text: string | null, name: string): number | undefined {
  if (text === null) return undefined;
  if (!/^[0-9]{1,15}$/.test(text)) throw badRequest(`${name} must be a non-negative integer`, [name]);
  return Number(text);
}

/** Inserts or replaces the registry row; a changed subscription is handshaken again and then delivered from where it was. */
async function register(q: Queryable, id: string, owner: { clientId: string; kind: string; scopes: string[] }, s: SubscriptionSettings): Promise<void> {
  const status = s.off ? 'off' : 'requested';
  const filters = JSON.stringify(s.filters);
  const headers = JSON.stringify(s.headers);
  await q.execute(sql`INSERT INTO subscriptions (id, client_id, client_kind, scopes, topic, filters, status, endpoint, headers, content, content_type, heartbeat_seconds, timeout_seconds, max_count, ends)
    VALUES (${id}, ${owner.clientId}, ${owner.kind}, ${sql.param(owner.scopes)}::text[], ${s.topic.url}, ${filters}::jsonb, ${status}, ${s.endpoint}, ${headers}::jsonb, ${s.content}, ${s.contentType},
      ${s.heartbeatSeconds ?? null}, ${s.timeoutSeconds}, ${s.maxCount}, ${s.ends ?? null}::timestamptz)
    ON CONFLICT (id) DO UPDATE SET topic = excluded.topic, filters = excluded.filters, status = excluded.status, endpoint = excluded.endpoint, headers = excluded.headers,
      content = excluded.content, content_type = excluded.content_type, heartbeat_seconds = excluded.heartbeat_seconds, timeout_seconds = excluded.timeout_seconds,
      max_count = excluded.max_count, ends = excluded.ends, scopes = excluded.scopes, attempts = 0, failing_since = NULL, next_attempt_at = now(), next_heartbeat_at = NULL`);
  await q.execute(sql`INSERT INTO subscription_event_counters (subscription_id) VALUES (${id}) ON CONFLICT DO NOTHING`);
  await bumpRegistryVersion(q);
}

const ROW = sql`s.id, s.client_id AS "clientId", s.client_kind AS "clientKind", s.scopes, s.topic, s.status, s.content, c.event_count::float8 AS "eventCount",
  (SELECT r.content::jsonb ->> 'error' FROM resources r WHERE r.resource_type = 'Subscription' AND r.id = s.id) AS "resourceError"`;

async function registryRow(q: Queryable, id: string): Promise<RegistryRow | undefined> {
  const rows = await q.execute<RegistryRow>(sql`SELECT ${ROW} FROM subscriptions s JOIN subscription_event_counters c ON c.subscription_id = s.id WHERE s.id = ${id}`);
  return rows[0];
}

async function registryRows(q: Queryable, ids: string[]): Promise<RegistryRow[]> {
  const only = ids.length > 0 ? sql`WHERE s.id IN ${ids}` : sql``;
  return q.execute<RegistryRow>(sql`SELECT ${ROW} FROM subscriptions s JOIN subscription_event_counters c ON c.subscription_id = s.id ${only} ORDER BY s.created, s.id LIMIT 1000`);
}

/** The client id of a partner (isolated) caller; undefined for Baton's own clients and operators, who reach every subscription. */
function partnerOf(access: AccessPolicy): string | undefined {
  return access instanceof ScopedAccess && access.isolated ? access.principal.clientId : undefined;
}

/** A partner reaches only the subscriptions it created. */
function mayAccess(access: AccessPolicy, row: RegistryRow): boolean {
  const partner = partnerOf(access);
  return partner === undefined || partner === row.clientId;
}

async function ownIds(q: Queryable, clientId: string): Promise<string[]> {
  return (await q.execute<{ id: string }>(sql`SELECT id FROM subscriptions WHERE client_id = ${clientId} ORDER BY id LIMIT 1000`)).map((row) => row.id);
}

function assertOwner(access: AccessPolicy, row: RegistryRow): void {
  // Not found rather than forbidden: another partner's subscription does not show that it exists.
  if (!mayAccess(access, row)) throw notFound(`Subscription/${row.id} is not known`);
}

async function ownedRow(ctx: interactions.FhirContext, id: string): Promise<RegistryRow> {
  ctx.access.authorize('r', 'Subscription');
  interactions.assertId(id);
  const row = await registryRow(ctx.q, id);
  if (!row) throw notFound(`Subscription/${id} is not known`);
  assertOwner(ctx.access, row);
  return row;
}

async function ownedRowIfRegistered(ctx: interactions.FhirContext, id: string): Promise<void> {
  interactions.assertId(id);
  const row = await registryRow(ctx.q, id);
  if (row) assertOwner(ctx.access, row);
}

function statusView(row: RegistryRow): StatusView {
  return { id: row.id, topic: row.topic, status: row.status, eventsSinceStart: row.eventCount, ...(row.status === 'error' && row.resourceError ? { error: row.resourceError } : {}) };
}

function searchset(statuses: ReturnType<typeof subscriptionStatus>[]): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: statuses.length,
    timestamp: new Date().toISOString(),
    entry: statuses.map((resource) => ({ fullUrl: `urn:uuid:${resource.id}`, resource, search: { mode: 'match' } })),
  };
}
