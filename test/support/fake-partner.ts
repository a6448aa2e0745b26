import { randomBytes, randomUUID } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Bundle, Coverage, Identifier, Observation, Parameters, Patient, Resource } from '@medplum/fhirtypes';
import { type JSONWebKeySet, type JWTVerifyGetKey, createLocalJWKSet, createRemoteJWKSet, jwtVerify } from 'jose';
import { ASSERTION_ALGORITHMS, ASSERTION_TYPE, assertionClaimProblem } from '../../src/auth/assertion-claims.ts';

/**
 * A scriptable fake partner payer on loopback, for tests and benchmarks of Baton's outbound
 * client and the requester workflow. By default it behaves as a correct partner:
 *
 * - `POST /auth/token` (tokenUrl): SMART Backend Services; verifies the client assertion's
 *   signature against `client.jwks` (or the set at `client.jwksUri`), its claims as Baton's own
 *   token endpoint does, and refuses a replayed jti; issues opaque bearer tokens.
 * - `POST /fhir/Patient/$member-match`: over `members`: one member with the request's family
 *   name and birth date (and card id, CoverageToMatch identifier or subscriberId, when given) →
 *   200 Parameters with MemberIdentifier (and MemberId unless `memberId: false`); none → 422
 *   not-found/`no-match`; several → 422 multiple-matches; no Consent while `consentRequired` →
 *   422 security/`consent-missing` (the codes Baton's own $member-match answers).
 * - `GET /fhir/Patient?identifier=<value>`: searchset of the Patients with that member id.
 * - `GET /fhir/Patient/{id}/$everything`: the Patient and its resources, `pageSize` a page, with
 *   absolute next links.
 * - Bulk Data: kick-off (GET or POST on `$export`, `Patient/$export`, `Group/{id}/$export`,
 *   `Group/{id}/$davinci-data-export`, with `Prefer: respond-async`; a POST's `patient`
 *   parameters narrow the export to those members) → 202 + Content-Location;
 *   the status URL answers 202 with Retry-After `retryAfterSeconds` for `exportPolls` polls, then
 *   200 with the manifest; DELETE → 202, then 404; files (one per resource type) are
 *   application/fhir+ndjson and need the token while `requiresAccessToken`.
 * - Idempotency: a POST repeating an Idempotency-Key gets the first answer again (replayed, the
 *   work not done again); faults are never stored for replay.
 *
 * `script(route, fault, times)` makes the next `times` requests to a route misbehave (see
 * Fault), `clearScripts(route)` stops that; `down()`/`up()` stop and restart listening (connections refused);
 * `transientFailures` answers a random share of requests 503 (benchmarks). Every request is
 * recorded in `calls`.
 */
export type FakeRoute = 'token' | 'member-match' | 'search' | 'everything' | 'kick-off' | 'status' | 'cancel' | 'file' | 'unknown';

export type Fault =
  /** Closes the connection without answering. */
  | { kind: 'reset' }
  /** Answers normally after `ms` (past the client's timeout, usually). */
  | { kind: 'delay'; ms: number }
  /** A canned answer: `body` an object (sent as application/fhir+json) or text. */
  | { kind: 'respond'; status: number; headers?: Record<string, string>; body?: unknown }
  /** The status URL answers 202 (Retry-After `retryAfterSeconds`) whatever the export's state. */
  | { kind: 'stuck' }
  /** The kick-off answers 200 instead of 202: with the Content-Location, or with the manifest itself. */
  | { kind: 'ok-instead-of-accepted'; with: 'location' | 'manifest' }
  /** The normal answer with another Content-Type. */
  | { kind: 'content-type'; contentType: string }
  /** The normal answer with its URLs (Content-Location, next links, manifest URLs) relative to the base. */
  | { kind: 'relative-urls' }
  /** The manifest without `error` and `requiresAccessToken`. */
  | { kind: 'partial-manifest' }
  /** The work is done again and answered 200 again despite a repeated Idempotency-Key. */
  | { kind: 'no-replay' }
  /** A file: sends `afterLines` lines, then waits for `until` before sending the rest. */
  | { kind: 'hold'; afterLines: number; until: Promise<void> }
  /** A file: sends `afterLines` lines, then closes the connection. */
  | { kind: 'cut'; afterLines: number };

export interface FakeMember {
  /** The Patient id at the partner. */
  id: string;
  family: string;
  given: string;
  birthDate: string;
  gender?: 'male' | 'female';
  /** The card's member id (Coverage identifier, type MB). */
  memberId: string;
  /** The member's data besides the Patient; by default a Coverage and three Observations. */
  resources?: Resource[];
}

export interface FakePartnerOptions {
  /** Baton's registration here: its client id and public keys (inline or at a jwks_uri). Without it every token request is refused. */
  client?: { clientId: string; jwks?: JSONWebKeySet; jwksUri?: string };
  members?: FakeMember[];
  memberId?: boolean;
  consentRequired?: boolean;
  /** Resources per $everything page (default 2). */
  pageSize?: number;
  /** Status polls answered 202 before the manifest (default 1). */
  exportPolls?: number;
  /** Retry-After of a 202 status (default 0, so tests do not wait). */
  retryAfterSeconds?: number;
  requiresAccessToken?: boolean;
  tokenLifetimeSeconds?: number;
  /** Answers this share of the requests (token requests aside) 503 without Retry-After; seeded. */
  transientFailures?: { rate: number; seed?: number };
}

export interface FakeCall {
  route: FakeRoute;
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  requestId: string | undefined;
  authorized: boolean;
  /** 0 when the connection was closed without an answer. */
  status: number;
  /** The answer was the stored answer of an earlier request with this Idempotency-Key. */
  replayed: boolean;
  fault: Fault['kind'] | 'transient' | undefined;
}

export interface FakePartner {
  /** The FHIR base, http://127.0.0.1:<port>/fhir. */
  baseUrl: string;
  tokenUrl: string;
  calls: FakeCall[];
  members: FakeMember[];
  /** Calls to a route (all calls without one). */
  count(route?: FakeRoute): number;
  /** The next `times` (default 1, Infinity for ever) requests to the route meet the fault, after the faults already scripted. */
  script(route: FakeRoute, fault: Fault, times?: number): void;
  /** Drops the faults still scripted for a route (every route without one). */
  clearScripts(route?: FakeRoute): void;
  /** Forgets every issued token: the next request with one gets 401. */
  revokeTokens(): void;
  /** Stops listening (connections refused) until up(). */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string | undefined;
}

interface ExportJob {
  polls: number;
  cancelled: boolean;
  files: { type: string; resources: Resource[] }[];
}

const FHIR_JSON = 'application/fhir+json';
const MEMBER_SYSTEM = 'urn:fake-partner:member-id';
const MB = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }, { system: 'http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp', code: 'UMB' }] };
const KICK_OFF = /^\/fhir\/(?:Patient\/|Group\/[A-Za-z0-9\-.]+\/)?\$(?:export|davinci-data-export)$/;

export const DEFAULT_MEMBERS: FakeMember[] = [
  { id: 'okafor', family: 'Okafor', given: 'Margaret', birthDate: '1957-04-09', gender: 'female', memberId: 'W123456789-01' },
  { id: 'twin-a', family: 'Lindqvist', given: 'Emma', birthDate: '2010-06-15', gender: 'female', memberId: 'L5550001-02' },
  { id: 'twin-b', family: 'Lindqvist', given: 'Ella', birthDate: '2010-06-15', gender: 'female', memberId: 'L5550001-03' },
];

export async function startFakePartner(options: FakePartnerOptions = {}): Promise<FakePartner> {
  const members = options.members ?? DEFAULT_MEMBERS.map((m) => ({ ...m }));
  const calls: FakeCall[] = [];
  const scripts = new Map<FakeRoute, { fault: Fault; remaining: number }[]>();
  const tokens = new Map<string, number>();
  const jtis = new Set<string>();
  const stored = new Map<string, { body: string; answer: Answer }>();
  const jobs = new Map<string, ExportJob>();
  const sockets = new Set<Socket>();
  const random = seeded(options.transientFailures?.seed ?? 1);
  const keySet: JWTVerifyGetKey | undefined = options.client?.jwks
    ? createLocalJWKSet(options.client.jwks)
    : options.client?.jwksUri
      ? createRemoteJWKSet(new URL(options.client.jwksUri), { cooldownDuration: 0 })
      : undefined;
  let port = 0;
  let baseUrl = '';
  let tokenUrl = '';

  const takeFault = (route: FakeRoute): Fault | undefined => {
    const queue = scripts.get(route);
    const next = queue?.[0];
    if (!queue || !next) return undefined;
    next.remaining--;
    if (next.remaining <= 0) queue.shift();
    return next.fault;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', baseUrl);
    const method = request.method ?? 'GET';
    const route = routeOf(method, url.pathname);
    const bearer = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    const authorized = bearer !== undefined && (tokens.get(bearer) ?? 0) > Date.now();
    const idempotencyKey = header(request, 'idempotency-key');
    const call: FakeCall = { route, method, path: url.pathname, idempotencyKey, requestId: header(request, 'x-request-id'), authorized, status: 0, replayed: false, fault: undefined };
    calls.push(call);
    const body = await readBody(request);

    let fault = takeFault(route);
    if (!fault && route !== 'token' && options.transientFailures && random() < options.transientFailures.rate) {
      call.fault = 'transient';
      return send(response, call, { status: 503, headers: {}, body: json(outcome('transient', 'Injected transient failure')) });
    }
    call.fault = fault?.kind;
    if (fault?.kind === 'reset') {
      request.socket.destroy();
      return;
    }
    if (fault?.kind === 'delay') {
      const { ms } = fault;
      await new Promise((resolve) => setTimeout(resolve, ms));
      fault = undefined;
    }
    if (fault?.kind === 'respond') {
      const text = fault.body === undefined ? undefined : typeof fault.body === 'string' ? fault.body : JSON.stringify(fault.body);
      const type: Record<string, string> = typeof fault.body === 'string' || fault.body === undefined ? {} : { 'content-type': FHIR_JSON };
      return send(response, call, { status: fault.status, headers: { ...type, ...fault.headers }, body: text });
    }

    if (route === 'token') return send(response, call, await token(body));
    if (route === 'unknown') return send(response, call, { status: 404, headers: { 'content-type': FHIR_JSON }, body: json(outcome('not-found', 'No such endpoint')) });
    const needsToken = route !== 'file' || (options.requiresAccessToken ?? true);
    if (needsToken && !authorized) return send(response, call, { status: 401, headers: { 'content-type': FHIR_JSON, 'www-authenticate': 'Bearer' }, body: json(outcome('login', 'A valid access token is required')) });

    const replayKey = method === 'POST' && idempotencyKey !== undefined ? `${route} ${idempotencyKey}` : undefined;
    const replay = replayKey === undefined || fault?.kind === 'no-replay' ? undefined : stored.get(replayKey);
    if (replay && replay.body !== body) {
      // IETF Idempotency-Key draft: the key reused for another request is refused.
      return send(response, call, { status: 422, headers: { 'content-type': FHIR_JSON }, body: json(outcome('business-rule', 'Idempotency-Key reused for another request')) });
    }
    if (replay) {
      call.replayed = true;
      return send(response, call, replay.answer);
    }
    if (route === 'file') return sendFile(response, call, url.pathname, fault);
    let answer = answerFor(route, method, url, body, fault, header(request, 'prefer') ?? '');
    if (fault?.kind === 'content-type') answer = { ...answer, headers: { ...answer.headers, 'content-type': fault.contentType } };
    if (fault?.kind === 'relative-urls') answer = relative(answer);
    // Like a real server, only a final answer is kept for replay, and only the first.
    if (replayKey !== undefined && !stored.has(replayKey) && answer.status < 500 && answer.status !== 429) stored.set(replayKey, { body, answer });
    return send(response, call, answer);
  };

  const relative = (answer: Answer): Answer => {
    const strip = (text: string) => text.replaceAll(`${baseUrl}/`, '');
    const headers = { ...answer.headers };
    if (headers['content-location']) headers['content-location'] = strip(headers['content-location']);
    return { ...answer, headers, body: answer.body === undefined ? undefined : strip(answer.body) };
  };

  const token = async (body: string): Promise<Answer> => {
    const form = new URLSearchParams(body);
    const refuse = (error: string, description: string): Answer => ({ status: error === 'invalid_client' ? 401 : 400, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error, error_description: description }) });
    if (form.get('grant_type') !== 'client_credentials') return refuse('unsupported_grant_type', 'only client_credentials');
    if (form.get('client_assertion_type') !== ASSERTION_TYPE) return refuse('invalid_request', 'client_assertion_type');
    if (!form.get('scope')) return refuse('invalid_request', 'scope is required');
    const assertion = form.get('client_assertion') ?? '';
    if (!options.client || !keySet) return refuse('invalid_client', 'no client is registered');
    try {
      const { payload } = await jwtVerify(assertion, keySet, { algorithms: ASSERTION_ALGORITHMS });
      const problem = assertionClaimProblem(payload, { clientId: options.client.clientId, tokenUrl, now: Math.floor(Date.now() / 1000) });
      if (problem) return refuse('invalid_client', problem);
      if (jtis.has(payload.jti as string)) return refuse('invalid_client', 'jti replayed');
      jtis.add(payload.jti as string);
    } catch {
      return refuse('invalid_client', 'the assertion could not be verified');
    }
    const accessToken = randomBytes(24).toString('base64url');
    const lifetime = options.tokenLifetimeSeconds ?? 300;
    tokens.set(accessToken, Date.now() + lifetime * 1000);
    return { status: 200, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body: JSON.stringify({ access_token: accessToken, token_type: 'bearer', expires_in: lifetime, scope: form.get('scope') }) };
  };

  const answerFor = (route: FakeRoute, method: string, url: URL, body: string, fault: Fault | undefined, prefer: string): Answer => {
    const fhir = (status: number, resource: unknown, headers: Record<string, string> = {}): Answer => ({ status, headers: { 'content-type': FHIR_JSON, ...headers }, body: json(resource) });
    switch (route) {
      case 'member-match':
        return memberMatch(body, fhir);
      case 'search': {
        const value = url.searchParams.get('identifier')?.split('|').pop();
        const found = members.filter((m) => m.memberId === value);
        return fhir(200, { resourceType: 'Bundle', type: 'searchset', total: found.length, entry: found.map((m) => ({ fullUrl: `${baseUrl}/Patient/${m.id}`, resource: patientOf(m), search: { mode: 'match' } })) });
      }
      case 'everything': {
        const id = url.pathname.split('/')[3];
        const member = members.find((m) => m.id === id);
        if (!member) return fhir(404, outcome('not-found', 'No such Patient'));
        const all = [patientOf(member), ...resourcesOf(member)];
        const size = options.pageSize ?? 2;
        const page = Number(url.searchParams.get('page') ?? '0');
        const link = [{ relation: 'self', url: `${baseUrl}/Patient/${id}/$everything?page=${page}` }];
        if ((page + 1) * size < all.length) link.push({ relation: 'next', url: `${baseUrl}/Patient/${id}/$everything?page=${page + 1}` });
        const entry = all.slice(page * size, (page + 1) * size).map((resource) => ({ fullUrl: `${baseUrl}/${resource.resourceType}/${resource.id}`, resource, search: { mode: 'match' as const } }));
        return fhir(200, { resourceType: 'Bundle', type: 'searchset', total: all.length, link, entry } satisfies Bundle);
      }
      case 'kick-off': {
        if (!/respond-async/.test(prefer)) return fhir(400, outcome('invalid', 'Prefer: respond-async is required'));
        const id = randomUUID();
        jobs.set(id, { polls: 0, cancelled: false, files: exportFiles(method === 'POST' ? requestedPatients(body) : undefined) });
        const statusUrl = `${baseUrl}/$export-status/${id}`;
        if (fault?.kind === 'ok-instead-of-accepted' && fault.with === 'manifest') return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(manifestOf(id, url.toString(), false)) };
        return fhir(fault?.kind === 'ok-instead-of-accepted' ? 200 : 202, outcome('informational', 'Export started'), { 'content-location': statusUrl });
      }
      case 'status':
      case 'cancel': {
        const id = url.pathname.split('/').pop() as string;
        const job = jobs.get(id);
        if (!job || job.cancelled) return fhir(404, outcome('not-found', 'No such export'));
        if (method === 'DELETE') {
          job.cancelled = true;
          return fhir(202, outcome('informational', 'Export cancelled'));
        }
        job.polls++;
        if (fault?.kind === 'stuck' || job.polls <= (options.exportPolls ?? 1)) {
          return { status: 202, headers: { 'retry-after': String(options.retryAfterSeconds ?? 0), 'x-progress': `poll ${job.polls}` }, body: undefined };
        }
        return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(manifestOf(id, `${baseUrl}/$export`, fault?.kind === 'partial-manifest')) };
      }
      default:
        return fhir(404, outcome('not-found', 'No such endpoint'));
    }
  };

  const memberMatch = (body: string, fhir: (status: number, resource: unknown) => Answer): Answer => {
    let parameters: Parameters;
    try {
      parameters = JSON.parse(body) as Parameters;
    } catch {
      return fhir(400, outcome('structure', 'The body is not JSON'));
    }
    const resource = <T>(name: string) => parameters.parameter?.find((p) => p.name === name)?.resource as T | undefined;
    const patient = resource<Patient>('MemberPatient');
    const coverage = resource<Coverage>('CoverageToMatch');
    if (parameters.resourceType !== 'Parameters' || !patient || !coverage) return fhir(400, outcome('required', 'MemberPatient and CoverageToMatch are required'));
    if ((options.consentRequired ?? true) && !resource('Consent')) return fhir(422, refusal('security', 'consent-missing', 'A Consent is required'));
    const card = coverage.identifier?.[0]?.value ?? coverage.subscriberId;
    const found = members.filter(
      (m) => m.family.toLowerCase() === patient.name?.[0]?.family?.toLowerCase() && m.birthDate === patient.birthDate && (card === undefined || m.memberId === card),
    );
    if (found.length > 1) return fhir(422, refusal('multiple-matches', 'multiple-matches', 'More than one member matches the request'));
    const member = found[0];
    if (!member) return fhir(422, refusal('not-found', 'no-match', 'No unique member matches the request'));
    const identifier: Identifier = { type: MB, system: MEMBER_SYSTEM, value: member.memberId };
    return fhir(200, {
      resourceType: 'Parameters',
      parameter: [{ name: 'MemberIdentifier', valueIdentifier: identifier }, ...(options.memberId === false ? [] : [{ name: 'MemberId', valueReference: { reference: `Patient/${member.id}` } }])],
    });
  };

  /** The members' data by resource type: the `patient` members given to the kick-off, or every member. */
  const exportFiles = (patients: string[] | undefined): ExportJob['files'] => {
    const byType = new Map<string, Resource[]>();
    for (const member of members.filter((m) => patients === undefined || patients.includes(m.id))) {
      for (const resource of [patientOf(member), ...resourcesOf(member)]) {
        const ofType = byType.get(resource.resourceType) ?? [];
        ofType.push(resource);
        byType.set(resource.resourceType, ofType);
      }
    }
    return [...byType].map(([type, resources]) => ({ type, resources }));
  };

  const manifestOf = (id: string, request: string, partial: boolean) => {
    const job = jobs.get(id) as ExportJob;
    return {
      transactionTime: new Date().toISOString(),
      request,
      ...(partial ? {} : { requiresAccessToken: options.requiresAccessToken ?? true }),
      output: job.files.map((file, n) => ({ type: file.type, url: `${baseUrl}/$export-file/${id}/${n}`, count: file.resources.length })),
      ...(partial ? {} : { error: [] }),
    };
  };

  const sendFile = async (response: ServerResponse, call: FakeCall, path: string, fault: Fault | undefined): Promise<void> => {
    const [, , , id, n] = path.split('/');
    const file = jobs.get(id ?? '')?.files[Number(n)];
    if (!file || jobs.get(id ?? '')?.cancelled) return send(response, call, { status: 404, headers: { 'content-type': FHIR_JSON }, body: json(outcome('not-found', 'No such file')) });
    call.status = 200;
    response.writeHead(200, { 'content-type': fault?.kind === 'content-type' ? fault.contentType : 'application/fhir+ndjson' });
    for (const [i, resource] of file.resources.entries()) {
      if (fault?.kind === 'hold' && i === fault.afterLines) await fault.until;
      if (fault?.kind === 'cut' && i === fault.afterLines) {
        response.socket?.destroy();
        return;
      }
      const line = `${JSON.stringify(resource)}\n`;
      // Under a fault, each line is on the wire before the next step, so a cut comes after the lines written;
      // otherwise the client's pace is followed (backpressure), as a server streaming a large file would.
      if (fault) await new Promise((resolve) => response.write(line, resolve));
      else if (!response.write(line)) await new Promise((resolve) => response.once('drain', resolve));
    }
    response.end();
  };

  const server: Server = createServer((request, response) => {
    handle(request, response).catch(() => request.socket.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const listen = () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  const stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  await listen();
  port = (server.address() as AddressInfo).port;
  baseUrl = `http://127.0.0.1:${port}/fhir`;
  tokenUrl = `http://127.0.0.1:${port}/auth/token`;

  return {
    baseUrl,
    tokenUrl,
    calls,
    members,
    count: (route) => calls.filter((call) => route === undefined || call.route === route).length,
    script: (route, fault, times = 1) => {
      if (!(times >= 1)) throw new RangeError('script() takes times ≥ 1; clearScripts(route) drops scripted faults');
      scripts.set(route, [...(scripts.get(route) ?? []), { fault, remaining: times }]);
    },
    clearScripts: (route) => {
      if (route === undefined) scripts.clear();
      else scripts.delete(route);
    },
    revokeTokens: () => tokens.clear(),
    down: stop,
    up: listen,
    close: stop,
  };
}

function routeOf(method: string, path: string): FakeRoute {
  if (path === '/auth/token' && method === 'POST') return 'token';
  if (path === '/fhir/Patient/$member-match' && method === 'POST') return 'member-match';
  if (path === '/fhir/Patient' && method === 'GET') return 'search';
  if (/^\/fhir\/Patient\/[^/]+\/\$everything$/.test(path) && method === 'GET') return 'everything';
  if (KICK_OFF.test(path) && (method === 'GET' || method === 'POST')) return 'kick-off';
  if (path.startsWith('/fhir/$export-status/')) return method === 'DELETE' ? 'cancel' : 'status';
  if (path.startsWith('/fhir/$export-file/') && method === 'GET') return 'file';
  return 'unknown';
}

/** Bulk Data POST kick-off: the ids of its `patient` parameters, undefined when it names none. */
function requestedPatients(body: string): string[] | undefined {
  let parameters: Parameters;
  try {
    parameters = JSON.parse(body) as Parameters;
  } catch {
    return undefined;
  }
  const ids = (parameters.parameter ?? []).filter((p) => p.name === 'patient').map((p) => p.valueReference?.reference?.split('/').pop() ?? '');
  return ids.length > 0 ? ids : undefined;
}

function patientOf(member: FakeMember): Patient {
  return {
    resourceType: 'Patient',
    id: member.id,
    identifier: [{ type: MB, system: MEMBER_SYSTEM, value: member.memberId }],
    name: [{ family: member.family, given: [member.given] }],
    birthDate: member.birthDate,
    gender: member.gender ?? 'unknown',
  };
}

function resourcesOf(member: FakeMember): Resource[] {
  if (member.resources) return member.resources;
  const subject = { reference: `Patient/${member.id}` };
  const coverage: Coverage = { resourceType: 'Coverage', id: `${member.id}-coverage`, status: 'active', beneficiary: subject, payor: [{ display: 'Fake Partner Plan' }] };
  const observations: Observation[] = [1, 2, 3].map((n) => ({
    resourceType: 'Observation',
    id: `${member.id}-obs-${n}`,
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
    subject,
    valueQuantity: { value: 60 + n, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  }));
  return [coverage, ...observations];
}

function outcome(code: string, diagnostics: string) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: code === 'informational' ? 'information' : 'error', code, diagnostics }] };
}

function refusal(code: string, detail: string, diagnostics: string) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { coding: [{ system: 'urn:fake-partner:outcome', code: detail }] }, diagnostics }] };
}

function json(value: unknown): string {
  return JSON.stringify(value);
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function send(response: ServerResponse, call: FakeCall, answer: Answer): void {
  call.status = answer.status;
  response.writeHead(answer.status, answer.headers);
  response.end(answer.body);
}

/** mulberry32: a seeded generator, so injected failures (and jitter in tests) are the same on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
