import type { Extension, Subscription } from '@medplum/fhirtypes';
import { isIP } from 'node:net';
import type { AccessPolicy } from '../fhir/access.ts';
import { FhirError, outcome } from '../fhir/errors.ts';
import { type FilterCriterion, type Topic, topics } from './topics.ts';

/** Subscriptions Backport IG 1.1 (R4) StructureDefinitions. */
export const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
export const BACKPORT_SUBSCRIPTION = `${BACKPORT}/backport-subscription`;
const FILTER_CRITERIA = `${BACKPORT}/backport-filter-criteria`;
/** The R5 cross-version extension some clients send for filters: not the Backport's, refused (Inferno tests it). */
const R5_FILTER_CRITERIA = 'http://hl7.org/fhir/5.0/subscriptions-backport/StructureDefinition/backport-filter-criteria';
const PAYLOAD_CONTENT = `${BACKPORT}/backport-payload-content`;
const HEARTBEAT_PERIOD = `${BACKPORT}/backport-heartbeat-period`;
const TIMEOUT = `${BACKPORT}/backport-timeout`;
const MAX_COUNT = `${BACKPORT}/backport-max-count`;
const CHANNEL_TYPE = `${BACKPORT}/backport-channel-type`;

export type PayloadContent = 'empty' | 'id-only' | 'full-resource';
const PAYLOAD_CONTENTS: readonly string[] = ['empty', 'id-only', 'full-resource'];
const MIME_TYPES: readonly string[] = ['application/fhir+json', 'application/json'];

/** What delivery needs of a Subscription, checked. */
export interface SubscriptionSettings {
  topic: Topic;
  filters: FilterCriterion[];
  endpoint: string;
  headers: [string, string][];
  content: PayloadContent;
  contentType: string;
  heartbeatSeconds: number | undefined;
  timeoutSeconds: number;
  maxCount: number;
  /** 'off' when the client switches the subscription off; otherwise a handshake is due. */
  off: boolean;
  /** Subscription.end (ISO instant): the subscription is turned off then. */
  ends: string | undefined;
}

export interface SettingsPolicy {
  /** http:// to a loopback address is accepted (development); any other endpoint must be https. */
  allowLoopbackHttp: boolean;
  maxTimeoutSeconds: number;
  defaultMaxCount: number;
}

function invalid(diagnostics: string, expression: string, code: 'not-supported' | 'invalid' | 'value' = 'not-supported'): FhirError {
  return new FhirError(422, outcome('error', code, diagnostics, [expression]));
}

/**
 * Checks a Subscription against the Backport profile and what Baton supports, for the caller
 * creating or changing it; every refusal is a 422 naming the element.
 */
/** Subscription with the primitive-extension siblings (`_criteria`, `_type`, `_payload`) the Backport uses. */
export type BackportSubscription = Subscription & {
  _criteria?: { extension?: Extension[] };
  channel?: Subscription['channel'] & { _type?: { extension?: Extension[] }; _payload?: { extension?: Extension[] } };
};

export function checkSubscription(resource: BackportSubscription, access: AccessPolicy, policy: SettingsPolicy): SubscriptionSettings {
  const topic = topics().get(resource.criteria ?? '');
  if (!topic) throw invalid(`Unknown topic "${String(resource.criteria ?? '').slice(0, 200)}": Subscription.criteria must be a topic canonical this server lists in its CapabilityStatement`, 'Subscription.criteria');
  const filters = (resource._criteria?.extension ?? []).flatMap((extension) => {
    if (extension.url === R5_FILTER_CRITERIA) throw invalid(`Filters use ${FILTER_CRITERIA}, not the R5 cross-version extension ${R5_FILTER_CRITERIA}`, 'Subscription._criteria.extension');
    if (extension.url !== FILTER_CRITERIA) throw invalid(`Unsupported extension ${extension.url.slice(0, 200)} on Subscription.criteria`, 'Subscription._criteria.extension');
    return parseFilter(extension.valueString ?? '', topic);
  });
  const channel = resource.channel;
  if (channel?.type !== 'rest-hook') throw invalid(`Unsupported channel type "${String(channel?.type).slice(0, 40)}": this server delivers rest-hook notifications only`, 'Subscription.channel.type');
  if (channel._type?.extension?.some((e) => e.url === CHANNEL_TYPE)) throw invalid('Custom channel types (backport-channel-type) are not supported: use rest-hook', 'Subscription.channel.type');
  const endpoint = checkEndpoint(channel.endpoint, policy.allowLoopbackHttp);
  const contentType = (channel.payload ?? 'application/fhir+json').split(';')[0].trim().toLowerCase();
  if (!MIME_TYPES.includes(contentType)) throw invalid(`Unsupported payload type "${String(channel.payload).slice(0, 60)}": notifications are application/fhir+json`, 'Subscription.channel.payload');
  const content = channel._payload?.extension?.find((e) => e.url === PAYLOAD_CONTENT)?.valueCode ?? 'id-only';
  if (!PAYLOAD_CONTENTS.includes(content)) throw invalid(`Unsupported payload content "${content.slice(0, 40)}": empty, id-only or full-resource`, 'Subscription.channel._payload');
  if (content !== 'empty') {
    // A notification naming or carrying resources shows only what the subscriber may read.
    const unreadable = topic.triggers.map((t) => t.resource).filter((type) => !access.mayRead(type));
    if (unreadable.length > 0) {
      throw new FhirError(422, outcome('error', 'forbidden', `Payload ${content} needs read access to ${[...new Set(unreadable)].join(', ')}: the access token's scopes do not grant it; ask for empty`, ['Subscription.channel._payload']));
    }
  }
  const extensionValue = (url: string): number | undefined => {
    const found = channel.extension?.find((e) => e.url === url);
    if (!found) return undefined;
    const value = found.valueUnsignedInt ?? found.valuePositiveInt;
    if (!Number.isInteger(value) || (value as number) < 1) throw invalid(`${url.slice(BACKPORT.length + 1)} must be a positive integer`, 'Subscription.channel.extension', 'value');
    return value;
  };
  const heartbeatSeconds = extensionValue(HEARTBEAT_PERIOD);
  const timeoutSeconds = Math.min(extensionValue(TIMEOUT) ?? policy.maxTimeoutSeconds, policy.maxTimeoutSeconds);
  const maxCount = extensionValue(MAX_COUNT) ?? policy.defaultMaxCount;
  const headers = (channel.header ?? []).map((line): [string, string] => {
    const match = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)$/.exec(line);
    if (!match) throw invalid('Each channel.header must be an HTTP header line "Name: value"', 'Subscription.channel.header', 'value');
    return [match[1], match[2].trim()];
  });
  // Subscription.end turns the subscription off then. One already past when the Subscription is
  // written is not kept (the stored Subscription has no end): the Inferno samples carry
  // end 2020 and expect a working subscription.
  let ends: string | undefined;
  if (resource.end !== undefined) {
    const endMs = Date.parse(resource.end);
    if (Number.isNaN(endMs)) throw invalid('Subscription.end must be an instant', 'Subscription.end', 'value');
    if (endMs > Date.now()) ends = new Date(endMs).toISOString();
  }
  return { topic, filters, endpoint, headers, content: content as PayloadContent, contentType, heartbeatSeconds, timeoutSeconds, maxCount, off: resource.status === 'off', ends };
}

/**
 * A backport-filter-criteria value: `Type?param=value[&param=value]` (Backport 1.1) or
 * `Type.param=value` (earlier drafts, as Inferno's samples write it). Only the topic's
 * canFilterBy parameters, without modifiers.
 */
export function parseFilter(text: string, topic: Topic): FilterCriterion[] {
  const query = /^([A-Z][A-Za-z]+)\?(.+)$/.exec(text);
  const dotted = /^([A-Z][A-Za-z]+)\.([A-Za-z0-9_-]+)=(.+)$/.exec(text);
  const pairs: [string, string, string][] = query
    ? [...new URLSearchParams(query[2])].map(([parameter, value]) => [query[1], parameter, value])
    : dotted
      ? [[dotted[1], dotted[2], decodeURIComponent(dotted[3])]]
      : [];
  if (pairs.length === 0) throw invalid(`Unsupported filter "${text.slice(0, 120)}": write Type?param=value or Type.param=value`, 'Subscription._criteria.extension');
  return pairs.map(([resourceType, parameter, value]) => {
    if (!topic.filters.has(`${resourceType}.${parameter}`)) {
      const allowed = topic.canFilterBy.map((f) => `${f.resource}.${f.filterParameter}`).join(', ') || 'none';
      throw invalid(`Unsupported filter ${resourceType}.${parameter.slice(0, 40)} for topic ${topic.url}; it can be filtered by: ${allowed}`, 'Subscription._criteria.extension');
    }
    if (value === '') throw invalid(`The filter ${resourceType}.${parameter} has no value`, 'Subscription._criteria.extension', 'value');
    return { resourceType, parameter, value };
  });
}

function checkEndpoint(endpoint: string | undefined, allowLoopbackHttp: boolean): string {
  let url: URL;
  try {
    url = new URL(endpoint ?? '');
  } catch {
    throw invalid('Subscription.channel.endpoint must be an absolute URL', 'Subscription.channel.endpoint', 'value');
  }
  if (url.protocol === 'https:') return url.toString();
  if (url.protocol === 'http:' && allowLoopbackHttp && isLoopback(url.hostname)) return url.toString();
  throw invalid(
    allowLoopbackHttp ? 'Subscription.channel.endpoint must be https (http only to a loopback address, in development)' : 'Subscription.channel.endpoint must be https',
    'Subscription.channel.endpoint',
  );
}

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
