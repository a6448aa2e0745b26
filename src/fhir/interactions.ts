import type { OperationOutcome, Provenance, Resource } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { applyPatch, type Operation } from 'rfc6902';
import { newId } from '../db/ids.ts';
import type { Database, Queryable } from '../db/connection.ts';
import { type AccessPolicy, isVisible } from './access.ts';
import { provenanceOf } from './provenance.ts';
import type { SeparateStore, SeparateStores } from './separate-store.ts';
import type { AuditSink, WriteFact } from './audit-sink.ts';
import { isResourceType } from './definitions.ts';
import { badRequest, FhirError, gone, methodNotAllowed, notFound, outcome, preconditionFailed } from './errors.ts';
import { findResourceIds } from './search/search.ts';
import { type NewVersion, readCurrent, readVersion, type StoredResource, type WriteBuffer, type WriteMethod, writeVersions } from './store.ts';
import type { ResourceValidator } from './validation.ts';

/**
 * The FHIR RESTful interactions (http.html) as functions of plain values, shared by the HTTP
 * routes and by batch/transaction processing.
 */
export interface FhirContext {
  db: Database;
  /** Where SQL runs: the database, or the open transaction of a transaction Bundle. */
  q: Queryable;
  /** True inside a transaction Bundle: writes join the caller's transaction. */
  inTransaction: boolean;
  baseUrl: string;
  validator: ResourceValidator;
  /** What the caller may do and see; every interaction asks it. */
  access: AccessPolicy;
  /** Where interactions report what they wrote and served, for the audit trail. */
  audit: AuditSink;
  /** A Provenance the client sent with a create or update (X-Provenance), stored with the version written. */
  provenance?: Provenance;
  /** Inside a transaction Bundle: rows locked up front and versions buffered (store.ts). */
  writes?: WriteBuffer;
  /** The request's X-Request-Id, as the audit trail records it: records of its own (match decisions) name it too. */
  requestId?: string;
  /** Rules of resource types that carry a workflow (a data-request Task starts one), applied to every write of the type. */
  writeRules?: WriteRules;
  /** Types read and searched in stores of their own (AuditEvent). */
  separateStores?: SeparateStores;
}

/**
 * A rule applied in the writing transaction before a version of its type is stored: it may
 * refuse the write (a thrown FhirError), complete the resource (the version written is the one
 * it returns) and write rows of its own on `q`, which commit or roll back with the version.
 */
export type WriteRule = (ctx: FhirContext, q: Queryable, write: { resource: Resource; id: string; versionId: number; method: WriteMethod }) => Promise<Resource>;
export type WriteRules = Readonly<Partial<Record<string, WriteRule>>>;

/** What an interaction answers; the HTTP layer and the Bundle processor each render it. */
export interface InteractionResult {
  status: number;
  resourceType?: string;
  id?: string;
  versionId?: number;
  lastUpdatedMs?: number;
  /** The stored JSON, served as is when no representation change is asked for. */
  json?: string;
  resource?: Resource;
  outcome?: OperationOutcome;
  location?: string;
}

const ID = /^[A-Za-z0-9\-.]{1,64}$/;

export function assertResourceType(type: string): void {
  if (!isResourceType(type)) throw new FhirError(404, outcome('error', 'not-supported', `Unknown resource type "${type.slice(0, 64)}"`));
}

export function assertId(id: string): void {
  if (!ID.test(id)) throw badRequest(`Invalid id "${id.slice(0, 80)}": ids are 1-64 characters of A-Z, a-z, 0-9, "-" and "."`);
}

function parseVersionId(vid: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(vid)) throw badRequest(`Invalid version id "${vid.slice(0, 20)}"`);
  return Number(vid);
}

/** Weak ETag `W/"3"` (or a bare `3`) → 3; anything else is a 400. */
export function parseETag(etag: string): number {
  const match = /^(?:W\/)?"?([1-9][0-9]{0,8})"?$/.exec(etag.trim());
  if (!match) throw badRequest(`If-Match must be a version ETag such as W/"1"; got "${etag.slice(0, 40)}"`);
  return Number(match[1]);
}

export function fromStored(status: number, stored: StoredResource): InteractionResult {
  return {
    status,
    resourceType: stored.resourceType,
    id: stored.id,
    versionId: stored.versionId,
    lastUpdatedMs: stored.lastUpdatedMs,
    json: stored.json,
  };
}

export async function read(ctx: FhirContext, type: string, id: string): Promise<InteractionResult> {
  assertResourceType(type);
  ctx.access.authorize('r', type);
  assertId(id);
  const separate = ctx.separateStores?.[type];
  const stored = separate ? await separate.readCurrent(ctx.q, id) : await readCurrent(ctx.q, type, id);
  if (!stored || !(await isVisible(ctx.q, ctx.access, type, id, separate))) throw notFound(`${type}/${id} is not known`);
  if (stored.deleted) throw deletedError(type, id, stored);
  ctx.audit.returned([{ resourceType: type, id, content: stored.json }]);
  return fromStored(200, stored);
}

export async function vread(ctx: FhirContext, type: string, id: string, vid: string): Promise<InteractionResult> {
  assertResourceType(type);
  ctx.access.authorize('r', type);
  assertId(id);
  const versionId = parseVersionId(vid);
  const separate = ctx.separateStores?.[type];
  const stored = separate ? await separateVersion(ctx.q, separate, id, versionId) : await readVersion(ctx.q, type, id, versionId);
  if (!stored || !(await isVisible(ctx.q, ctx.access, type, id, separate))) throw notFound(`${type}/${id} has no version ${vid}`);
  if (stored.deleted) throw deletedError(type, id, stored);
  ctx.audit.returned([{ resourceType: type, id, versionId: stored.versionId, content: stored.json }]);
  return fromStored(200, stored);
}

/** A separately stored resource has one version, its current one. */
async function separateVersion(q: Queryable, store: SeparateStore, id: string, versionId: number): Promise<StoredResource | undefined> {
  const stored = await store.readCurrent(q, id);
  return stored?.versionId === versionId ? stored : undefined;
}

function deletedError(type: string, id: string, stored: StoredResource): FhirError {
  const error = gone(`${type}/${id} was deleted (version ${stored.versionId})`);
  error.headers.ETag = `W/"${stored.versionId}"`;
  return error;
}

/**
 * Runs writes in the caller's transaction (a Bundle's, which records their audit at its end) or
 * in a transaction of their own, whose last statement records the AuditEvents of its writes.
 */
async function inWriteTransaction<T>(ctx: FhirContext, fn: (q: Queryable) => Promise<T>): Promise<T> {
  return ctx.inTransaction ? fn(ctx.q) : auditedTransaction(ctx, fn);
}

/** Runs fn in a transaction of its own whose last statement records the AuditEvents of its writes: no write commits without them. */
export async function auditedTransaction<T>(ctx: FhirContext, fn: (q: Queryable) => Promise<T>): Promise<T> {
  return ctx.db.transaction(async (q) => {
    const result = await fn(q);
    await ctx.audit.flush(q);
    return result;
  });
}

/** AuditEvent is written by the server alone, and never changed (the audit trail is append-only). */
function assertWritable(type: string): void {
  if (type === 'AuditEvent') throw methodNotAllowed('AuditEvent is created by the server and cannot be created, changed or deleted through the API', ['GET']);
}

const WRITE_INTERACTIONS: Record<WriteMethod, WriteFact['interaction']> = { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };

function checkBody(type: string, body: unknown): Resource {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('The body must be a FHIR resource (a JSON object)');
  const resource = body as Resource;
  if (resource.resourceType !== type) {
    throw badRequest(`The body's resourceType "${String(resource.resourceType).slice(0, 64)}" does not match the URL's "${type}"`, ['resourceType']);
  }
  return resource;
}

/** The current version a write starts from, under a row lock. */
async function currentForWrite(ctx: FhirContext, q: Queryable, type: string, id: string): Promise<StoredResource | undefined> {
  return ctx.writes ? ctx.writes.current(type, id) : readCurrent(q, type, id, true);
}

async function persist(ctx: FhirContext, q: Queryable, version: NewVersion): Promise<void> {
  if (ctx.writes) await ctx.writes.write(version);
  else await writeVersions(q, [version]);
}

/** Search for conditional interactions; buffered writes of a transaction Bundle must be visible to it. */
async function searchIds(ctx: FhirContext, q: Queryable, type: string, params: URLSearchParams): Promise<string[]> {
  await ctx.writes?.flush();
  return findResourceIds(q, type, params, ctx.baseUrl, ctx.access);
}

/** Stamps id and meta on a new version and writes it. */
async function writeVersion(ctx: FhirContext, q: Queryable, body: Resource, id: string, versionId: number, method: WriteMethod): Promise<InteractionResult> {
  const rule = ctx.writeRules?.[body.resourceType];
  const resource = rule ? await rule(ctx, q, { resource: body, id, versionId, method }) : body;
  const lastUpdated = new Date().toISOString();
  const stamped = { resourceType: resource.resourceType, id, meta: { ...resource.meta, versionId: String(versionId), lastUpdated }, ...withoutIdentity(resource) } as NewVersion['resource'];
  await persist(ctx, q, { resource: stamped, versionId, lastUpdated, method, deleted: false });
  ctx.audit.wrote(q, { interaction: WRITE_INTERACTIONS[method], resource: stamped, versionId });
  // Partners' writes always carry a Provenance; other clients' when they send one.
  if (ctx.provenance !== undefined || ctx.access.caller?.kind === 'partner') {
    await recordProvenance(ctx, q, { resourceType: resource.resourceType, id, versionId, created: versionId === 1 }, lastUpdated);
  }
  return {
    status: versionId === 1 || method === 'POST' ? 201 : 200,
    resourceType: resource.resourceType,
    id,
    versionId,
    lastUpdatedMs: Date.parse(lastUpdated),
    resource: stamped,
  };
}

async function recordProvenance(ctx: FhirContext, q: Queryable, written: Parameters<typeof provenanceOf>[0], lastUpdated: string): Promise<void> {
  const provenance = { ...provenanceOf(written, ctx.provenance, ctx.access.caller, lastUpdated), id: newId() };
  ctx.validator.validate(provenance);
  const stamped = { ...provenance, meta: { versionId: '1', lastUpdated } } as NewVersion['resource'];
  await persist(ctx, q, { resource: stamped, versionId: 1, lastUpdated, method: 'POST', deleted: false });
  ctx.audit.wrote(q, { interaction: 'create', resource: stamped, versionId: 1 });
}

/** The resource's content without resourceType, id and meta, so those can lead the JSON. */
function withoutIdentity(resource: Resource): Record<string, unknown> {
  const { resourceType: _type, id: _id, meta: _meta, ...rest } = resource as Resource & Record<string, unknown>;
  return rest;
}

/** Serializes conditional interactions on one query so two requests cannot both create. */
async function lockCondition(q: Queryable, type: string, condition: string): Promise<void> {
  await q.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${`${type}?${condition}`}))`);
}

/**
 * What a transaction Bundle decided for a create before writing it: it assigns ids and resolves
 * If-None-Exist first, because references to the new resource are rewritten before any write.
 */
export type CreateTarget = { id: string } | { existing: StoredResource };

export async function create(ctx: FhirContext, type: string, body: unknown, ifNoneExist?: string, target?: CreateTarget): Promise<InteractionResult> {
  assertResourceType(type);
  assertWritable(type);
  ctx.access.authorize('c', type);
  const resource = checkBody(type, body);
  ctx.validator.validate(resource);
  if (target && 'existing' in target) return fromStored(200, target.existing);
  return inWriteTransaction(ctx, async (q) => {
    if (ifNoneExist !== undefined && !target) {
      const existing = await findExisting(ctx, q, type, ifNoneExist);
      if (existing) return fromStored(200, existing);
    }
    const id = target?.id ?? newId();
    const result = await writeVersion(ctx, q, resource, id, 1, 'POST');
    result.location = `${ctx.baseUrl}/${type}/${id}/_history/1`;
    return result;
  });
}

/** The resource If-None-Exist matches, if any (http.html#ccreate); several matches are a 412. */
export async function findExisting(ctx: FhirContext, q: Queryable, type: string, ifNoneExist: string): Promise<StoredResource | undefined> {
  const params = conditionParams(ifNoneExist, 'If-None-Exist');
  await lockCondition(q, type, params.toString());
  const ids = await searchIds(ctx, q, type, params);
  if (ids.length > 1) throw preconditionFailed(`If-None-Exist matched ${ids.length} ${type} resources; it must match at most one`);
  return ids.length === 1 ? readCurrent(q, type, ids[0]) : undefined;
}

export function conditionParams(condition: string, what: string): URLSearchParams {
  const text = condition.includes('?') ? condition.slice(condition.indexOf('?') + 1) : condition;
  const params = new URLSearchParams(text);
  if ([...params.keys()].length === 0) throw badRequest(`${what} must carry search parameters such as identifier=system|value`);
  return params;
}

export interface UpdateOptions {
  ifMatch?: string;
}

export async function update(ctx: FhirContext, type: string, id: string, body: unknown, options: UpdateOptions = {}): Promise<InteractionResult> {
  assertResourceType(type);
  assertWritable(type);
  ctx.access.authorize('u', type);
  assertId(id);
  const resource = checkBody(type, body);
  if (resource.id === undefined) throw badRequest(`The body has no id; an update of ${type}/${id} must carry id "${id}"`, ['id']);
  if (resource.id !== id) throw badRequest(`The body's id "${String(resource.id).slice(0, 64)}" does not match the URL's "${id}"`, ['id']);
  ctx.validator.validate(resource);
  const expected = options.ifMatch === undefined ? undefined : parseETag(options.ifMatch);
  return inWriteTransaction(ctx, (q) => updateLocked(ctx, q, resource, id, expected));
}

async function updateLocked(ctx: FhirContext, q: Queryable, resource: Resource, id: string, expected: number | undefined): Promise<InteractionResult> {
  const type = resource.resourceType;
  const current = await currentForWrite(ctx, q, type, id);
  if (expected !== undefined && current?.versionId !== expected) {
    throw preconditionFailed(
      current ? `${type}/${id} is at version ${current.versionId}, not ${expected} (If-Match)` : `${type}/${id} does not exist (If-Match ${expected})`,
    );
  }
  if (!current) return writeVersion(ctx, q, resource, id, 1, 'PUT');
  if (!current.deleted && sameContent(current.json, resource)) return fromStored(200, current);
  const result = await writeVersion(ctx, q, resource, id, current.versionId + 1, 'PUT');
  // Bringing a deleted resource back creates it again: 201 (http.html#update).
  if (current.deleted) result.status = 201;
  return result;
}

/** An update that changes nothing but meta.versionId/lastUpdated does not make a new version. */
function sameContent(storedJson: string, resource: Resource): boolean {
  const stored = JSON.parse(storedJson) as Resource;
  const strip = (r: Resource): string => {
    const meta = { ...r.meta };
    delete meta.versionId;
    delete meta.lastUpdated;
    return JSON.stringify({ ...r, meta: Object.keys(meta).length ? meta : undefined });
  };
  return strip(stored) === strip(resource);
}

export async function conditionalUpdate(
  ctx: FhirContext,
  type: string,
  condition: string,
  body: unknown,
  options: UpdateOptions = {},
  resolved?: UpdateTarget,
): Promise<InteractionResult> {
  assertResourceType(type);
  assertWritable(type);
  ctx.access.authorize('u', type);
  const resource = checkBody(type, body);
  const params = conditionParams(condition, 'A conditional update');
  ctx.validator.validate(resource);
  const expected = options.ifMatch === undefined ? undefined : parseETag(options.ifMatch);
  return inWriteTransaction(ctx, async (q) => {
    const target = resolved ?? (await conditionalUpdateTarget(ctx, q, type, params, resource));
    if (target.isNew) return writeVersion(ctx, q, resource, target.id, 1, 'PUT');
    return updateLocked(ctx, q, resource, target.id, expected);
  });
}

/**
 * The resource a conditional update writes (http.html#cond-update): the one match, else the
 * body's id (create-on-update), else a new server-assigned id. A transaction Bundle resolves
 * it before writing, because references to the resource are rewritten first.
 */
export interface UpdateTarget {
  id: string;
  isNew: boolean;
}

export async function conditionalUpdateTarget(ctx: FhirContext, q: Queryable, type: string, params: URLSearchParams, resource: Resource): Promise<UpdateTarget> {
  await lockCondition(q, type, params.toString());
  const ids = await searchIds(ctx, q, type, params);
  if (ids.length > 1) throw preconditionFailed(`The conditional update matched ${ids.length} ${type} resources; it must match at most one`);
  // A transaction resolves this before validating the body, so the id may not be a string yet.
  const bodyId = resource.id === undefined ? undefined : String(resource.id);
  if (ids.length === 0) {
    if (bodyId === undefined) return { id: newId(), isNew: true };
    assertId(bodyId);
    return { id: bodyId, isNew: false };
  }
  if (bodyId !== undefined && bodyId !== ids[0]) {
    throw badRequest(`The body's id "${bodyId.slice(0, 64)}" differs from the id of the matching resource`, ['id']);
  }
  return { id: ids[0], isNew: false };
}

export async function patch(ctx: FhirContext, type: string, id: string, body: unknown, options: UpdateOptions = {}): Promise<InteractionResult> {
  assertResourceType(type);
  assertWritable(type);
  ctx.access.authorize('u', type);
  assertId(id);
  if (!Array.isArray(body)) throw badRequest('A JSON Patch body is an array of operations (RFC 6902)');
  const operations = body as Operation[];
  const expected = options.ifMatch === undefined ? undefined : parseETag(options.ifMatch);
  return inWriteTransaction(ctx, async (q) => {
    const current = await currentForWrite(ctx, q, type, id);
    if (!current) throw notFound(`${type}/${id} is not known`);
    if (current.deleted) throw deletedError(type, id, current);
    if (expected !== undefined && current.versionId !== expected) {
      throw preconditionFailed(`${type}/${id} is at version ${current.versionId}, not ${expected} (If-Match)`);
    }
    const resource = JSON.parse(current.json) as Resource;
    const results = applyPatch(resource, operations);
    const failed = results.findIndex((r) => r !== null);
    if (failed >= 0) {
      const error = results[failed] as Error;
      const status = error.name === 'TestError' ? 409 : 422;
      throw new FhirError(status, outcome('error', status === 409 ? 'conflict' : 'processing', `JSON Patch operation ${failed} failed: ${error.name}`));
    }
    if (resource.resourceType !== type || resource.id !== id) throw unprocessablePatch('A patch may not change resourceType or id');
    ctx.validator.validate(resource);
    if (sameContent(current.json, resource)) return fromStored(200, current);
    return writeVersion(ctx, q, resource, id, current.versionId + 1, 'PATCH');
  });
}

function unprocessablePatch(message: string): FhirError {
  return new FhirError(422, outcome('error', 'processing', message));
}

export async function remove(ctx: FhirContext, type: string, id: string, options: UpdateOptions = {}): Promise<InteractionResult> {
  assertResourceType(type);
  assertWritable(type);
  ctx.access.authorize('d', type);
  assertId(id);
  const expected = options.ifMatch === undefined ? undefined : parseETag(options.ifMatch);
  return inWriteTransaction(ctx, (q) => removeLocked(ctx, q, type, id, expected));
}

async function removeLocked(ctx: FhirContext, q: Queryable, type: string, id: string, expected?: number): Promise<InteractionResult> {
  const current = await currentForWrite(ctx, q, type, id);
  if (!current) throw notFound(`${type}/${id} is not known`);
  if (expected !== undefined && current.versionId !== expected) {
    throw preconditionFailed(`${type}/${id} is at version ${current.versionId}, not ${expected} (If-Match)`);
  }
  // Deleting a deleted resource changes nothing (http.html#delete).
  if (current.deleted) return { status: 204, resourceType: type, id, versionId: current.versionId };
  const versionId = current.versionId + 1;
  const lastUpdated = new Date().toISOString();
  const tombstone = { resourceType: type, id, meta: { versionId: String(versionId), lastUpdated }, ...withoutIdentity(JSON.parse(current.json) as Resource) } as NewVersion['resource'];
  await persist(ctx, q, { resource: tombstone, versionId, lastUpdated, method: 'DELETE', deleted: true });
  ctx.audit.wrote(q, { interaction: 'delete', resource: tombstone, versionId });
  return { status: 204, resourceType: type, id, versionId, lastUpdatedMs: Date.parse(lastUpdated) };
}

export async function conditionalDelete(ctx: FhirContext, type: string, condition: string): Promise<InteractionResult> {
  assertResourceType(type);
  assertWritable(type);
  ctx.access.authorize('d', type);
  const params = conditionParams(condition, 'A conditional delete');
  return inWriteTransaction(ctx, async (q) => {
    const ids = await searchIds(ctx, q, type, params);
    if (ids.length > 1) throw preconditionFailed(`The conditional delete matched ${ids.length} ${type} resources; it deletes at most one`);
    if (ids.length === 0) return { status: 204, outcome: outcome('information', 'not-found', `No ${type} matched; nothing was deleted`) };
    return removeLocked(ctx, q, type, ids[0]);
  });
}
