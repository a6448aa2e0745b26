import type { BundleRequestEntry } from './bundle-entry.ts';
import { collectReferences, isConditionalReference } from './bundle-references.ts';
import { isResourceType } from './definitions.ts';
import { badRequest, FhirError, preconditionFailed } from './errors.ts';
import { history } from './history.ts';
import {
  conditionalDelete,
  conditionalUpdate,
  conditionParams,
  create,
  type CreateTarget,
  type FhirContext,
  type InteractionResult,
  parseETag,
  patch,
  read,
  remove,
  update,
  type UpdateTarget,
  vread,
} from './interactions.ts';
import { applyRepresentation, parseElements, parseSummary } from './representation.ts';
import { atEntry } from './bundle-response.ts';
import { findResourceIds, searchResources } from './search/search.ts';

/** What a transaction decided before writing: ids of creates and targets of conditional updates. */
export interface EntryTargets {
  creates: Map<number, CreateTarget>;
  updates: Map<number, UpdateTarget>;
}

/** Runs one entry's interaction with the same functions the REST routes use. */
export async function performEntry(ctx: FhirContext, entry: BundleRequestEntry, targets?: EntryTargets): Promise<InteractionResult> {
  const request = entry.request;
  switch (request.interaction) {
    case 'read':
      return readResult(entry, await read(ctx, request.type, request.id));
    case 'vread':
      return readResult(entry, await vread(ctx, request.type, request.id, request.versionId));
    case 'search':
      return { status: 200, resource: await searchResources(ctx, request.type, request.params, entryUrl(ctx, entry), false) };
    case 'history':
      return {
        status: 200,
        resource: await history(ctx, { resourceType: request.type, id: request.id, params: request.params, url: entryUrl(ctx, entry) }),
      };
    case 'create':
      return create(ctx, request.type, request.resource, request.ifNoneExist, targets?.creates.get(entry.index));
    case 'update':
      return update(ctx, request.type, request.id, request.resource, { ifMatch: request.ifMatch });
    case 'conditional-update':
      return conditionalUpdate(ctx, request.type, request.condition, request.resource, { ifMatch: request.ifMatch }, targets?.updates.get(entry.index));
    case 'patch':
      return patch(ctx, request.type, request.id, request.operations, { ifMatch: request.ifMatch });
    case 'delete':
      return remove(ctx, request.type, request.id, { ifMatch: request.ifMatch });
    case 'conditional-delete':
      return conditionalDelete(ctx, request.type, request.condition);
  }
}

function entryUrl(ctx: FhirContext, entry: BundleRequestEntry): URL {
  return new URL(`${ctx.baseUrl}/${entry.url}`);
}

/** A read honours _summary/_elements and the entry's ifNoneMatch/ifModifiedSince (304). */
function readResult(entry: BundleRequestEntry, result: InteractionResult): InteractionResult {
  if (isNotModified(entry, result)) {
    return { status: 304, resourceType: result.resourceType, id: result.id, versionId: result.versionId, lastUpdatedMs: result.lastUpdatedMs };
  }
  const { params } = entry.request as { params: URLSearchParams };
  const representation = { summary: parseSummary(params.get('_summary') ?? undefined), elements: parseElements(params.get('_elements') ?? undefined) };
  if (representation.summary === undefined && representation.elements === undefined) return result;
  return { ...result, json: undefined, resource: applyRepresentation(JSON.parse(result.json as string), representation) };
}

function isNotModified(entry: BundleRequestEntry, result: InteractionResult): boolean {
  if (entry.ifNoneMatch !== undefined) return entry.ifNoneMatch.trim() === '*' || parseETag(entry.ifNoneMatch) === result.versionId;
  if (entry.ifModifiedSince === undefined) return false;
  const since = Date.parse(entry.ifModifiedSince);
  if (Number.isNaN(since)) throw badRequest(`request.ifModifiedSince must be an instant; got "${entry.ifModifiedSince.slice(0, 40)}"`);
  // HTTP dates have whole seconds (RFC 9110 §13.1.3).
  return Math.floor((result.lastUpdatedMs as number) / 1000) * 1000 <= since;
}

/** The JSON an entry writes, where its references live: the resource, or the JSON Patch operations. */
export function entryBody(entry: BundleRequestEntry): object | undefined {
  const request = entry.request;
  switch (request.interaction) {
    case 'create':
    case 'update':
    case 'conditional-update':
      return request.resource;
    case 'patch':
      return request.operations;
    default:
      return undefined;
  }
}

/**
 * Resolves the conditional references (`Patient?identifier=sys|val`) of the entries to
 * `Type/id`: each must match exactly one resource (http.html#trules), else 412; malformed
 * ones are 400. Errors name the first entry holding the reference.
 */
export async function resolveConditionalReferences(ctx: FhirContext, entries: BundleRequestEntry[]): Promise<Map<string, string>> {
  const firstHolder = new Map<string, number>();
  for (const entry of entries) {
    for (const reference of collectReferences(entryBody(entry))) {
      if (isConditionalReference(reference) && !firstHolder.has(reference)) firstHolder.set(reference, entry.index);
    }
  }
  const resolved = new Map<string, string>();
  if (firstHolder.size === 0) return resolved;
  await ctx.writes?.flush();
  for (const [reference, index] of firstHolder) {
    resolved.set(reference, await forEntry(index, () => resolveConditionalReference(ctx, reference)));
  }
  return resolved;
}

async function resolveConditionalReference(ctx: FhirContext, reference: string): Promise<string> {
  const type = reference.slice(0, reference.indexOf('?'));
  const shown = reference.slice(0, 100);
  if (!isResourceType(type)) throw badRequest(`The conditional reference "${shown}" names an unknown resource type`);
  // Resolving a conditional reference is a search, and is authorized as one.
  ctx.access.authorize('s', type);
  const ids = await findResourceIds(ctx.q, type, conditionParams(reference, `The conditional reference "${shown}"`), ctx.baseUrl, ctx.access);
  if (ids.length !== 1) throw preconditionFailed(`The conditional reference "${shown}" matched ${ids.length} resources; it must match exactly one`);
  return `${type}/${ids[0]}`;
}

/** Runs fn; a FhirError it throws is re-thrown naming the entry. */
export async function forEntry<T>(index: number, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw error instanceof FhirError ? atEntry(index, error) : error;
  }
}
