import type { Identifier, Parameters, Resource } from '@medplum/fhirtypes';

/** A partner payer's FHIR server as Baton calls it, read from the partner directory's Endpoint. */
export interface PartnerEndpoint {
  /** The Endpoint resource id in Baton's partner directory. */
  id: string;
  /** Partner FHIR base, no trailing slash. */
  baseUrl: string;
  /** Partner token endpoint (SMART Backend Services). */
  tokenUrl: string;
  /** Baton's client id at the partner. */
  clientId: string;
  /** Scopes to request, space separated. */
  scope: string;
  /** Which of Baton's outbound client keys signs the assertion. */
  keyId: string;
  /** Named adapter normalising the partner's quirks (adapters.ts); 'standard' by default. */
  adapter: string;
  /** Per HTTP request; a download's body may take longer as long as data keeps arriving. */
  timeoutMs: number;
}

/**
 * retryable: the same call may succeed later (network, timeouts, throttling, partner down);
 * non-retryable: it will not, a person must change something first (credentials, request, consent);
 * manual: the partner answered, but what it said needs a person's judgement (ambiguous match,
 * data that cannot be interpreted).
 */
export type ErrorClass = 'retryable' | 'non-retryable' | 'manual';

/**
 * Retryable: network, timeout, throttled (429), unavailable (502/503/504), server-error (500 when
 * the adapter says so, or a transient one), in-progress (409: the partner still runs the request
 * with this Idempotency-Key), under-review (the partner's match awaits its own manual review),
 * circuit-open, cancelled (the caller's signal aborted the call). Non-retryable: unauthorized,
 * forbidden, bad-request, not-found, gone, no-match, consent, configuration (the Endpoint's
 * settings cannot be used), server-error otherwise. Manual: ambiguous, quarantined (set by the
 * importer), protocol (an answer Baton cannot interpret).
 */
export const PARTNER_ERROR_CODES = [
  'network',
  'timeout',
  'throttled',
  'unavailable',
  'server-error',
  'in-progress',
  'under-review',
  'circuit-open',
  'cancelled',
  'unauthorized',
  'forbidden',
  'bad-request',
  'not-found',
  'gone',
  'no-match',
  'consent',
  'configuration',
  'ambiguous',
  'quarantined',
  'protocol',
] as const;

export type PartnerErrorCode = (typeof PARTNER_ERROR_CODES)[number];

/** The one error every partner call throws. The message names the endpoint, the step and codes; never PHI. */
export class PartnerError extends Error {
  override readonly name = 'PartnerError';
  readonly errorClass: ErrorClass;
  readonly code: PartnerErrorCode;
  /** The partner's HTTP status, when it answered. */
  readonly status?: number;
  /** The earliest the partner wants to be called again (Retry-After, or until the circuit half-opens). */
  readonly retryAfterMs?: number;

  constructor(errorClass: ErrorClass, code: PartnerErrorCode, message: string, details: { status?: number; retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.errorClass = errorClass;
    this.code = code;
    if (details.status !== undefined) this.status = details.status;
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
  }
}

export interface CallOptions {
  /** Sent as Idempotency-Key on every request of the call; derived from the Task and step, so a retried step is recognised. */
  idempotencyKey: string;
  signal?: AbortSignal;
}

export interface MemberMatchResult {
  memberIdentifier: Identifier;
  /** The partner's Patient id, when it returned MemberId (HRex 1.1+). */
  memberId?: string;
}

export interface BulkManifest {
  transactionTime: string;
  requiresAccessToken: boolean;
  output: { type: string; url: string; count?: number }[];
  error: { type: string; url: string }[];
}

export type BulkPoll = { state: 'in-progress'; retryAfterMs: number; progress?: string } | { state: 'complete'; manifest: BulkManifest };

export interface BulkKickOff {
  /** Relative to the base, e.g. 'Patient/$export', 'Group/g1/$davinci-data-export', '$export'. */
  path: string;
  method: 'GET' | 'POST';
  query?: Record<string, string>;
  parameters?: Parameters;
}

export interface BulkStarted {
  /**
   * Where to poll. When a lenient partner answered the kick-off with the manifest itself (no
   * status URL), a `data:` URL carrying that manifest: bulkPoll answers it as complete, so it
   * can be stored and polled like any other.
   */
  statusUrl: string;
  /** The manifest, when the partner answered the kick-off with it. */
  manifest?: BulkManifest;
}

export interface PartnerClient {
  memberMatch(parameters: Parameters, call: CallOptions): Promise<MemberMatchResult>;
  /**
   * The partner's Patient id for a MemberIdentifier (`Patient?identifier=<value>`, as HRex
   * advises when MemberId is absent): not-found when none, ambiguous (manual) when several.
   */
  findPatientId(identifier: Identifier, call: CallOptions): Promise<string>;
  /** Patient/[id]/$everything, following the Bundle's next links. */
  everything(patientId: string, call: CallOptions): AsyncIterable<Resource>;
  bulkKickOff(request: BulkKickOff, call: CallOptions): Promise<BulkStarted>;
  bulkPoll(statusUrl: string, call: CallOptions): Promise<BulkPoll>;
  /** DELETE on the status URL; an export already gone (404, 410) counts as cancelled. */
  bulkCancel(statusUrl: string, call: CallOptions): Promise<void>;
  /** Streams an NDJSON file line by line, never holding the file. */
  download(fileUrl: string, requiresAccessToken: boolean, call: CallOptions): AsyncIterable<Resource>;
}
