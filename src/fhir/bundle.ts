import type { Bundle, BundleEntry } from '@medplum/fhirtypes';
import { type BundleRequestEntry, parseEntry } from './bundle-entry.ts';
import { entryBody, performEntry, resolveConditionalReferences } from './bundle-interactions.ts';
import { collectReferences, isUrn, rewriteReferences } from './bundle-references.ts';
import { atEntry, failedEntry, responseEntry } from './bundle-response.ts';
import { processTransaction } from './bundle-transaction.ts';
import { fhirErrorFromDatabase } from './database-errors.ts';
import { badRequest, FhirError } from './errors.ts';
import type { PreferReturn } from './http/respond.ts';
import { auditedTransaction, type FhirContext } from './interactions.ts';

export interface BundleOptions {
  /** Prefer: return=… of the POST, applied to each write entry (default representation). */
  preferReturn?: PreferReturn;
}

/** batch and transaction (http.html#transaction): POST [base] with a Bundle. */
export async function processBundle(ctx: FhirContext, body: unknown, options: BundleOptions = {}): Promise<Bundle> {
  const preferReturn = options.preferReturn ?? 'representation';
  if (typeof body !== 'object' || body === null || Array.isArray(body) || (body as Bundle).resourceType !== 'Bundle') {
    throw badRequest('POST [base] takes a Bundle of type batch or transaction');
  }
  const bundle = body as Bundle;
  if (bundle.type !== 'batch' && bundle.type !== 'transaction') {
    throw badRequest(`Only batch and transaction Bundles can be processed; Bundle.type is "${String(bundle.type).slice(0, 40)}"`, ['Bundle.type']);
  }
  ctx.audit.bundle(bundle.type);
  const entries: unknown[] = bundle.entry ?? [];
  if (!Array.isArray(entries)) throw badRequest('Bundle.entry must be an array', ['Bundle.entry']);
  return bundle.type === 'transaction' ? processTransaction(ctx, entries, preferReturn) : processBatch(ctx, entries, preferReturn);
}

/**
 * A batch: each entry on its own, in its own database transaction. A failing entry answers its
 * status and OperationOutcome in its response entry; the batch itself succeeds.
 */
async function processBatch(ctx: FhirContext, rawEntries: unknown[], preferReturn: PreferReturn): Promise<Bundle> {
  const siblings = new Set(rawEntries.map((raw) => (raw as { fullUrl?: unknown } | null)?.fullUrl).filter((u): u is string => typeof u === 'string' && isUrn(u)));
  const entry: BundleEntry[] = [];
  for (const [index, raw] of rawEntries.entries()) {
    try {
      entry.push(await processBatchEntry(ctx, parseEntry(raw, index, ctx.baseUrl), siblings, preferReturn));
    } catch (error) {
      // A conflict with a concurrent request (409) or a lost database connection (503) is this
      // entry's answer, as it would be on its own.
      const failure = error instanceof FhirError ? error : fhirErrorFromDatabase(error);
      if (!failure) throw error;
      entry.push(failedEntry(atEntry(index, failure)));
    }
  }
  return { resourceType: 'Bundle', type: 'batch-response', entry };
}

async function processBatchEntry(ctx: FhirContext, entry: BundleRequestEntry, siblings: ReadonlySet<string>, preferReturn: PreferReturn): Promise<BundleEntry> {
  const body = entryBody(entry);
  // http.html#transaction: batch entries may not depend on each other; a transaction links them.
  const linked = collectReferences(body).find((reference) => siblings.has(reference));
  if (linked !== undefined) {
    throw badRequest(`The reference "${linked.slice(0, 100)}" is the fullUrl of another entry; batch entries are independent, use a transaction to link them`);
  }
  const result = await auditedTransaction(ctx, async (q) => {
    const entryCtx: FhirContext = { ...ctx, q, inTransaction: true };
    rewriteReferences(body, await resolveConditionalReferences(entryCtx, [entry]));
    return performEntry(entryCtx, entry);
  });
  return responseEntry(ctx.baseUrl, entry, result, preferReturn);
}
