import type { Resource } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import { isVisible } from '../fhir/access.ts';
import { FhirError, outcome } from '../fhir/errors.ts';
import type { NewVersion } from '../fhir/store.ts';
import { callerPolicy } from '../export/caller.ts';
import { additionalContextOf, type CompiledFilter, compileFilters, type FilterCriterion, FilterView, type Interaction, localReference, topics, topicsTriggeredBy, triggers } from './topics.ts';

/**
 * The outbox: events are appended to each matching subscription's durable log in the transaction
 * of the change that caused them, so there is no event without its change and no change without
 * its event. Numbers come from the subscription's counter row, updated in the same transaction:
 * its row lock orders concurrent writers, and a rolled-back write leaves no number used, so the
 * numbers a subscriber sees are gap-free.
 */

/** A subscription as event matching reads it. */
interface Candidate {
  id: string;
  topic: string;
  filters: CompiledFilter[];
  clientId: string;
  clientKind: 'partner' | 'internal' | 'operator';
  scopes: string[];
}

/** One event for one subscription, before its number is allocated. */
interface PendingEvent {
  subscriptionId: string;
  focusType: string | null;
  focusId: string | null;
  focusVersion: number | null;
  focusReference: string | null;
  method: string | null;
  additionalContext: string[];
}

/**
 * Transactions in which a checked Subscription write is under way (routes.ts): a Subscription
 * version written anywhere else (a transaction Bundle, a PATCH) did not go through the Backport
 * checks nor the registry, and is refused.
 */
const checkedSubscriptionWrites = new WeakSet<Queryable>();

export async function inCheckedSubscriptionWrite<T>(q: Queryable, fn: () => Promise<T>): Promise<T> {
  checkedSubscriptionWrites.add(q);
  try {
    return await fn();
  } finally {
    checkedSubscriptionWrites.delete(q);
  }
}

/**
 * Called by writeVersions (src/fhir/store.ts) in the writing transaction, after the versions are
 * stored. A write of a type no topic is triggered by costs nothing but a look-up in memory; one
 * that a topic may be triggered by costs a single-row read of the registry's version, then
 * matching in memory (activeSubscriptions), and statements only for the events it makes.
 */
export async function recordWriteEvents(q: Queryable, versions: readonly NewVersion[]): Promise<void> {
  const subscriptionsWritten = versions.filter((v) => v.resource.resourceType === 'Subscription');
  if (subscriptionsWritten.length > 0) await guardSubscriptionWrites(q, subscriptionsWritten);
  const relevant = versions.map((v) => ({ version: v, topics: topicsTriggeredBy(v.resource.resourceType) })).filter((r) => r.topics.length > 0);
  if (relevant.length === 0) return;
  const topicUrls = [...new Set(relevant.flatMap((r) => r.topics.map((t) => t.url)))];
  const candidates = await activeSubscriptions(q, topicUrls);
  if (candidates.length === 0) return;
  // %previous is read only for topics that have subscribers and a criterion.
  const subscribed = new Set(candidates.map((c) => c.topic));
  const needPrevious = relevant.filter((r) => r.topics.some((t) => subscribed.has(t.url) && t.triggers.some((trigger) => trigger.criteria)));
  const previous = await previousVersions(q, needPrevious.map((r) => r.version));
  const pending: PendingEvent[] = [];
  const visible = visibilityMemo(q);
  for (const { version, topics: triggered } of relevant) {
    const resource = version.resource;
    const before = previous.get(`${resource.resourceType}/${resource.id}`);
    const interaction: Interaction = version.deleted ? 'delete' : version.versionId > 1 ? 'update' : 'create';
    for (const topic of triggered) {
      if (!triggers(topic, interaction, resource, before)) continue;
      const context = additionalContextOf(topic, resource);
      const view = new FilterView(resource);
      for (const candidate of candidates) {
        if (candidate.topic !== topic.url || !view.matches(topic, candidate.filters)) continue;
        if (!(await visible(candidate, resource.resourceType, resource.id))) continue;
        pending.push({
          subscriptionId: candidate.id,
          focusType: resource.resourceType,
          focusId: resource.id,
          focusVersion: version.versionId,
          focusReference: null,
          method: version.method,
          additionalContext: context.map(localReference),
        });
      }
    }
  }
  await appendEvents(q, pending);
}

/** The topics code raises (config/topics/bulk-job-complete.json, sla-breach.json). */
export const BULK_JOB_COMPLETE_TOPIC = 'urn:baton:subscription-topic:bulk-job-complete';
export const SLA_BREACH_TOPIC = 'urn:baton:subscription-topic:sla-breach';

/** An event raised by code rather than by a resource write (an SLA breach, a finished export job). */
export interface CodeEvent {
  /** The topic canonical (config/topics). */
  topic: string;
  /** `Type/id` of a resource on this server, or an absolute URL for something else (an export job's status URL). */
  focus: { reference: string };
  additionalContext?: { reference: string }[];
  /** Only this client's subscriptions receive the event (an export job's owner). */
  audience?: string;
}

/**
 * Appends an event of a topic for every subscription it matches, in the caller's transaction
 * (pass the transaction that makes the change the event reports). A focus on a resource is
 * filtered by each subscriber's access, as resource-triggered events are.
 */
export async function publishEvent(q: Queryable, event: CodeEvent): Promise<number> {
  const topic = topics().get(event.topic);
  if (!topic) throw new Error(`publishEvent: no topic ${event.topic} in config/topics`);
  const candidates = (await activeSubscriptions(q, [topic.url])).filter((c) => event.audience === undefined || c.clientId === event.audience);
  if (candidates.length === 0) return 0;
  const reference = localReference(event.focus.reference);
  const resourceFocus = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(reference);
  const focusResource = resourceFocus ? (await q.execute<{ content: string; version: number }>(
    sql`SELECT content, version_id AS version FROM resources WHERE resource_type = ${resourceFocus[1]} AND id = ${resourceFocus[2]}`,
  ))[0] : undefined;
  const view = focusResource ? new FilterView(JSON.parse(focusResource.content) as Resource) : undefined;
  const visible = visibilityMemo(q);
  const pending: PendingEvent[] = [];
  for (const candidate of candidates) {
    if (resourceFocus) {
      if (view && !view.matches(topic, candidate.filters)) continue;
      if (!(await visible(candidate, resourceFocus[1], resourceFocus[2]))) continue;
    }
    pending.push({
      subscriptionId: candidate.id,
      focusType: resourceFocus?.[1] ?? null,
      focusId: resourceFocus?.[2] ?? null,
      focusVersion: focusResource?.version ?? null,
      focusReference: resourceFocus ? null : event.focus.reference,
      method: null,
      additionalContext: (event.additionalContext ?? []).map((c) => localReference(c.reference)),
    });
  }
  await appendEvents(q, pending);
  return pending.length;
}

/** A process's copy of a database's registry at one version: the subscriptions events are recorded for, by topic. */
interface RegistryCopy {
  version: number;
  byTopic: Map<string, Candidate[]>;
}

const registryCopies = new Map<string, RegistryCopy>();

/**
 * The subscriptions of the topics that collect events (requested and error ones too: an error
 * one gets them once re-activated). One single-row read per write while the registry's version
 * holds; when it moved, the registry is read again, with its version, in one statement.
 */
async function activeSubscriptions(q: Queryable, topicUrls: string[]): Promise<Candidate[]> {
  const [current] = await q.execute<{ epoch: string; version: number }>(sql`SELECT epoch, version::float8 AS version FROM subscription_registry_version`);
  if (!current) return [];
  let copy = registryCopies.get(current.epoch);
  if (copy?.version !== current.version) {
    const rows = await q.execute<Omit<Candidate, 'filters'> & { version: number; filters: FilterCriterion[] | string }>(sql`SELECT v.version::float8 AS version, s.id, s.topic, s.filters, s.client_id AS "clientId", s.client_kind AS "clientKind", s.scopes
      FROM subscription_registry_version v LEFT JOIN subscriptions s ON s.status <> 'off' AND (s.ends IS NULL OR s.ends > now())`);
    const byTopic = new Map<string, Candidate[]>();
    for (const { version: _version, ...row } of rows) {
      if (row.id === null) continue;
      const topic = topics().get(row.topic);
      if (!topic) continue;
      const filters = compileFilters(topic, typeof row.filters === 'string' ? (JSON.parse(row.filters) as FilterCriterion[]) : row.filters);
      const list = byTopic.get(row.topic) ?? [];
      list.push({ ...row, filters });
      byTopic.set(row.topic, list);
    }
    copy = { version: rows[0]?.version ?? current.version, byTopic };
    registryCopies.set(current.epoch, copy);
  }
  const byTopic = copy.byTopic;
  return topicUrls.flatMap((url) => byTopic.get(url) ?? []);
}

/** Called in the transaction of every change to the registry (a subscription created, changed, switched off). */
export async function bumpRegistryVersion(q: Queryable): Promise<void> {
  await q.execute(sql`INSERT INTO subscription_registry_version (singleton) VALUES (true)
    ON CONFLICT (singleton) DO UPDATE SET version = subscription_registry_version.version + 1`);
}

/** The version before each written one (for %previous), in one query; absent for creations. */
async function previousVersions(q: Queryable, versions: NewVersion[]): Promise<Map<string, Resource>> {
  const earlier = versions.filter((v) => v.versionId > 1);
  const found = new Map<string, Resource>();
  if (earlier.length === 0) return found;
  const keys = sql.join(
    earlier.map((v) => sql`(${v.resource.resourceType}, ${v.resource.id}, ${v.versionId - 1})`),
    sql`, `,
  );
  const rows = await q.execute<{ content: string; deleted: boolean }>(
    sql`SELECT content, deleted FROM resource_history WHERE (resource_type, id, version_id) IN (${keys})`,
  );
  for (const row of rows) {
    if (row.deleted) continue;
    const resource = JSON.parse(row.content) as Resource;
    found.set(`${resource.resourceType}/${resource.id}`, resource);
  }
  return found;
}

/**
 * Per-partner isolation: an event reaches a subscriber only about a resource its owner may read.
 * Writes carry no base URL, so the policy counts only relative references as local: stricter,
 * never wider, than the owner's requests (Baton stores references relative). Answers are kept
 * for the write at hand, so a client's several subscriptions cost one check per resource.
 */
function visibilityMemo(q: Queryable): (candidate: Candidate, resourceType: string, id: string) => Promise<boolean> {
  const answers = new Map<string, Promise<boolean>>();
  return (candidate, resourceType, id) => {
    const key = JSON.stringify([candidate.clientId, candidate.clientKind, candidate.scopes, resourceType, id]);
    let answer = answers.get(key);
    if (!answer) {
      const policy = callerPolicy({ clientId: candidate.clientId, kind: candidate.clientKind, scopes: candidate.scopes }, '');
      answer = policy.mayRead(resourceType) ? isVisible(q, policy, resourceType, id) : Promise.resolve(false);
      answers.set(key, answer);
    }
    return answer;
  };
}

/** Numbers the events per subscription (gap-free, in order) and appends them, in two statements. */
async function appendEvents(q: Queryable, events: PendingEvent[]): Promise<void> {
  if (events.length === 0) return;
  const ids = [...new Set(events.map((e) => e.subscriptionId))].sort();
  // Locked in id order, so that two writers matching the same subscriptions cannot deadlock.
  const counters = await q.execute<{ id: string; count: number }>(sql`SELECT subscription_id AS id, event_count::float8 AS count
    FROM subscription_event_counters WHERE subscription_id IN ${ids} ORDER BY subscription_id FOR UPDATE`);
  const next = new Map(counters.map((c) => [c.id, c.count]));
  const columns: (string | null)[][] = [[], [], [], [], [], [], [], []];
  for (const event of events) {
    const number = (next.get(event.subscriptionId) ?? 0) + 1;
    next.set(event.subscriptionId, number);
    const values = [event.subscriptionId, String(number), event.focusType, event.focusId, event.focusVersion === null ? null : String(event.focusVersion), event.focusReference, event.method, JSON.stringify(event.additionalContext)];
    values.forEach((value, i) => columns[i].push(value));
  }
  const [s, n, t, i, v, r, m, c] = columns.map((column) => sql`${sql.param(column)}::text[]`);
  const totals = [...next.entries()];
  await q.execute(sql`WITH bumped AS (
      UPDATE subscription_event_counters c SET event_count = t.count::bigint
      FROM unnest(${sql.param(totals.map(([id]) => id))}::text[], ${sql.param(totals.map(([, count]) => String(count)))}::text[]) AS t(id, count)
      WHERE c.subscription_id = t.id
    )
    INSERT INTO subscription_events (subscription_id, event_number, focus_type, focus_id, focus_version, focus_reference, method, additional_context)
    SELECT s, n::bigint, t, i, v::integer, r, m, c::jsonb FROM unnest(${s}, ${n}, ${t}, ${i}, ${v}, ${r}, ${m}, ${c}) AS e(s, n, t, i, v, r, m, c)`);
}

/**
 * Subscription.end: subscriptions whose end has come are switched off (registry and a new
 * Subscription version with status off); returns how many. Until then the registry copy leaves
 * them out of new events as soon as it is read again.
 */
export async function endSubscriptions(db: Database, writeStatus: (q: Queryable, id: string) => Promise<void>): Promise<number> {
  const due = await db.execute(sql`SELECT 1 FROM subscriptions WHERE status <> 'off' AND ends <= now() LIMIT 1`);
  if (due.length === 0) return 0;
  return db.transaction(async (q) => {
    const ended = await q.execute<{ id: string }>(sql`UPDATE subscriptions SET status = 'off', lease_owner = NULL, lease_until = NULL WHERE status <> 'off' AND ends <= now() RETURNING id`);
    for (const { id } of ended) await writeStatus(q, id);
    if (ended.length > 0) await bumpRegistryVersion(q);
    return ended.length;
  });
}

/** A Subscription version is written only through the checked routes; its deletion switches delivery off. */
async function guardSubscriptionWrites(q: Queryable, versions: NewVersion[]): Promise<void> {
  const unchecked = versions.filter((v) => !v.deleted);
  if (unchecked.length > 0 && !checkedSubscriptionWrites.has(q)) {
    throw new FhirError(
      422,
      outcome('error', 'business-rule', 'A Subscription is created and changed with POST /Subscription and PUT /Subscription/{id}, where the Backport IG rules are checked; not in a Bundle nor with PATCH'),
    );
  }
  const deleted = versions.filter((v) => v.deleted).map((v) => v.resource.id);
  if (deleted.length > 0) {
    await q.execute(sql`UPDATE subscriptions SET status = 'off' WHERE id IN ${deleted}`);
    await bumpRegistryVersion(q);
  }
}
