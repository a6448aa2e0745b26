import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Resource, Subscription } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { CompactSign } from 'jose';
import { Counter, Histogram, type Registry } from 'prom-client';
import { runInBackground } from '../background.ts';
import type { AuditCaller } from '../audit/record.ts';
import { serverAudit } from '../audit/trail.ts';
import { toAuditEvent } from '../audit/balp.ts';
import { insertAuditEvents } from '../audit/writer.ts';
import type { SigningKeyStore } from '../auth/signing-keys.ts';
import type { SubscriptionConfig } from '../config.ts';
import type { Database, Queryable } from '../db/connection.ts';
import { newId } from '../db/ids.ts';
import { callerPolicy } from '../export/caller.ts';
import { isVisible } from '../fhir/access.ts';
import { readCurrent, writeVersions } from '../fhir/store.ts';
import type { Logger } from '../logger.ts';
import { endSubscriptions, inCheckedSubscriptionWrite } from './events.ts';
import { type LoggedEvent, notificationBundle, type NotificationType, type StatusView } from './notification.ts';
import type { PayloadContent } from './subscription.ts';

/** The header carrying a notification's signature: a JWS with detached payload (RFC 7515 appendix F) over the body. */
export const SIGNATURE_HEADER = 'X-Baton-Signature';

/** A subscription as the worker claims it. */
export interface ClaimedSubscription {
  id: string;
  clientId: string;
  clientKind: 'partner' | 'internal' | 'operator';
  scopes: string[];
  topic: string;
  status: 'requested' | 'active' | 'error';
  endpoint: string;
  headers: [string, string][];
  content: PayloadContent;
  contentType: string;
  heartbeatSeconds: number | null;
  timeoutSeconds: number;
  maxCount: number;
  deliveredCount: number;
  eventCount: number;
  attempts: number;
  /** Seconds since the first of the failures in a row, if failing. */
  failingSeconds: number | null;
  /** Whether a handshake or events are due (else the claim is for a heartbeat). */
  attemptDue: boolean;
}

export interface SubscriptionMetrics {
  attempts: Counter<'type' | 'outcome'>;
  duration: Histogram<'type'>;
  /** Commit of the event to the 2xx of its notification. */
  latency: Histogram;
}

const registered = new WeakMap<Registry, SubscriptionMetrics>();

/** The delivery metrics, registered once in a registry (the app's, which /metrics serves). */
export function subscriptionMetrics(registry: Registry): SubscriptionMetrics {
  const existing = registered.get(registry);
  if (existing) return existing;
  const metrics: SubscriptionMetrics = {
    attempts: new Counter({
      name: 'baton_subscription_delivery_attempts_total',
      help: 'Subscription notification attempts by type (handshake, heartbeat, event-notification) and outcome (ok, http-error, timeout, network-error)',
      labelNames: ['type', 'outcome'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'baton_subscription_delivery_seconds',
      help: 'Time of one notification attempt, request to response',
      labelNames: ['type'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'baton_subscription_event_latency_seconds',
      help: 'From the event (its change committed) to the subscriber acknowledging its notification',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600],
      registers: [registry],
    }),
  };
  registered.set(registry, metrics);
  return metrics;
}

export interface DeliveryDeps {
  db: Database;
  baseUrl: string;
  config: SubscriptionConfig;
  signingKeys: SigningKeyStore;
  metrics: SubscriptionMetrics;
  logger?: Logger;
}

type AttemptOutcome = { ok: true } | { ok: false; outcome: 'http-error' | 'timeout' | 'network-error'; description: string; status: number };

/**
 * Delivers notifications. Every Baton process may run one (server.ts); they share the work
 * through the database: a subscription is claimed with a lease (FOR UPDATE SKIP LOCKED), so one
 * worker at a time delivers it, in event order, from the last number its endpoint acknowledged
 * (at-least-once: a worker that dies mid-delivery leaves the batch to be sent again). Claimed
 * subscriptions are delivered concurrently, each attempt with its own timeout, so one slow
 * endpoint holds one slot, never the others. A failed attempt is retried with exponential
 * backoff and jitter until the retry budget is spent; then the subscription goes to error.
 */
export class SubscriptionDeliverer {
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly deps: DeliveryDeps) {}

  /** Claims what is due, up to the free delivery slots, and starts delivering it; returns how many it claimed. */
  async runPending(stopping: () => boolean = () => false): Promise<number> {
    const ended = await endSubscriptions(this.deps.db, (q, id) => writeSubscriptionStatus(q, this.deps.baseUrl, id, 'off', undefined));
    if (ended > 0) this.deps.logger?.info({ subscriptions: ended }, 'subscriptions switched off at their end');
    const free = this.deps.config.concurrency - this.inFlight.size;
    if (free <= 0 || stopping()) return 0;
    const claimed = await this.claim(free);
    for (const subscription of claimed) {
      const run = this.serve(subscription)
        .catch((error: unknown) => this.logFailure(subscription.id, error))
        .finally(() => this.inFlight.delete(subscription.id));
      this.inFlight.set(subscription.id, run);
    }
    return claimed.length;
  }

  /** Resolves once nothing is being delivered. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight.values());
  }

  /** A lease outlasts the longest attempt, so a slow endpoint never has its subscription taken over mid-attempt. */
  private get leaseSeconds(): number {
    return Math.max(this.deps.config.leaseSeconds, this.deps.config.timeoutSeconds + 10);
  }

  async claim(limit: number): Promise<ClaimedSubscription[]> {
    const { leaseSeconds } = this;
    return this.deps.db.execute<ClaimedSubscription>(sql`UPDATE subscriptions s SET lease_owner = ${this.owner}, lease_until = now() + ${leaseSeconds} * interval '1 second'
      FROM (
        SELECT d.id, c.event_count FROM subscriptions d JOIN subscription_event_counters c ON c.subscription_id = d.id
        WHERE (d.lease_until IS NULL OR d.lease_until < now())
          AND ((d.next_attempt_at <= now() AND (d.status = 'requested' OR (d.status = 'active' AND c.event_count > d.delivered_count)))
            OR (d.heartbeat_seconds IS NOT NULL AND d.next_heartbeat_at <= now() AND (d.status = 'error' OR (d.status = 'active' AND d.attempts = 0))))
        ORDER BY d.next_attempt_at LIMIT ${limit}
        FOR UPDATE OF d SKIP LOCKED
      ) due
      WHERE s.id = due.id
      RETURNING s.id, s.client_id AS "clientId", s.client_kind AS "clientKind", s.scopes, s.topic, s.status, s.endpoint, s.headers, s.content,
        s.content_type AS "contentType", s.heartbeat_seconds AS "heartbeatSeconds", s.timeout_seconds AS "timeoutSeconds", s.max_count AS "maxCount",
        s.delivered_count::float8 AS "deliveredCount", due.event_count::float8 AS "eventCount", s.attempts,
        extract(epoch FROM now() - s.failing_since)::float8 AS "failingSeconds",
        (s.next_attempt_at <= now() AND (s.status = 'requested' OR (s.status = 'active' AND due.event_count > s.delivered_count))) AS "attemptDue"`);
  }

  /** One claimed subscription: its handshake, its pending events, or its heartbeat; then the lease is let go. */
  async serve(subscription: ClaimedSubscription): Promise<void> {
    let held = true;
    try {
      if (subscription.status === 'requested') await this.handshake(subscription);
      else if (subscription.attemptDue) held = await this.deliverEvents(subscription);
      else await this.heartbeat(subscription);
    } finally {
      if (held) await this.deps.db.execute(sql`UPDATE subscriptions SET lease_owner = NULL, lease_until = NULL WHERE id = ${subscription.id} AND lease_owner = ${this.owner}`);
    }
  }

  private view(subscription: ClaimedSubscription, status: string, error?: string): StatusView {
    return { id: subscription.id, topic: subscription.topic, status, eventsSinceStart: subscription.eventCount, ...(error ? { error } : {}) };
  }

  /** Backport: the handshake carries status requested; a 2xx makes the subscription active, anything else error. */
  private async handshake(subscription: ClaimedSubscription): Promise<void> {
    const bundle = notificationBundle(this.deps.baseUrl, this.view(subscription, 'requested'), 'handshake', [], subscription.content);
    const result = await this.send(subscription, 'handshake', bundle);
    if (result.ok) {
      await this.setStatus(subscription, 'active', undefined, sql`attempts = 0, failing_since = NULL, next_attempt_at = now(), ${this.nextHeartbeat(subscription)}`);
      return;
    }
    await this.audit(subscription, 'handshake', result);
    await this.setStatus(subscription, 'error', `Handshake failed: ${result.description}`, sql`next_heartbeat_at = ${this.nextHeartbeatValue(subscription)}`);
  }

  /**
   * Sends the events after the last acknowledged one, maxCount per notification, until none is
   * left or one fails. The acknowledgement's UPDATE also lets the lease go when no newer event
   * is recorded (one round trip, not two); it returns whether the lease is still held.
   */
  private async deliverEvents(subscription: ClaimedSubscription): Promise<boolean> {
    let delivered = subscription.deliveredCount;
    for (;;) {
      const events = await this.pendingEvents(subscription, delivered);
      if (events.length === 0) return true;
      const last = events[events.length - 1].eventNumber;
      const view = { ...this.view(subscription, 'active'), eventsSinceStart: Math.max(subscription.eventCount, last) };
      const result = await this.send(subscription, 'event-notification', notificationBundle(this.deps.baseUrl, view, 'event-notification', events, subscription.content));
      if (!result.ok) {
        await this.failed(subscription, result);
        return true;
      }
      const now = Date.now();
      for (const event of events) this.deps.metrics.latency.observe((now - Date.parse(event.occurred)) / 1000);
      const more = sql`(SELECT c.event_count FROM subscription_event_counters c WHERE c.subscription_id = ${subscription.id}) > ${last}`;
      const [kept] = await this.deps.db.execute<{ held: boolean }>(sql`UPDATE subscriptions SET delivered_count = ${last}, attempts = 0, failing_since = NULL, next_attempt_at = now(),
          ${this.nextHeartbeat(subscription)},
          lease_owner = CASE WHEN ${more} THEN lease_owner END,
          lease_until = CASE WHEN ${more} THEN now() + ${this.leaseSeconds} * interval '1 second' END
        WHERE id = ${subscription.id} AND lease_owner = ${this.owner} AND status = 'active' RETURNING lease_owner IS NOT NULL AS held`);
      if (!kept?.held) return false;
      delivered = last;
    }
  }

  /** A heartbeat shows the subscription's status (error included); its failure is counted and audited, and changes nothing else. */
  private async heartbeat(subscription: ClaimedSubscription): Promise<void> {
    const bundle = notificationBundle(this.deps.baseUrl, this.view(subscription, subscription.status), 'heartbeat', [], subscription.content);
    const result = await this.send(subscription, 'heartbeat', bundle);
    if (!result.ok) await this.audit(subscription, 'heartbeat', result);
    await this.deps.db.execute(sql`UPDATE subscriptions SET ${this.nextHeartbeat(subscription)} WHERE id = ${subscription.id} AND lease_owner = ${this.owner}`);
  }

  private nextHeartbeatValue(subscription: ClaimedSubscription) {
    return subscription.heartbeatSeconds === null ? sql`NULL` : sql`now() + ${subscription.heartbeatSeconds} * interval '1 second'`;
  }

  private nextHeartbeat(subscription: ClaimedSubscription) {
    return sql`next_heartbeat_at = ${this.nextHeartbeatValue(subscription)}`;
  }

  /** A failed event notification: retried after a backoff, or, past the retry budget, the subscription goes to error. */
  private async failed(subscription: ClaimedSubscription, result: Extract<AttemptOutcome, { ok: false }>): Promise<void> {
    await this.audit(subscription, 'event-notification', result);
    const { retrySeconds } = this.deps.config;
    if ((subscription.failingSeconds ?? 0) >= retrySeconds) {
      await this.setStatus(subscription, 'error', `Notifications failed for ${Math.round(subscription.failingSeconds ?? 0)} s, the retry budget: ${result.description}`, sql`next_heartbeat_at = ${this.nextHeartbeatValue(subscription)}`);
      return;
    }
    const delayMs = backoffMs(subscription.attempts + 1, this.deps.config.retryBaseMs, this.deps.config.maxBackoffSeconds * 1000);
    await this.deps.db.execute(sql`UPDATE subscriptions SET attempts = attempts + 1, failing_since = coalesce(failing_since, now()),
        next_attempt_at = now() + ${delayMs} * interval '1 millisecond'
      WHERE id = ${subscription.id} AND lease_owner = ${this.owner}`);
  }

  /** The next events of the log, with what the owner may still see of their focus (re-checked now). */
  private async pendingEvents(subscription: ClaimedSubscription, after: number): Promise<LoggedEvent[]> {
    return readEvents(this.deps.db, this.deps.baseUrl, subscription, after, after + subscription.maxCount);
  }

  private async send(subscription: ClaimedSubscription, type: NotificationType, bundle: object): Promise<AttemptOutcome> {
    const body = JSON.stringify(bundle);
    const headers = new Headers();
    for (const [name, value] of subscription.headers) headers.append(name, value);
    headers.set('Content-Type', subscription.contentType);
    headers.set(SIGNATURE_HEADER, await this.sign(body));
    const start = performance.now();
    let result: AttemptOutcome;
    try {
      const response = await fetch(subscription.endpoint, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(subscription.timeoutSeconds * 1000) });
      await response.arrayBuffer().catch(() => undefined);
      result = response.status >= 200 && response.status < 300 ? { ok: true } : { ok: false, outcome: 'http-error', description: `the endpoint answered HTTP ${response.status}`, status: response.status };
    } catch (error) {
      const timedOut = (error as Error).name === 'TimeoutError';
      result = timedOut
        ? { ok: false, outcome: 'timeout', description: `no answer within ${subscription.timeoutSeconds} s`, status: 504 }
        : { ok: false, outcome: 'network-error', description: `the endpoint could not be reached (${(error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name})`, status: 502 };
    }
    this.deps.metrics.duration.observe({ type }, (performance.now() - start) / 1000);
    this.deps.metrics.attempts.inc({ type, outcome: result.ok ? 'ok' : result.outcome });
    return result;
  }

  /** JWS (Baton's current access-token key, ES384) over the exact body, payload detached: `header..signature`. */
  private async sign(body: string): Promise<string> {
    const { current } = await this.deps.signingKeys.get();
    const jws = await new CompactSign(new TextEncoder().encode(body)).setProtectedHeader({ alg: current.alg, kid: current.kid }).sign(current.privateKey);
    const [header, , signature] = jws.split('.');
    return `${header}..${signature}`;
  }

  /**
   * Changes the subscription's status in the registry and as a new version of the Subscription
   * resource (status, and error while in error), in one transaction; only while this worker
   * holds the lease, so a subscription its owner changed meanwhile is left as the owner left it.
   */
  private async setStatus(subscription: ClaimedSubscription, status: 'active' | 'error', error: string | undefined, also: ReturnType<typeof sql>): Promise<void> {
    await this.deps.db.transaction(async (q) => {
      const changed = await q.execute(sql`UPDATE subscriptions SET status = ${status}, ${also} WHERE id = ${subscription.id} AND lease_owner = ${this.owner} AND status = ${subscription.status} RETURNING id`);
      if (changed.length === 0) return;
      await writeSubscriptionStatus(q, this.deps.baseUrl, subscription.id, status, error);
    });
    if (status === 'error') this.deps.logger?.warn({ subscription: subscription.id, topic: subscription.topic }, 'subscription in error');
  }

  /** A failed attempt as a system-originated AuditEvent: the subscription, the owner, why (no payload, no endpoint URL). */
  private async audit(subscription: ClaimedSubscription, type: NotificationType, result: Extract<AttemptOutcome, { ok: false }>): Promise<void> {
    const event = toAuditEvent({
      id: newId(),
      recorded: new Date().toISOString(),
      interaction: 'operation',
      operation: 'urn:baton:subscription-notification',
      action: 'E',
      outcome: '4',
      outcomeDescription: `${type} failed: ${result.description}`,
      httpStatus: result.status,
      caller: { clientId: subscription.clientId, kind: subscription.clientKind },
      requestId: randomUUID(),
      server: this.deps.baseUrl,
      resource: { type: 'Subscription', id: subscription.id },
    });
    await insertAuditEvents(this.deps.db, [event]);
  }

  private logFailure(subscription: string, error: unknown): void {
    const code = (error as { code?: string } | undefined)?.code;
    this.deps.logger?.error({ subscription, error: (error as Error)?.constructor?.name ?? typeof error, code }, 'subscription delivery failed');
  }
}

/** Exponential backoff with jitter: half the doubled delay fixed, half random ("equal jitter"), capped. */
export function backoffMs(attempt: number, baseMs: number, capMs: number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** The server's own changes of a Subscription (its status), as the audit trail names their author. */
const DELIVERY_CALLER: AuditCaller = { clientId: 'baton-subscriptions', kind: 'internal' };

/** Writes the Subscription's next version with this status (error text kept while in error), audited in the same transaction. */
export async function writeSubscriptionStatus(q: Queryable, baseUrl: string, id: string, status: Subscription['status'], error: string | undefined): Promise<void> {
  const current = await readCurrent(q, 'Subscription', id, true);
  if (!current || current.deleted) return;
  const resource = JSON.parse(current.json) as Subscription & { id: string };
  resource.status = status;
  if (error) resource.error = error;
  else delete resource.error;
  const versionId = current.versionId + 1;
  const lastUpdated = new Date().toISOString();
  resource.meta = { ...resource.meta, versionId: String(versionId), lastUpdated };
  await inCheckedSubscriptionWrite(q, () => writeVersions(q, [{ resource, versionId, lastUpdated, method: 'PUT', deleted: false }]));
  const audit = serverAudit(baseUrl, `subscription-${id}`, `/Subscription/${id}`, DELIVERY_CALLER);
  audit.wrote(q, { interaction: 'update', resource, versionId });
  await audit.flush(q);
}

interface EventRow {
  eventNumber: number;
  occurred: string;
  focusType: string | null;
  focusId: string | null;
  focusReference: string | null;
  focusVersion: number | null;
  method: string | null;
  additionalContext: string[];
  content: string | null;
}

/**
 * Events of a subscription's log in (after, until], as its notifications show them: a focus the
 * owner may no longer read (a grant ended since) is left out, and so is its content; the event
 * keeps its number, so the subscriber sees no gap.
 */
export async function readEvents(q: Queryable, baseUrl: string, subscription: Pick<ClaimedSubscription, 'id' | 'clientId' | 'clientKind' | 'scopes' | 'content'>, after: number, until: number): Promise<LoggedEvent[]> {
  const withContent = subscription.content === 'full-resource';
  const rows = await q.execute<EventRow>(sql`SELECT e.event_number::float8 AS "eventNumber", to_char(e.occurred AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred,
      e.focus_type AS "focusType", e.focus_id AS "focusId", e.focus_reference AS "focusReference", e.focus_version AS "focusVersion", e.method, e.additional_context AS "additionalContext",
      ${withContent ? sql`h.content` : sql`NULL::text`} AS content
    FROM subscription_events e
    ${withContent ? sql`LEFT JOIN resource_history h ON h.resource_type = e.focus_type AND h.id = e.focus_id AND h.version_id = e.focus_version` : sql``}
    WHERE e.subscription_id = ${subscription.id} AND e.event_number > ${after} AND e.event_number <= ${until}
    ORDER BY e.event_number`);
  const policy = callerPolicy({ clientId: subscription.clientId, kind: subscription.clientKind, scopes: subscription.scopes }, baseUrl);
  const events: LoggedEvent[] = [];
  for (const row of rows) {
    const visible = row.focusType && row.focusId ? policy.mayRead(row.focusType) && (await isVisible(q, policy, row.focusType, row.focusId)) : true;
    const focus = row.focusType && row.focusId ? `${baseUrl}/${row.focusType}/${row.focusId}` : (row.focusReference ?? undefined);
    events.push({
      eventNumber: row.eventNumber,
      occurred: row.occurred,
      focus: visible ? focus : undefined,
      additionalContext: visible ? (typeof row.additionalContext === 'string' ? (JSON.parse(row.additionalContext) as string[]) : row.additionalContext).map((r) => (r.includes('://') ? r : `${baseUrl}/${r}`)) : [],
      method: row.method,
      responseStatus: row.method === 'DELETE' ? '204' : row.method === 'POST' || row.focusVersion === 1 ? '201' : '200',
      resource: visible && row.content ? (JSON.parse(row.content) as Resource) : undefined,
    });
  }
  return events;
}

/** The worker of a Baton process: a pass every pollMs, stopped on shutdown after the deliveries in flight. */
export function startSubscriptionDelivery(deps: DeliveryDeps): { deliverer: SubscriptionDeliverer; stop(): Promise<void> } {
  const deliverer = new SubscriptionDeliverer(deps);
  const background = runInBackground((stopping) => deliverer.runPending(stopping), deps.config.pollMs, { logger: deps.logger, what: 'subscription delivery pass' });
  return {
    deliverer,
    stop: async () => {
      await background.stop();
      await deliverer.idle();
    },
  };
}
