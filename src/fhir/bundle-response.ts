import { STATUS_CODES } from 'node:http';
import type { BundleEntry, BundleEntryResponse, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { BundleRequestEntry } from './bundle-entry.ts';
import { FhirError, informational } from './errors.ts';
import type { PreferReturn } from './http/respond.ts';
import type { InteractionResult } from './interactions.ts';

/** "201 Created": Bundle.entry.response.status starts with the code and may add the phrase. */
export function statusLine(status: number): string {
  const phrase = STATUS_CODES[status];
  return phrase ? `${status} ${phrase}` : String(status);
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The response entry of one processed request entry (Bundle.entry.response, http.html#transaction-response). */
export function responseEntry(baseUrl: string, entry: BundleRequestEntry, result: InteractionResult, preferReturn: PreferReturn): BundleEntry {
  const isWrite = WRITES.has(entry.method);
  const response: BundleEntryResponse = { status: statusLine(result.status) };
  const out: BundleEntry = {};
  const identified = result.resourceType !== undefined && result.id !== undefined;
  if (identified && result.status !== 204) out.fullUrl = `${baseUrl}/${result.resourceType}/${result.id}`;
  if (result.versionId !== undefined) {
    if (identified && isWrite && result.status !== 204) {
      response.location = result.location ?? `${baseUrl}/${result.resourceType}/${result.id}/_history/${result.versionId}`;
    }
    response.etag = `W/"${result.versionId}"`;
  }
  if (result.lastUpdatedMs !== undefined) response.lastModified = new Date(result.lastUpdatedMs).toISOString();
  out.response = response;
  const hasBody = result.resource !== undefined || result.json !== undefined;
  if (isWrite && preferReturn === 'OperationOutcome') {
    response.outcome = result.outcome ?? informational(`${result.resourceType}/${result.id} version ${result.versionId} stored`);
  } else if (hasBody && entry.method !== 'HEAD' && !(isWrite && preferReturn === 'minimal')) {
    out.resource = bodyOf(result);
  } else if (result.outcome) {
    response.outcome = result.outcome;
  }
  return out;
}

function bodyOf(result: InteractionResult): Resource {
  return result.resource ?? (JSON.parse(result.json as string) as Resource);
}

/** A batch entry that failed: its status and OperationOutcome, the others go on (http.html#transaction). */
export function failedEntry(error: FhirError): BundleEntry {
  return { response: { status: statusLine(error.status), outcome: error.outcome } };
}

/** The same error, its messages prefixed with the entry they are about, so a client can find it in a 1,000-entry Bundle. */
export function atEntry(index: number, error: FhirError): FhirError {
  const prefix = `Bundle.entry[${index}]`;
  const annotated: OperationOutcome = {
    ...error.outcome,
    issue: (error.outcome.issue ?? []).map((issue) => {
      const diagnostics = issue.diagnostics ?? issue.details?.text ?? 'failed';
      if (diagnostics.startsWith(`${prefix}: `)) return issue;
      const expression = issue.expression?.some((e) => e.startsWith(prefix)) ? issue.expression : [prefix, ...(issue.expression ?? [])];
      return { ...issue, diagnostics: `${prefix}: ${diagnostics}`, expression };
    }),
  };
  return new FhirError(error.status, annotated);
}
