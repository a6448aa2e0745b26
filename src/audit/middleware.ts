import type { MiddlewareHandler } from 'hono';
import type { AccessPolicy } from '../fhir/access.ts';
import type { AuditSink } from '../fhir/audit-sink.ts';
import { FhirError } from '../fhir/errors.ts';
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
