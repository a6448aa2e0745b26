import type { MiddlewareHandler } from 'hono';
import { decodeJwt } from 'jose';
import { newId } from '../db/ids.ts';
import type { AccessPolicy } from '../fhir/access.ts';
import type { AuditSink } from '../fhir/audit-sink.ts';
import { FhirError } from '../fhir/errors.ts';
import { toAuditEvent } from './balp.ts';
import type { AuditCaller, AuditRecord } from './record.ts';
import { RequestAudit } from './trail.ts';
import type { AuditWriter } from './writer.ts';

/** The CapabilityStatement and discovery documents: public, about no one, polled by load balancers and tools. */
const UNAUDITED = /^\/(metadata|\.well-known\/.*)\/?$/;

/**
 * Audits every request to the FHIR API, successful or not (401, 403, 404, 422, 500): sets the
 * request's RequestAudit (the AuditSink interactions report to), and once the response is known
 * records the events the writes have not already recorded in their transactions. The response
 * leaves only after its events are stored; if they cannot be, the request fails.
 */
export type AuditedEnv = { Variables: { access: AccessPolicy; audit: AuditSink; requestId: string } };

export function auditFhirRequests(deps: { writer: AuditWriter; baseUrl: string }): MiddlewareHandler<AuditedEnv> {
  return async (c, next) => {
    const path = c.req.path.replace(/^\/fhir/, '');
    if (c.req.method === 'GET' && UNAUDITED.test(path)) return next();
    const url = new URL(c.req.url);
    const audit = new RequestAudit(
      { requestId: c.get('requestId'), method: c.req.method, path, search: url.search, server: deps.baseUrl, sourceAddress: remoteAddress(c.env) },
      () => (c.get('access') as AccessPolicy | undefined)?.caller,
    );
    c.set('audit', audit);
    await next();
    await deps.writer.record(audit.finish(c.res.status, c.error instanceof FhirError ? c.error.message : undefined));
  };
}

/** The peer address from @hono/node-server's bindings; absent when the app is called in-process. */
function remoteAddress(env: unknown): string | undefined {
  const address = (env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket?.remoteAddress;
  return typeof address === 'string' ? address : undefined;
}

/**
 * Audits token requests (BALP: a User Authentication event): who asked, and the outcome. A
 * successful request records the issued token's jti, so every later use of that token (which
 * carries the same jti as its policy) can be traced back to its issuance.
 */
export function auditTokenRequests(deps: { writer: AuditWriter; baseUrl: string }): MiddlewareHandler<AuditedEnv> {
  return async (c, next) => {
    await next();
    const status = c.res.status;
    const issued = status === 200 ? await issuedToken(c.res.clone()) : undefined;
    const problem = status === 200 ? undefined : await oauthError(c.res.clone());
    const event = toAuditEvent({
      id: newId(),
      recorded: new Date().toISOString(),
      interaction: 'token',
      action: 'E',
      outcome: status === 200 ? '0' : status >= 500 ? '8' : '4',
      ...(problem ? { outcomeDescription: problem } : {}),
      httpStatus: status,
      ...(issued ? { caller: issued } : {}),
      sourceAddress: remoteAddress(c.env),
      requestId: c.get('requestId'),
      server: deps.baseUrl,
      query: `${c.req.method} ${new URL(c.req.url).pathname}`,
    });
    await deps.writer.record([event]);
  };
}

/** The admin API's parts, by the path segment after /admin/: a closed list, so a path cannot invent an audit code. */
const ADMIN_OPERATIONS: Record<string, string> = {
  clients: 'urn:baton:admin:clients',
  matching: 'urn:baton:admin:matching-policy',
  'match-decisions': 'urn:baton:admin:match-decisions',
  reviews: 'urn:baton:admin:reviews',
  routing: 'urn:baton:admin:routing',
  tasks: 'urn:baton:admin:tasks',
};

/** The audit operation of an admin API call, named for the part of the API its path is in. */
export function adminOperation(path: string): string {
  const segment = /^\/admin\/([^/]+)/.exec(path)?.[1] ?? '';
  return Object.hasOwn(ADMIN_OPERATIONS, segment) ? ADMIN_OPERATIONS[segment] : 'urn:baton:admin';
}

/**
 * Audits the admin API (an operator's calls, and attempts without the admin token) and UDAP
 * dynamic registration. `operation` names which, or derives the name from the request path.
 */
export function auditRegistrations(deps: { writer: AuditWriter; baseUrl: string }, operation: string | ((path: string) => string), byOperator: boolean): MiddlewareHandler<AuditedEnv> {
  return async (c, next) => {
    await next();
    const status = c.res.status;
    const actions: Record<string, AuditRecord['action']> = { POST: 'C', DELETE: 'D', GET: 'R', PUT: 'U', PATCH: 'U' };
    const event = toAuditEvent({
      id: newId(),
      recorded: new Date().toISOString(),
      interaction: 'operation',
      operation: typeof operation === 'string' ? operation : operation(c.req.path),
      action: actions[c.req.method] ?? 'E',
      outcome: status < 400 ? '0' : status >= 500 ? '8' : '4',
      ...(status >= 400 && c.error instanceof FhirError ? { outcomeDescription: c.error.message } : {}),
      httpStatus: status,
      ...(byOperator && status !== 401 && status !== 403 && status !== 404 ? { caller: { clientId: 'operator', kind: 'operator' as const } } : {}),
      sourceAddress: remoteAddress(c.env),
      requestId: c.get('requestId'),
      server: deps.baseUrl,
      query: `${c.req.method} ${new URL(c.req.url).pathname}`,
    });
    await deps.writer.record([event]);
  };
}

async function issuedToken(response: Response): Promise<AuditCaller | undefined> {
  try {
    const { access_token: token } = (await response.json()) as { access_token?: string };
    const claims = decodeJwt(token as string);
    const kind = claims.client_kind;
    if (typeof claims.client_id !== 'string' || (kind !== 'partner' && kind !== 'internal')) return undefined;
    return { clientId: claims.client_id, kind, ...(typeof claims.jti === 'string' ? { tokenId: claims.jti } : {}) };
  } catch {
    return undefined;
  }
}

/** RFC 6749 §5.2's error code and description (Baton's own words, never the assertion). */
async function oauthError(response: Response): Promise<string> {
  try {
    const { error, error_description: description } = (await response.json()) as { error?: string; error_description?: string };
    return [error, description].filter(Boolean).join(': ') || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}
