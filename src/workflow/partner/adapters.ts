import type { OperationOutcome } from '@medplum/fhirtypes';
import { type ErrorClass, PartnerError, type PartnerErrorCode } from './types.ts';

/**
 * How one kind of partner server behaves, as data: the partner client reads these settings
 * instead of special-casing partners in code. An Endpoint names its adapter.
 */
export interface PartnerAdapter {
  name: string;
  /** 500 is retryable: this partner answers 500 for transient trouble (strict servers mean a bug). */
  retry500: boolean;
  /** Wait assumed when a 429 or 503 carries no Retry-After; undefined leaves it to the retry policy's backoff. */
  defaultRetryAfterMs: number | undefined;
  /** Poll interval when an export's 202 carries no Retry-After. */
  defaultPollMs: number;
  /** The kick-off may answer 200 (with a Content-Location, or with the manifest itself) instead of 202. */
  kickOffMayAnswer200: boolean;
  /** Content-Location, next links and file URLs may be relative to the base (strict: absolute, Bulk Data 2.0). */
  relativeUrls: boolean;
  /** A manifest missing `error` (or `requiresAccessToken`) is read as none (or true) rather than refused. */
  partialManifests: boolean;
  /** Media types accepted for FHIR JSON answers (Parameters, Bundle, OperationOutcome). */
  fhirJsonTypes: string[];
  /** Media types accepted for the export manifest. */
  manifestTypes: string[];
  /** Media types accepted for NDJSON files. */
  ndjsonTypes: string[];
}

/** FHIR R4 and Bulk Data 2.0 as written: anything else is a protocol error a person should see. */
const STANDARD: PartnerAdapter = {
  name: 'standard',
  retry500: false,
  defaultRetryAfterMs: undefined,
  defaultPollMs: 5000,
  kickOffMayAnswer200: false,
  relativeUrls: false,
  partialManifests: false,
  fhirJsonTypes: ['application/fhir+json'],
  manifestTypes: ['application/json', 'application/fhir+json'],
  ndjsonTypes: ['application/fhir+ndjson'],
};

/**
 * Servers seen in the field (SPEC-NOTES: "peers get this wrong"): plain JSON media types,
 * NDJSON served as text/plain or application/ndjson, a kick-off answered 200, relative
 * status URLs, manifests missing keys, 500 for overload and 429/503 without Retry-After.
 */
const LENIENT: PartnerAdapter = {
  name: 'lenient',
  retry500: true,
  defaultRetryAfterMs: 10_000,
  defaultPollMs: 10_000,
  kickOffMayAnswer200: true,
  relativeUrls: true,
  partialManifests: true,
  fhirJsonTypes: ['application/fhir+json', 'application/json', 'text/json'],
  manifestTypes: ['application/json', 'application/fhir+json', 'text/json', 'text/plain'],
  ndjsonTypes: ['application/fhir+ndjson', 'application/ndjson', 'application/x-ndjson', 'text/plain', 'application/octet-stream'],
};

const PARTNER_ADAPTERS: Readonly<Record<string, PartnerAdapter>> = { standard: STANDARD, lenient: LENIENT };

/** The adapter an Endpoint names; an unknown name is a configuration error of that Endpoint. */
export function partnerAdapter(name: string): PartnerAdapter {
  const adapter = Object.hasOwn(PARTNER_ADAPTERS, name) ? PARTNER_ADAPTERS[name] : undefined;
  if (!adapter) throw new PartnerError('non-retryable', 'configuration', `Unknown partner adapter "${name.slice(0, 64)}" (known: ${Object.keys(PARTNER_ADAPTERS).join(', ')})`);
  return adapter;
}

/** The media type of a Content-Type header, lower case, without parameters. */
export function mediaType(contentType: string | null): string {
  return (contentType ?? '').split(';')[0].trim().toLowerCase();
}

/**
 * Retry-After (RFC 9110 §10.2.3) in milliseconds from now: delay-seconds or an HTTP-date (a
 * date already past is 0). Undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, nowMs: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime forms, which Date.parse reads too.
  if (!/^[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** What the partner said about a failed request, as far as it can be read. */
export interface FailedResponse {
  status: number;
  headers: Headers;
  /** The OperationOutcome of the body, when it carried one. */
  outcome: OperationOutcome | undefined;
}

/** HRex $member-match 422s: which refusal it is, from the OperationOutcome's issue codes and details codes. */
type MatchRefusal = 'no-match' | 'ambiguous' | 'consent' | 'under-review';

/**
 * Issue codes and details codes by refusal. Baton's own $member-match answers not-found /
 * `no-match`, multiple-matches, security / `consent-*` and incomplete / `under-review`
 * (src/operations/member-match.ts); other HRex servers use the same issue codes or say it in
 * details codes (`no-match`, `multiple-matches`, `consent`).
 */
function matchRefusal(outcome: OperationOutcome | undefined): MatchRefusal | undefined {
  const issues = outcome?.issue ?? [];
  const codes = new Set<string>();
  for (const issue of issues) {
    codes.add(issue.code);
    for (const coding of issue.details?.coding ?? []) if (coding.code) codes.add(coding.code.toLowerCase());
  }
  const detail = (prefix: string) => [...codes].some((code) => code.startsWith(prefix));
  // Several candidates is checked first: a server may add not-found to it ("no unique member").
  if (codes.has('multiple-matches') || detail('multiple')) return 'ambiguous';
  if (codes.has('security') || detail('consent')) return 'consent';
  if (codes.has('under-review') || (codes.has('incomplete') && detail('review'))) return 'under-review';
  if (codes.has('not-found') || codes.has('no-match')) return 'no-match';
  return undefined;
}

/** The issue codes of an OperationOutcome, for messages: never its diagnostics, which may quote the request. */
function issueSummary(outcome: OperationOutcome | undefined): string {
  const codes = (outcome?.issue ?? []).map((issue) => [issue.code, ...(issue.details?.coding ?? []).map((c) => c.code)].filter(Boolean).join('/'));
  return codes.length > 0 ? ` (issues: ${codes.slice(0, 5).join(', ')})` : '';
}

/**
 * Baton's error taxonomy for a partner's HTTP failure. `step` names the request in the message
 * ("$member-match", "export status"), never its URL (which may carry ids).
 *
 * retryable: 408, 409 (the same Idempotency-Key is still being processed), 429, 502/503/504,
 *   500 with retry500 or any 5xx whose OperationOutcome says `transient` (Bulk Data), and a
 *   $member-match awaiting the partner's review;
 * non-retryable: 401/403 (the caller has already tried a fresh token), 404, 410, 400, 405, 422
 *   no-match or consent, any other 4xx or 5xx;
 * manual: a 422 for several matching members.
 */
export function classifyFailure(adapter: PartnerAdapter, endpointId: string, step: string, failure: FailedResponse, nowMs: number = Date.now()): PartnerError {
  const { status, headers, outcome } = failure;
  const message = (what: string) => `Partner ${endpointId} answered ${status} to ${step}: ${what}${issueSummary(outcome)}`;
  const retryAfterMs = parseRetryAfter(headers.get('retry-after'), nowMs);
  const error = (errorClass: ErrorClass, code: PartnerErrorCode, what: string, wait?: number) =>
    new PartnerError(errorClass, code, message(what), { status, ...(wait === undefined ? {} : { retryAfterMs: wait }) });
  const throttleWait = retryAfterMs ?? adapter.defaultRetryAfterMs;

  if (status === 422) {
    switch (matchRefusal(outcome)) {
      case 'no-match':
        return error('non-retryable', 'no-match', 'no unique member matches');
      case 'ambiguous':
        return error('manual', 'ambiguous', 'several members match');
      case 'consent':
        return error('non-retryable', 'consent', 'the consent cannot be honoured');
      case 'under-review':
        return error('retryable', 'under-review', 'the match awaits the partner’s manual review', retryAfterMs);
      case undefined:
        return error('non-retryable', 'bad-request', 'the request was refused as unprocessable');
    }
  }
  const transient = (outcome?.issue ?? []).some((issue) => issue.code === 'transient');
  if (status >= 500 && transient) return error('retryable', 'server-error', 'a transient failure', retryAfterMs);
  switch (status) {
    case 401:
      return error('non-retryable', 'unauthorized', 'the access token was refused');
    case 403:
      return error('non-retryable', 'forbidden', 'Baton’s client may not do this');
    case 404:
      return error('non-retryable', 'not-found', 'not found');
    case 408:
      return error('retryable', 'timeout', 'the partner timed out reading the request', retryAfterMs);
    case 409:
      return error('retryable', 'in-progress', 'a request with this Idempotency-Key is still being processed', retryAfterMs);
    case 410:
      return error('non-retryable', 'gone', 'gone');
    case 429:
      return error('retryable', 'throttled', 'too many requests', throttleWait);
    case 500:
      return adapter.retry500 ? error('retryable', 'server-error', 'a server error', retryAfterMs) : error('non-retryable', 'server-error', 'a server error');
    case 502:
    case 503:
    case 504:
      return error('retryable', 'unavailable', 'unavailable', throttleWait);
  }
  if (status >= 500) return error('non-retryable', 'server-error', 'a server error');
  return error('non-retryable', 'bad-request', 'the request was refused');
}

/** A network failure, a timeout or a body cut short: the request may or may not have reached the partner. */
export function transportFailure(endpointId: string, step: string, cause: unknown, timedOut: boolean): PartnerError {
  if (timedOut) return new PartnerError('retryable', 'timeout', `Partner ${endpointId} did not answer ${step} in time`, { cause });
  const code = (cause as { cause?: { code?: string }; code?: string })?.cause?.code ?? (cause as { code?: string })?.code;
  return new PartnerError('retryable', 'network', `Partner ${endpointId} could not be reached for ${step}${typeof code === 'string' ? ` (${code})` : ''}`, { cause });
}

/** The partner answered, but not something Baton can interpret: a person should look (manual). */
export function protocolError(endpointId: string, step: string, what: string, status?: number): PartnerError {
  return new PartnerError('manual', 'protocol', `Partner ${endpointId} answered ${step} with ${what}`, status === undefined ? {} : { status });
}
