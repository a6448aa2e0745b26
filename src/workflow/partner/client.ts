import { randomUUID } from 'node:crypto';
import type { Bundle, Identifier, OperationOutcome, Parameters, Resource } from '@medplum/fhirtypes';
import type { Logger } from '../../logger.ts';
import { type PartnerAdapter, classifyFailure, mediaType, parseRetryAfter, partnerAdapter, protocolError, transportFailure } from './adapters.ts';
import type { PartnerBreakers } from './breakers.ts';
import { type OutboundClientKeys, isClientKeyId } from './client-keys.ts';
import { PartnerTokens } from './tokens.ts';
import {
  type BulkKickOff,
  type BulkManifest,
  type BulkPoll,
  type BulkStarted,
  type CallOptions,
  type MemberMatchResult,
  type PartnerClient,
  type PartnerEndpoint,
  PartnerError,
} from './types.ts';

export interface PartnerClientDeps {
  keys: OutboundClientKeys;
  breakers: PartnerBreakers;
  fetch?: typeof fetch;
  logger: Logger;
  /** Access tokens held at partners; by default one cache shared by every client of this process. */
  tokens?: PartnerTokens;
}

const FHIR_JSON = 'application/fhir+json';
const NDJSON = 'application/fhir+ndjson';
/** An error body is read this far for its OperationOutcome; a proxy's error page can be anything. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** One NDJSON line is one resource; a line longer than this is not a resource Baton will hold in memory. */
const MAX_LINE_CHARS = 64 * 1024 * 1024;
/** Bulk Data: X-Progress is under 100 characters. */
const MAX_PROGRESS_CHARS = 100;
/** A manifest a lenient partner gave at kick-off, carried as the status URL (BulkStarted). */
const MANIFEST_DATA_URL = 'data:application/json;base64,';
/** A kick-off path under the base: `$export`, `Patient/$export`, `Group/<id>/$davinci-data-export`. */
const KICK_OFF_PATH = /^(?:[A-Za-z]+\/(?:[A-Za-z0-9\-.]{1,64}\/)?)?\$[a-z][a-z-]*$/;

const sharedTokens = new PartnerTokens();

/**
 * The outbound FHIR client Baton uses as the new payer: SMART Backend Services tokens, the
 * partner's $member-match, Patient/$everything and Bulk Data export, with the partner's quirks
 * normalised by its adapter and every failure a PartnerError of Baton's taxonomy.
 *
 * Every request but the token request carries the call's Idempotency-Key and a fresh
 * X-Request-Id (logged with the endpoint and step, never a URL). The token request carries no
 * Idempotency-Key: a token endpoint replaying its first answer would hand back the token just
 * refused. Each request goes through the partner's circuit breaker and is bounded by the
 * endpoint's timeout (for a download, the time between two chunks). A 401 drops the token and
 * tries once more with a fresh one. Baton's access token is only ever sent to the partner's
 * base origin: links, status URLs or files elsewhere that would need it are protocol errors.
 *
 * Throws PartnerError (configuration) when the endpoint's settings cannot be used.
 */
export function createPartnerClient(endpoint: PartnerEndpoint, deps: PartnerClientDeps): PartnerClient {
  return new HttpPartnerClient(checkedEndpoint(endpoint), partnerAdapter(endpoint.adapter), deps);
}

function checkedEndpoint(endpoint: PartnerEndpoint): PartnerEndpoint {
  const problem = (what: string) => new PartnerError('non-retryable', 'configuration', `Partner endpoint ${endpoint.id}: ${what}`);
  for (const [name, url] of [['baseUrl', endpoint.baseUrl], ['tokenUrl', endpoint.tokenUrl]] as const) {
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw problem(`${name} must be an absolute http(s) URL`);
  }
  if (!endpoint.clientId) throw problem('clientId is required');
  if (!endpoint.scope.trim()) throw problem('scope is required');
  if (!isClientKeyId(endpoint.keyId)) throw problem('keyId must be 1 to 64 letters, digits, ".", "_" or "-"');
  if (!Number.isSafeInteger(endpoint.timeoutMs) || endpoint.timeoutMs < 1) throw problem('timeoutMs must be a positive integer');
  return { ...endpoint, baseUrl: endpoint.baseUrl.replace(/\/+$/, '') };
}

interface Exchange {
  /** Names the request in messages and logs: "$member-match", "export status". */
  step: string;
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  accept: string;
  body?: { contentType: string; text: string };
  prefer?: string;
  /** Bearer token: the partner's access token, or none (token request, files without requiresAccessToken). */
  auth: boolean;
  /** Sent as Idempotency-Key; the token request has none. */
  idempotencyKey?: string;
  /** Overrides the taxonomy for this request's failures (the token endpoint's OAuth errors). */
  refusal?: (status: number, body: unknown) => PartnerError | undefined;
}

/** The timeout of one request, re-armed while a download's body arrives chunk by chunk. */
class RequestTimer {
  readonly controller = new AbortController();
  timedOut = false;
  private handle: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly ms: number) {
    this.arm();
  }

  arm(): void {
    clearTimeout(this.handle);
    this.handle = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.ms);
  }

  clear(): void {
    clearTimeout(this.handle);
  }
}

interface Opened {
  response: Response;
  timer: RequestTimer;
  fail: (error: unknown) => PartnerError;
}

class HttpPartnerClient implements PartnerClient {
  private readonly fetch: typeof fetch;
  private readonly tokens: PartnerTokens;
  private readonly origin: string;

  constructor(
    private readonly endpoint: PartnerEndpoint,
    private readonly adapter: PartnerAdapter,
    private readonly deps: PartnerClientDeps,
  ) {
    this.fetch = deps.fetch ?? fetch;
    this.tokens = deps.tokens ?? sharedTokens;
    this.origin = new URL(endpoint.baseUrl).origin;
  }

  /** HRex $member-match: 200 with MemberIdentifier (and MemberId from 1.1 on), else a 422 the adapter classifies. */
  async memberMatch(parameters: Parameters, call: CallOptions): Promise<MemberMatchResult> {
    const step = '$member-match';
    const answer = await this.exchange(
      { step, method: 'POST', url: `${this.endpoint.baseUrl}/Patient/$member-match`, accept: FHIR_JSON, body: fhirBody(parameters), auth: true, idempotencyKey: call.idempotencyKey },
      call.signal,
      (response) => this.fhirJson(response, step, [200]),
    );
    if (!isResource(answer, 'Parameters')) throw protocolError(this.endpoint.id, step, 'something other than Parameters');
    const parameter = (name: string) => (answer as Parameters).parameter?.find((p) => p.name === name);
    const memberIdentifier = parameter('MemberIdentifier')?.valueIdentifier;
    if (typeof memberIdentifier?.value !== 'string' || !memberIdentifier.value) throw protocolError(this.endpoint.id, step, 'Parameters without a MemberIdentifier value');
    const memberReference = parameter('MemberId')?.valueReference?.reference;
    if (memberReference === undefined) return { memberIdentifier };
    const memberId = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(memberReference)?.[1];
    if (!memberId) throw protocolError(this.endpoint.id, step, 'a MemberId that is not a Patient reference');
    return { memberIdentifier, memberId };
  }

  /** Patient?identifier=<value> (HRex: value only, the partner's system may differ); several hits are narrowed to the exact system. */
  async findPatientId(identifier: Identifier, call: CallOptions): Promise<string> {
    const step = 'Patient search by identifier';
    const url = `${this.endpoint.baseUrl}/Patient?${new URLSearchParams({ identifier: identifier.value ?? '' }).toString()}`;
    const bundle = await this.exchange({ step, method: 'GET', url, accept: FHIR_JSON, auth: true, idempotencyKey: call.idempotencyKey }, call.signal, (response) => this.fhirJson(response, step, [200]));
    if (!isResource(bundle, 'Bundle')) throw protocolError(this.endpoint.id, step, 'something other than a Bundle');
    let patients = ((bundle as Bundle).entry ?? []).map((entry) => entry.resource).filter((resource) => isResource(resource, 'Patient') && typeof resource.id === 'string');
    if (patients.length > 1 && identifier.system) {
      patients = patients.filter((patient) => (patient as { identifier?: Identifier[] }).identifier?.some((i) => i.system === identifier.system && i.value === identifier.value));
    }
    if (patients.length === 0) throw new PartnerError('non-retryable', 'not-found', `Partner ${this.endpoint.id} has no Patient with the member identifier`, { status: 200 });
    if (patients.length > 1) throw new PartnerError('manual', 'ambiguous', `Partner ${this.endpoint.id} has ${patients.length} Patients with the member identifier`, { status: 200 });
    return patients[0]?.id as string;
  }

  /** Patient/[id]/$everything, page after page through the Bundle's next links; the search outcome entries are not data. */
  async *everything(patientId: string, call: CallOptions): AsyncIterable<Resource> {
    const step = '$everything';
    let url: string | undefined = `${this.endpoint.baseUrl}/Patient/${encodeURIComponent(patientId)}/$everything`;
    const fetched = new Set<string>();
    while (url !== undefined) {
      fetched.add(url);
      const page = await this.exchange({ step, method: 'GET', url, accept: FHIR_JSON, auth: true, idempotencyKey: call.idempotencyKey }, call.signal, (response) => this.fhirJson(response, step, [200]));
      if (!isResource(page, 'Bundle')) throw protocolError(this.endpoint.id, step, 'something other than a Bundle');
      const bundle = page as Bundle;
      for (const [i, entry] of (bundle.entry ?? []).entries()) {
        if (entry.search?.mode === 'outcome') continue;
        if (!isResource(entry.resource)) throw protocolError(this.endpoint.id, step, `a Bundle whose entry ${i} has no resource`);
        yield entry.resource;
      }
      const next = bundle.link?.find((link) => link.relation === 'next')?.url;
      url = next === undefined ? undefined : this.tokenUrl(this.resolve(next, step), step);
      if (url !== undefined && fetched.has(url)) throw protocolError(this.endpoint.id, step, 'a next link to a page already read');
    }
  }

  /** Bulk Data kick-off (`Prefer: respond-async`): 202 with the status URL in Content-Location. */
  async bulkKickOff(request: BulkKickOff, call: CallOptions): Promise<BulkStarted> {
    const step = `${request.path.slice(request.path.lastIndexOf('$'))} kick-off`;
    if (!KICK_OFF_PATH.test(request.path)) throw new PartnerError('non-retryable', 'configuration', `Kick-off path must look like $export, Patient/$export or Group/<id>/$davinci-data-export`);
    // A GET carries its parameters in the query; Parameters it would drop silently are a mistake of the caller.
    if (request.method === 'GET' && request.parameters) throw new PartnerError('non-retryable', 'configuration', 'A GET kick-off takes query parameters, not a Parameters body');
    const query = request.query && Object.keys(request.query).length > 0 ? `?${new URLSearchParams(request.query).toString()}` : '';
    const body = request.method === 'POST' ? fhirBody(request.parameters ?? { resourceType: 'Parameters' }) : undefined;
    return this.exchange(
      { step, method: request.method, url: `${this.endpoint.baseUrl}/${request.path}${query}`, accept: FHIR_JSON, prefer: 'respond-async', ...(body ? { body } : {}), auth: true, idempotencyKey: call.idempotencyKey },
      call.signal,
      async (response) => {
        const location = response.headers.get('content-location');
        if (response.status === 202 || (response.status === 200 && this.adapter.kickOffMayAnswer200 && location)) {
          await response.body?.cancel();
          if (!location) throw protocolError(this.endpoint.id, step, 'a 202 without Content-Location', 202);
          return { statusUrl: this.tokenUrl(this.resolve(location, step), step) };
        }
        if (response.status === 200 && this.adapter.kickOffMayAnswer200) {
          const manifest = this.manifest(await this.json(response, step, this.adapter.manifestTypes), step);
          return { statusUrl: MANIFEST_DATA_URL + Buffer.from(JSON.stringify(manifest)).toString('base64'), manifest };
        }
        await response.body?.cancel();
        throw protocolError(this.endpoint.id, step, `${response.status} where Bulk Data requires 202`, response.status);
      },
    );
  }

  /** The status URL: 202 while the export runs (Retry-After, X-Progress), 200 with the manifest once done. */
  async bulkPoll(statusUrl: string, call: CallOptions): Promise<BulkPoll> {
    const step = 'export status';
    if (statusUrl.startsWith(MANIFEST_DATA_URL)) {
      return { state: 'complete', manifest: this.manifest(parseJson(Buffer.from(statusUrl.slice(MANIFEST_DATA_URL.length), 'base64').toString('utf8')), step) };
    }
    return this.exchange({ step, method: 'GET', url: this.tokenUrl(statusUrl, step), accept: 'application/json', auth: true, idempotencyKey: call.idempotencyKey }, call.signal, async (response) => {
      if (response.status === 202) {
        await response.body?.cancel();
        const progress = response.headers.get('x-progress')?.slice(0, MAX_PROGRESS_CHARS);
        const retryAfterMs = parseRetryAfter(response.headers.get('retry-after')) ?? this.adapter.defaultPollMs;
        return { state: 'in-progress', retryAfterMs, ...(progress ? { progress } : {}) };
      }
      if (response.status !== 200) {
        await response.body?.cancel();
        throw protocolError(this.endpoint.id, step, `${response.status} where Bulk Data answers 202 or 200`, response.status);
      }
      return { state: 'complete', manifest: this.manifest(await this.json(response, step, this.adapter.manifestTypes), step) };
    });
  }

  /** DELETE on the status URL. An export the partner no longer knows (404, 410) is as good as cancelled: a retried cancel must succeed. */
  async bulkCancel(statusUrl: string, call: CallOptions): Promise<void> {
    const step = 'export cancel';
    if (statusUrl.startsWith(MANIFEST_DATA_URL)) return;
    try {
      await this.exchange({ step, method: 'DELETE', url: this.tokenUrl(statusUrl, step), accept: FHIR_JSON, auth: true, idempotencyKey: call.idempotencyKey }, call.signal, async (response) => {
        await response.body?.cancel();
      });
    } catch (error) {
      if (error instanceof PartnerError && (error.status === 404 || error.status === 410)) return;
      throw error;
    }
  }

  /**
   * One NDJSON file, resource by resource as the bytes arrive: nothing but the current line is
   * held, and the connection is released when the consumer stops early. A line that is not a
   * resource is a protocol error naming its line number.
   */
  async *download(fileUrl: string, requiresAccessToken: boolean, call: CallOptions): AsyncIterable<Resource> {
    const step = 'file download';
    const resolved = this.resolve(fileUrl, step);
    const url = requiresAccessToken ? this.tokenUrl(resolved, step) : resolved;
    const { response, timer, fail } = await this.open({ step, method: 'GET', url, accept: NDJSON, auth: requiresAccessToken, idempotencyKey: call.idempotencyKey }, call.signal);
    const type = mediaType(response.headers.get('content-type'));
    const refusal =
      response.status !== 200
        ? `${response.status} where a file answers 200`
        : !this.adapter.ndjsonTypes.includes(type)
          ? `content type "${type.slice(0, 64)}" instead of ${this.adapter.ndjsonTypes.join(', ')}`
          : undefined;
    if (refusal !== undefined || !response.body) {
      timer.clear();
      await response.body?.cancel();
      if (refusal === undefined) return;
      throw fail(protocolError(this.endpoint.id, step, refusal, response.status));
    }
    const reader = response.body.getReader();
    try {
      const decoder = new TextDecoder();
      let partial = '';
      let lineNumber = 0;
      for (;;) {
        timer.arm();
        const chunk = await reader.read().catch((error: unknown) => {
          throw fail(error);
        });
        // The consumer's time between two resources is not the partner's.
        timer.clear();
        if (chunk.done) break;
        const lines = (partial + decoder.decode(chunk.value, { stream: true })).split('\n');
        partial = lines.pop() ?? '';
        if (partial.length > MAX_LINE_CHARS) throw fail(protocolError(this.endpoint.id, step, `a line longer than ${MAX_LINE_CHARS} characters`, 200));
        for (const line of lines) {
          lineNumber++;
          const resource = this.ndjsonLine(line, lineNumber, step, fail);
          if (resource) yield resource;
        }
      }
      const last = this.ndjsonLine(partial + decoder.decode(), lineNumber + 1, step, fail);
      if (last) yield last;
    } finally {
      timer.clear();
      await reader.cancel().catch(() => undefined);
    }
  }

  private ndjsonLine(line: string, lineNumber: number, step: string, fail: (error: PartnerError) => PartnerError): Resource | undefined {
    const text = line.trim();
    if (text === '') return undefined;
    let resource: unknown;
    try {
      resource = JSON.parse(text);
    } catch {
      throw fail(protocolError(this.endpoint.id, step, `line ${lineNumber} that is not JSON`, 200));
    }
    if (!isResource(resource)) throw fail(protocolError(this.endpoint.id, step, `line ${lineNumber} that is not a FHIR resource`, 200));
    return resource;
  }

  /** Bulk Data 2.0 manifest; a lenient adapter reads a missing error list as empty and a missing requiresAccessToken as true. */
  private manifest(value: unknown, step: string): BulkManifest {
    const bad = (what: string) => protocolError(this.endpoint.id, step, `a manifest ${what}`, 200);
    if (typeof value !== 'object' || value === null) throw bad('that is not a JSON object');
    const raw = value as Record<string, unknown>;
    const partial = this.adapter.partialManifests;
    if (typeof raw.transactionTime !== 'string') throw bad('without transactionTime');
    if (typeof raw.requiresAccessToken !== 'boolean' && !(partial && raw.requiresAccessToken === undefined)) throw bad('without requiresAccessToken');
    if (!Array.isArray(raw.output)) throw bad('without an output array');
    if (!Array.isArray(raw.error) && !(partial && raw.error === undefined)) throw bad('without an error array');
    const files = (list: unknown[], name: string) =>
      list.map((file, i) => {
        const entry = file as { type?: unknown; url?: unknown; count?: unknown };
        if (typeof entry?.type !== 'string' || typeof entry.url !== 'string') throw bad(`whose ${name}[${i}] lacks type or url`);
        return { type: entry.type, url: this.resolve(entry.url, step), ...(typeof entry.count === 'number' ? { count: entry.count } : {}) };
      });
    return {
      transactionTime: raw.transactionTime,
      requiresAccessToken: typeof raw.requiresAccessToken === 'boolean' ? raw.requiresAccessToken : true,
      output: files(raw.output, 'output'),
      error: files(Array.isArray(raw.error) ? raw.error : [], 'error').map(({ type, url }) => ({ type, url })),
    };
  }

  /** An absolute http(s) URL from the partner; relative ones are resolved against the base only when the adapter allows them. */
  private resolve(url: string, step: string): string {
    if (URL.canParse(url)) {
      const parsed = new URL(url);
      if (parsed.protocol === 'https:' || parsed.protocol === 'http:') return parsed.toString();
      throw protocolError(this.endpoint.id, step, `a ${parsed.protocol.slice(0, 16)} URL`);
    }
    if (!this.adapter.relativeUrls) throw protocolError(this.endpoint.id, step, 'a relative URL where an absolute one is required');
    return new URL(url, `${this.endpoint.baseUrl}/`).toString();
  }

  /** A URL Baton's access token will be sent to: on the partner's base origin, or a protocol error. */
  private tokenUrl(url: string, step: string): string {
    if (!URL.canParse(url) || new URL(url).origin !== this.origin) throw protocolError(this.endpoint.id, step, 'a URL off the partner’s base origin that would need Baton’s access token');
    return url;
  }

  /** A FHIR JSON answer with one of the expected statuses. */
  private async fhirJson(response: Response, step: string, statuses: number[]): Promise<unknown> {
    if (!statuses.includes(response.status)) {
      await response.body?.cancel();
      throw protocolError(this.endpoint.id, step, `${response.status} where ${statuses.join(' or ')} was expected`, response.status);
    }
    return this.json(response, step, this.adapter.fhirJsonTypes);
  }

  private async json(response: Response, step: string, types: string[]): Promise<unknown> {
    const type = mediaType(response.headers.get('content-type'));
    if (!types.includes(type)) {
      await response.body?.cancel();
      throw protocolError(this.endpoint.id, step, `content type "${type.slice(0, 64)}" instead of ${types.join(', ')}`, response.status);
    }
    const value = parseJson(await response.text());
    if (value === undefined) throw protocolError(this.endpoint.id, step, 'a body that is not JSON', response.status);
    return value;
  }

  /** One request read to the end inside its timeout and the partner's breaker, with a fresh token on a 401. */
  private async exchange<T>(exchange: Exchange, signal: AbortSignal | undefined, read: (response: Response) => Promise<T>): Promise<T> {
    return this.authorized(exchange, async (token) => {
      const { response, timer, fail } = await this.send(exchange, signal, token);
      try {
        return await read(response);
      } catch (error) {
        throw fail(error);
      } finally {
        timer.clear();
      }
    });
  }

  /** One request whose body the caller streams: the breaker and the timeout cover it until the headers arrive; the timer is the caller's to re-arm. */
  private open(exchange: Exchange, signal: AbortSignal | undefined): Promise<Opened> {
    return this.authorized(exchange, (token) => this.send(exchange, signal, token));
  }

  private async authorized<T>(exchange: Exchange, attempt: (token: string | undefined) => Promise<T>): Promise<T> {
    const breakered = (token: string | undefined) => this.deps.breakers.execute(this.endpoint.id, () => attempt(token));
    if (!exchange.auth) return breakered(undefined);
    const token = await this.accessToken();
    try {
      return await breakered(token);
    } catch (error) {
      // SMART: a 401 may be an expired or revoked token; one fresh token, and a second refusal is final.
      if (!(error instanceof PartnerError && error.status === 401 && error.code === 'unauthorized')) throw error;
      this.tokens.invalidate(this.endpoint, token);
      return breakered(await this.accessToken());
    }
  }

  /** Sends the request and answers its response when 2xx; any other status is thrown classified. */
  private async send(exchange: Exchange, callSignal: AbortSignal | undefined, token: string | undefined): Promise<Opened> {
    const timer = new RequestTimer(this.endpoint.timeoutMs);
    const requestId = randomUUID();
    const started = performance.now();
    const log = { partner: this.endpoint.id, step: exchange.step, method: exchange.method, requestId };
    const fail = (error: unknown): PartnerError => {
      const failure = error instanceof PartnerError ? error : this.transportError(exchange.step, error, timer, callSignal);
      this.deps.logger.warn({ ...log, status: failure.status, code: failure.code, errorClass: failure.errorClass, ms: elapsed(started) }, 'partner request failed');
      return failure;
    };
    const headers = new Headers({ accept: exchange.accept, 'x-request-id': requestId });
    if (exchange.idempotencyKey !== undefined) headers.set('idempotency-key', exchange.idempotencyKey);
    if (token !== undefined) headers.set('authorization', `Bearer ${token}`);
    if (exchange.prefer) headers.set('prefer', exchange.prefer);
    if (exchange.body) headers.set('content-type', exchange.body.contentType);
    const signal = callSignal ? AbortSignal.any([timer.controller.signal, callSignal]) : timer.controller.signal;
    try {
      const response = await this.fetch(exchange.url, { method: exchange.method, headers, body: exchange.body?.text, signal });
      if (response.status < 200 || response.status > 299) {
        const body = await readErrorBody(response);
        throw exchange.refusal?.(response.status, body) ?? classifyFailure(this.adapter, this.endpoint.id, exchange.step, { status: response.status, headers: response.headers, outcome: operationOutcome(body) });
      }
      this.deps.logger.debug({ ...log, status: response.status, ms: elapsed(started) }, 'partner request');
      return { response, timer, fail };
    } catch (error) {
      timer.clear();
      throw fail(error);
    }
  }

  private transportError(step: string, error: unknown, timer: RequestTimer, signal: AbortSignal | undefined): PartnerError {
    if (!timer.timedOut && signal?.aborted) return new PartnerError('retryable', 'cancelled', `The call to partner ${this.endpoint.id} for ${step} was cancelled`, { cause: error });
    return transportFailure(this.endpoint.id, step, error, timer.timedOut);
  }

  /** SMART Backend Services token from the partner's token endpoint, cached (tokens.ts). */
  private async accessToken(): Promise<string> {
    const step = 'token request';
    const key = () =>
      this.deps.keys.get(this.endpoint.keyId).catch((error: unknown) => {
        throw new PartnerError('retryable', 'server-error', `Baton could not load its client key ${this.endpoint.keyId}`, { cause: error });
      });
    return this.tokens.get(this.endpoint, key, async (form) => {
      const exchange: Exchange = {
        step,
        method: 'POST',
        url: this.endpoint.tokenUrl,
        accept: 'application/json',
        body: { contentType: 'application/x-www-form-urlencoded', text: form.toString() },
        auth: false,
        // RFC 6749 §5.2: the client is refused with 400 or 401 and an OAuth error code; no new token will change that.
        refusal: (status, body) => {
          if (status !== 400 && status !== 401 && status !== 403) return undefined;
          const code = typeof (body as { error?: unknown })?.error === 'string' ? ` (${(body as { error: string }).error.slice(0, 64)})` : '';
          return new PartnerError('non-retryable', 'unauthorized', `Partner ${this.endpoint.id} refused Baton's token request with ${status}${code}`, { status });
        },
      };
      // No caller's signal: callers waiting for this token share the request.
      const answer = await this.exchange(exchange, undefined, (response) => this.json(response, step, ['application/json']));
      const { access_token: accessToken, token_type: tokenType, expires_in: expiresIn } = (answer ?? {}) as Record<string, unknown>;
      if (typeof accessToken !== 'string' || !accessToken || typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer') {
        throw protocolError(this.endpoint.id, step, 'a token response without a bearer access_token', 200);
      }
      return { accessToken, expiresInSeconds: typeof expiresIn === 'number' && expiresIn > 0 ? expiresIn : undefined };
    });
  }
}

function fhirBody(resource: Resource): { contentType: string; text: string } {
  return { contentType: FHIR_JSON, text: JSON.stringify(resource) };
}

function isResource(value: unknown, resourceType?: string): value is Resource {
  if (typeof value !== 'object' || value === null) return false;
  const type = (value as { resourceType?: unknown }).resourceType;
  return typeof type === 'string' && (resourceType === undefined || type === resourceType);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function operationOutcome(body: unknown): OperationOutcome | undefined {
  return isResource(body, 'OperationOutcome') ? (body as OperationOutcome) : undefined;
}

/** The start of an error response's body, parsed as JSON when it is; the rest is discarded. */
async function readErrorBody(response: Response): Promise<unknown> {
  if (!response.body) return undefined;
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < MAX_ERROR_BODY_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // A body cut short: the status alone classifies the failure.
    return undefined;
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return parseJson(Buffer.concat(chunks).toString('utf8'));
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}
