import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Parameters, ParametersParameter, Resource } from '@medplum/fhirtypes';
import { BACKPORT, type PayloadContent } from './subscription.ts';

/** Backport IG 1.1 R4 profiles of the notification Bundle and of its SubscriptionStatus Parameters. */
const NOTIFICATION_PROFILE = `${BACKPORT}/backport-subscription-notification-r4`;
const STATUS_PROFILE = `${BACKPORT}/backport-subscription-status-r4`;

export type NotificationType = 'handshake' | 'heartbeat' | 'event-notification' | 'query-status' | 'query-event';

/** One event of the log, with what its notification shows. */
export interface LoggedEvent {
  eventNumber: number;
  occurred: string;
  /** Absolute URL of the focus, or undefined when the subscriber may no longer read it (sent without focus). */
  focus: string | undefined;
  additionalContext: string[];
  /** The request that wrote the focus version (POST, PUT, PATCH, DELETE) and its answer's status, for the focus entry. */
  method: string | null;
  responseStatus: string;
  /** The focus version's JSON (full-resource), when still readable. */
  resource: Resource | undefined;
}

export interface StatusView {
  id: string;
  topic: string;
  status: string;
  eventsSinceStart: number;
  /** The error a subscription in error shows (SubscriptionStatus error). */
  error?: string;
}

/** The SubscriptionStatus (R4: Parameters, kebab-case names) of a notification or a $status answer. */
export function subscriptionStatus(baseUrl: string, view: StatusView, type: NotificationType, events: LoggedEvent[], content: PayloadContent): Parameters {
  const parameter: ParametersParameter[] = [
    { name: 'subscription', valueReference: { reference: `${baseUrl}/Subscription/${view.id}` } },
    { name: 'topic', valueCanonical: view.topic },
    { name: 'status', valueCode: view.status },
    { name: 'type', valueCode: type },
    // Backport R4: a string, since R4 has no integer64.
    { name: 'events-since-subscription-start', valueString: String(view.eventsSinceStart) },
    ...events.map((event) => ({
      name: 'notification-event',
      part: [
        { name: 'event-number', valueString: String(event.eventNumber) },
        { name: 'timestamp', valueInstant: event.occurred },
        ...(content !== 'empty' && event.focus ? [{ name: 'focus', valueReference: { reference: event.focus } }] : []),
        ...(content !== 'empty' ? event.additionalContext.map((reference) => ({ name: 'additional-context', valueReference: { reference } })) : []),
      ],
    })),
    ...(view.error ? [{ name: 'error', valueCodeableConcept: { text: view.error } }] : []),
  ];
  const id = randomUUID();
  return { resourceType: 'Parameters', id, meta: { profile: [STATUS_PROFILE] }, parameter };
}

/**
 * A notification (Backport R4: Bundle history): the SubscriptionStatus first, then per event,
 * as the payload level says, nothing (empty), the focus's URL (id-only) or the focus itself
 * (full-resource); every entry with a request and a response.
 */
export function notificationBundle(baseUrl: string, view: StatusView, type: NotificationType, events: LoggedEvent[], content: PayloadContent): Bundle {
  const status = subscriptionStatus(baseUrl, view, type, events, content);
  const entry: BundleEntry[] = [
    {
      fullUrl: `urn:uuid:${status.id}`,
      resource: status,
      request: { method: 'GET', url: `${baseUrl}/Subscription/${view.id}/$status` },
      response: { status: '200' },
    },
  ];
  if (content !== 'empty') {
    const seen = new Set<string>();
    for (const event of events) {
      if (!event.focus || !event.method || seen.has(event.focus)) continue;
      seen.add(event.focus);
      const relative = event.focus.slice(baseUrl.length + 1);
      const request = event.method === 'POST' ? { method: 'POST' as const, url: relative.slice(0, relative.indexOf('/')) } : { method: event.method as 'PUT' | 'PATCH' | 'DELETE', url: relative };
      entry.push({
        fullUrl: event.focus,
        ...(content === 'full-resource' && event.resource && event.method !== 'DELETE' ? { resource: event.resource } : {}),
        request,
        response: { status: event.responseStatus },
      });
    }
  }
  return { resourceType: 'Bundle', id: randomUUID(), meta: { profile: [NOTIFICATION_PROFILE] }, type: 'history', timestamp: new Date().toISOString(), entry };
}
