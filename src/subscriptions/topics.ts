import { readdirSync, readFileSync } from 'node:fs';
import { type FhirPathAtom, evalFhirPathTyped, parseFhirPath, toTypedValue } from '@medplum/core';
import type { Basic, Extension, Resource } from '@medplum/fhirtypes';

/**
 * Subscription topics as data (config/topics/*.json): adding a topic is a configuration change.
 * A file is shaped after the R5 SubscriptionTopic the Backport IG carries to R4 as a canonical:
 * resource triggers (a resource type, the interactions, an optional FHIRPath criterion over
 * %previous and %current, as R5 fhirPathCriteria) and event triggers (code raises them through
 * publishEvent), the filters a subscriber may use, and the additional context sent with events.
 */
export interface TopicFile {
  url: string;
  name: string;
  title: string;
  description: string;
  resourceTrigger?: { description: string; resource: string; supportedInteraction: Interaction[]; fhirPathCriteria?: string }[];
  eventTrigger?: { description: string; event: string }[];
  canFilterBy: { resource: string; filterParameter: string; type: 'reference' | 'token'; expression: string; description: string }[];
  /** FHIRPath expressions on the focus naming resources sent as notification-event additional-context. */
  additionalContext?: string[];
}

export type Interaction = 'create' | 'update' | 'delete';

export interface Topic extends TopicFile {
  triggers: { resource: string; interactions: Set<Interaction>; criteria: FhirPathAtom | undefined }[];
  filters: Map<string, { resource: string; type: 'reference' | 'token'; path: FhirPathAtom }>;
  context: FhirPathAtom[];
}

export class TopicError extends Error {}

const TOPIC_DIR = new URL('../../config/topics/', import.meta.url);

function compile(expression: string, where: string): FhirPathAtom {
  try {
    return parseFhirPath(expression);
  } catch (error) {
    throw new TopicError(`${where}: invalid FHIRPath (${(error as Error).message})`);
  }
}

/** Reads and checks every topic file; a bad file stops the start with its name. */
export function loadTopics(dir: URL = TOPIC_DIR): Map<string, Topic> {
  const topics = new Map<string, Topic>();
  for (const name of readdirSync(dir).filter((file) => file.endsWith('.json')).sort()) {
    const file = JSON.parse(readFileSync(new URL(name, dir), 'utf8')) as TopicFile;
    if (typeof file.url !== 'string' || !Array.isArray(file.canFilterBy)) throw new TopicError(`config/topics/${name}: url and canFilterBy are required`);
    if (topics.has(file.url)) throw new TopicError(`config/topics/${name}: topic ${file.url} is defined twice`);
    topics.set(file.url, {
      ...file,
      triggers: (file.resourceTrigger ?? []).map((t) => ({
        resource: t.resource,
        interactions: new Set(t.supportedInteraction),
        criteria: t.fhirPathCriteria ? compile(t.fhirPathCriteria, `config/topics/${name}`) : undefined,
      })),
      filters: new Map(file.canFilterBy.map((f) => [`${f.resource}.${f.filterParameter}`, { resource: f.resource, type: f.type, path: compile(f.expression, `config/topics/${name}`) }])),
      context: (file.additionalContext ?? []).map((expression) => compile(expression, `config/topics/${name}`)),
    });
  }
  return topics;
}

let loaded: Map<string, Topic> | undefined;

/** The topics of config/topics, read once per process. */
export function topics(): Map<string, Topic> {
  loaded ??= loadTopics();
  return loaded;
}

let byResource: Map<string, Topic[]> | undefined;

/** The topics a write of this resource type may trigger: asked for every version written, so answered from a map. */
export function topicsTriggeredBy(resourceType: string): Topic[] {
  if (!byResource) {
    byResource = new Map();
    for (const topic of topics().values()) {
      for (const type of new Set(topic.triggers.map((t) => t.resource))) byResource.set(type, [...(byResource.get(type) ?? []), topic]);
    }
  }
  return byResource.get(resourceType) ?? [];
}

export interface FilterCriterion {
  resourceType: string;
  parameter: string;
  value: string;
}

/** A subscription's filters for matching: one per parameter, its values normalized (Backport: filters are AND-ed; a parameter given several times matches any of its values). */
export interface CompiledFilter {
  resourceType: string;
  parameter: string;
  values: Set<string>;
}

export function compileFilters(topic: Topic, filters: readonly FilterCriterion[]): CompiledFilter[] {
  const compiled = new Map<string, CompiledFilter>();
  for (const f of filters) {
    const key = `${f.resourceType}.${f.parameter}`;
    const entry = compiled.get(key) ?? { resourceType: f.resourceType, parameter: f.parameter, values: new Set<string>() };
    entry.values.add(topic.filters.get(key)?.type === 'reference' ? localReference(f.value) : f.value);
    compiled.set(key, entry);
  }
  return [...compiled.values()];
}

/** Whether a version of a resource is an event of the topic (interaction and FHIRPath criterion). */
export function triggers(topic: Topic, interaction: Interaction, current: Resource, previous: Resource | undefined): boolean {
  return topic.triggers.some((trigger) => {
    if (trigger.resource !== current.resourceType || !trigger.interactions.has(interaction)) return false;
    if (!trigger.criteria) return true;
    const variables = { '%current': toTypedValue(current), '%previous': previous ? toTypedValue(previous) : { type: 'undefined', value: undefined } };
    const result = evalFhirPathTyped(trigger.criteria, [toTypedValue(current)], variables);
    return result.length === 1 && result[0].value === true;
  });
}

/**
 * The filter values of one resource version, each parameter's FHIRPath evaluated once however
 * many subscriptions ask: a write matched against a thousand subscriptions costs a thousand set
 * look-ups, not a thousand evaluations.
 */
export class FilterView {
  private readonly values = new Map<string, Set<string>>();

  constructor(private readonly resource: Resource) {}

  /** Whether the resource satisfies every filter of the subscription (compileFilters). */
  matches(topic: Topic, filters: readonly CompiledFilter[]): boolean {
    for (const filter of filters) {
      if (filter.resourceType !== this.resource.resourceType) continue;
      const definition = topic.filters.get(`${filter.resourceType}.${filter.parameter}`);
      if (!definition) return false;
      const found = this.valuesOf(`${topic.url} ${filter.parameter}`, definition);
      let any = false;
      for (const value of found) if (filter.values.has(value)) any = true;
      if (!any) return false;
    }
    return true;
  }

  /** References compare by `Type/id`; tokens by code or system|code. */
  private valuesOf(key: string, filter: { type: 'reference' | 'token'; path: FhirPathAtom }): Set<string> {
    let found = this.values.get(key);
    if (!found) {
      found = new Set(evalFhirPathTyped(filter.path, [toTypedValue(this.resource)], {}).flatMap((item) => filterValues(item.value, filter.type)));
      this.values.set(key, found);
    }
    return found;
  }
}

function filterValues(value: unknown, type: 'reference' | 'token'): string[] {
  if (typeof value === 'string') return [value];
  if (typeof value !== 'object' || value === null) return [];
  if (type === 'reference') {
    const reference = (value as { reference?: string }).reference;
    return reference ? [localReference(reference)] : [];
  }
  const codings = (value as { coding?: { system?: string; code?: string }[] }).coding ?? [value as { system?: string; code?: string }];
  return codings.flatMap((c) => (c.code ? [c.code, ...(c.system ? [`${c.system}|${c.code}`] : [])] : []));
}

/**
 * `Type/id` of a literal reference, relative or absolute (a version suffix dropped): writes are
 * filtered where no base URL is at hand, and a subscriber may write either form.
 */
export function localReference(reference: string): string {
  const match = /(?:^|\/)([A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(reference);
  return match ? match[1] : reference;
}

/** References the topic names as additional context of an event about the resource. */
export function additionalContextOf(topic: Topic, resource: Resource): string[] {
  return topic.context.flatMap((path) =>
    evalFhirPathTyped(path, [toTypedValue(resource)], {})
      .map((item) => (item.value as { reference?: string } | undefined)?.reference)
      .filter((reference): reference is string => typeof reference === 'string'),
  );
}

const R5 = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic';

/**
 * A topic as the Backport IG 1.2 publishes one in R4: a Basic whose code is SubscriptionTopic and
 * whose R5 elements travel as cross-version extensions. Its id is the topic file's name.
 */
export function topicAsBasic(topic: Topic): Basic & { id: string } {
  const part = (url: string, value: Omit<Extension, 'url'>): Extension => ({ ...value, url });
  const extension: Extension[] = [
    { url: `${R5}.url`, valueUri: topic.url },
    { url: `${R5}.name`, valueString: topic.name },
    { url: `${R5}.title`, valueString: topic.title },
    { url: `${R5}.status`, valueCode: 'active' },
    { url: `${R5}.description`, valueMarkdown: topic.description },
    ...(topic.resourceTrigger ?? []).map((t) => ({
      url: `${R5}.resourceTrigger`,
      extension: [
        part('description', { valueMarkdown: t.description }),
        part('resource', { valueUri: `http://hl7.org/fhir/StructureDefinition/${t.resource}` }),
        ...t.supportedInteraction.map((i) => part('supportedInteraction', { valueCode: i })),
        ...(t.fhirPathCriteria ? [part('fhirPathCriteria', { valueString: t.fhirPathCriteria })] : []),
      ],
    })),
    ...(topic.eventTrigger ?? []).map((t) => ({
      url: `${R5}.eventTrigger`,
      extension: [part('description', { valueMarkdown: t.description }), part('event', { valueCodeableConcept: { coding: [{ system: 'urn:baton:event', code: t.event }] } })],
    })),
    ...topic.canFilterBy.map((f) => ({
      url: `${R5}.canFilterBy`,
      extension: [
        part('description', { valueMarkdown: f.description }),
        part('resource', { valueUri: `http://hl7.org/fhir/StructureDefinition/${f.resource}` }),
        part('filterParameter', { valueString: f.filterParameter }),
      ],
    })),
  ];
  return {
    resourceType: 'Basic',
    id: topicId(topic),
    code: { coding: [{ system: 'http://hl7.org/fhir/fhir-types', code: 'SubscriptionTopic' }] },
    extension,
  };
}

/** A stable resource id for the topic's Basic: its name, in id characters. */
export function topicId(topic: Topic): string {
  return `topic-${topic.name.replace(/[^A-Za-z0-9\-.]/g, '-').toLowerCase()}`.slice(0, 64);
}

/**
 * The Subscription entry's claims in the CapabilityStatement: every topic as a Backport
 * capabilitystatement-subscriptiontopic-canonical extension, and $status and $events. (The
 * backport-subscription profile is checked by routes.ts, not by the validator, so it is not
 * listed as a supportedProfile, which says the validator enforces it.)
 */
export function subscriptionCapabilities(): { extension: Extension[]; operation: { name: string; definition: string }[] } {
  const backport = 'http://hl7.org/fhir/uv/subscriptions-backport';
  return {
    extension: [...topics().values()].map((topic) => ({ url: `${backport}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical`, valueCanonical: topic.url })),
    operation: [
      { name: 'status', definition: `${backport}/OperationDefinition/backport-subscription-status` },
      { name: 'events', definition: `${backport}/OperationDefinition/backport-subscription-events` },
    ],
  };
}
