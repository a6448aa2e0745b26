import type { Bundle } from '@medplum/fhirtypes';
import { newId } from '../db/ids.ts';
import { type BundleRequestEntry, parseEntry } from './bundle-entry.ts';
import { entryBody, type EntryTargets, forEntry, performEntry, resolveConditionalReferences } from './bundle-interactions.ts';
import { collectReferences, isUrn, rewriteReferences } from './bundle-references.ts';
import { atEntry, responseEntry } from './bundle-response.ts';
import { badRequest } from './errors.ts';
import type { PreferReturn } from './http/respond.ts';
import { auditedTransaction, conditionalUpdateTarget, conditionParams, type FhirContext, findExisting, type InteractionResult } from './interactions.ts';
import { WriteBuffer } from './store.ts';

/**
 * A transaction Bundle (http.html#transaction): every entry in one database transaction, so
 * one failure writes nothing and answers that entry's status. Entries run in the order of
 * http.html#trules: DELETE, then POST, then PUT/PATCH, then GET/HEAD; the response keeps the
 * request's order.
 */
export async function processTransaction(ctx: FhirContext, rawEntries: unknown[], preferReturn: PreferReturn): Promise<Bundle> {
  const entries: BundleRequestEntry[] = [];
  for (const [index, raw] of rawEntries.entries()) entries.push(await forEntry(index, () => parseEntry(raw, index, ctx.baseUrl)));
  checkUniqueUrns(entries);
  // The AuditEvents of every write commit with them, or not at all.
  const results = await auditedTransaction(ctx, (q) => {
    const writes = new WriteBuffer(q);
    return runEntries({ ...ctx, q, inTransaction: true, writes }, writes, entries);
  });
  return {
    resourceType: 'Bundle',
    type: 'transaction-response',
    entry: entries.map((entry) => responseEntry(ctx.baseUrl, entry, results[entry.index], preferReturn)),
  };
}

const DELETES = new Set(['delete', 'conditional-delete']);
const CREATES = new Set(['create']);
const UPDATES = new Set(['update', 'conditional-update', 'patch']);
const READS = new Set(['read', 'vread', 'search', 'history']);

async function runEntries(ctx: FhirContext, writes: WriteBuffer, entries: BundleRequestEntry[]): Promise<InteractionResult[]> {
  const results: InteractionResult[] = new Array(entries.length);
  const run = async (entry: BundleRequestEntry, targets?: EntryTargets): Promise<void> => {
    results[entry.index] = await forEntry(entry.index, () => performEntry(ctx, entry, targets));
  };
  const inPhase = (interactions: Set<string>): BundleRequestEntry[] => entries.filter((e) => interactions.has(e.request.interaction));

  // Literal identities are checked before anything runs, resolved ones once they are known.
  checkIdentities(entries, results, { creates: new Map(), updates: new Map() });
  await writes.lock(entries.flatMap(literalTarget));
  for (const entry of inPhase(DELETES)) await run(entry);

  // Ids are settled before any POST or PUT is written: references to them are rewritten first.
  const targets = await resolveTargets(ctx, entries);
  checkIdentities(entries, results, targets);
  const replacements = new Map([...fullUrlReplacements(entries, targets), ...(await resolveConditionalReferences(ctx, entries))]);
  for (const entry of entries) {
    const body = entryBody(entry);
    if (body === undefined) continue;
    checkPlaceholders(entry.index, body, replacements);
    rewriteReferences(body, replacements);
  }
  await writes.lock(entries.flatMap((e) => resolvedTarget(e, targets)));

  for (const entry of inPhase(CREATES)) await run(entry, targets);
  for (const entry of inPhase(UPDATES)) await run(entry, targets);
  await writes.flush();
  for (const entry of inPhase(READS)) await run(entry);
  return results;
}

type Ref = { resourceType: string; id: string };

function literalTarget(entry: BundleRequestEntry): Ref[] {
  const request = entry.request;
  const literal = request.interaction === 'delete' || request.interaction === 'update' || request.interaction === 'patch';
  return literal ? [{ resourceType: request.type, id: request.id }] : [];
}

function resolvedTarget(entry: BundleRequestEntry, targets: EntryTargets): Ref[] {
  const target = targets.updates.get(entry.index);
  return target && !target.isNew ? [{ resourceType: entry.request.type as string, id: target.id }] : [];
}

/** Server ids for the creates (or the match of If-None-Exist) and the targets of conditional updates. */
async function resolveTargets(ctx: FhirContext, entries: BundleRequestEntry[]): Promise<EntryTargets> {
  const targets: EntryTargets = { creates: new Map(), updates: new Map() };
  for (const entry of entries) {
    const request = entry.request;
    if (request.interaction === 'create') {
      const { ifNoneExist } = request;
      const existing = ifNoneExist === undefined ? undefined : await forEntry(entry.index, () => findExisting(ctx, ctx.q, request.type, ifNoneExist));
      targets.creates.set(entry.index, existing ? { existing } : { id: newId() });
    } else if (request.interaction === 'conditional-update') {
      const target = await forEntry(entry.index, () =>
        conditionalUpdateTarget(ctx, ctx.q, request.type, conditionParams(request.condition, 'A conditional update'), request.resource),
      );
      targets.updates.set(entry.index, target);
    }
  }
  return targets;
}

/** http.html#trules: a transaction fails when two entries write the same resource. */
function checkIdentities(entries: BundleRequestEntry[], results: InteractionResult[], targets: EntryTargets): void {
  const seen = new Map<string, number>();
  for (const entry of entries) {
    const identity = writeIdentity(entry, results, targets);
    if (identity === undefined) continue;
    const first = seen.get(identity);
    if (first !== undefined) {
      throw atEntry(entry.index, badRequest(`${identity.slice(0, 120)} is also written by Bundle.entry[${first}]; a transaction may write each resource once`));
    }
    seen.set(identity, entry.index);
  }
}

function writeIdentity(entry: BundleRequestEntry, results: InteractionResult[], targets: EntryTargets): string | undefined {
  const request = entry.request;
  switch (request.interaction) {
    case 'delete':
    case 'update':
    case 'patch':
      return `${request.type}/${request.id}`;
    case 'conditional-delete': {
      const id = results[entry.index]?.id;
      return id === undefined ? undefined : `${request.type}/${id}`;
    }
    case 'conditional-update': {
      const target = targets.updates.get(entry.index);
      return target === undefined ? undefined : `${request.type}/${target.id}`;
    }
    case 'create': {
      const target = targets.creates.get(entry.index);
      if (target && 'existing' in target) return `${request.type}/${target.existing.id}`;
      // Two creates with the same If-None-Exist would both create: the same resource, twice.
      if (request.ifNoneExist === undefined) return undefined;
      const params = conditionParams(request.ifNoneExist, 'If-None-Exist');
      params.sort();
      return `${request.type}?${params.toString()}`;
    }
    default:
      return undefined;
  }
}

/** fullUrl → Type/id: every fullUrl of a create (it gets a server id), and urn fullUrls of updates. */
function fullUrlReplacements(entries: BundleRequestEntry[], targets: EntryTargets): Map<string, string> {
  const replacements = new Map<string, string>();
  for (const entry of entries) {
    const { fullUrl, request } = entry;
    if (fullUrl === undefined) continue;
    if (request.interaction === 'create') {
      const target = targets.creates.get(entry.index);
      if (target) replacements.set(fullUrl, `${request.type}/${'existing' in target ? target.existing.id : target.id}`);
    } else if (isUrn(fullUrl) && request.interaction === 'update') {
      replacements.set(fullUrl, `${request.type}/${request.id}`);
    } else if (isUrn(fullUrl) && request.interaction === 'conditional-update') {
      replacements.set(fullUrl, `${request.type}/${targets.updates.get(entry.index)?.id}`);
    }
  }
  return replacements;
}

/** A urn reference must name an entry that creates or updates a resource; otherwise it would be stored dangling. */
function checkPlaceholders(index: number, body: object, replacements: ReadonlyMap<string, string>): void {
  for (const reference of collectReferences(body)) {
    if (isUrn(reference) && !replacements.has(reference)) {
      const message = `The reference "${reference.slice(0, 100)}" names no fullUrl of an entry that creates or updates a resource in this transaction`;
      throw atEntry(index, badRequest(message));
    }
  }
}

/** fullUrl identifies an entry's resource: two entries with the same urn would make references ambiguous. */
function checkUniqueUrns(entries: BundleRequestEntry[]): void {
  const seen = new Map<string, number>();
  for (const { fullUrl, index } of entries) {
    if (fullUrl === undefined || !isUrn(fullUrl)) continue;
    const first = seen.get(fullUrl);
    if (first !== undefined) throw atEntry(index, badRequest(`fullUrl "${fullUrl.slice(0, 100)}" is also the fullUrl of Bundle.entry[${first}]`, [`Bundle.entry[${index}].fullUrl`]));
    seen.set(fullUrl, index);
  }
}
