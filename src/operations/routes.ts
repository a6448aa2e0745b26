import type { Config } from '../config.ts';
import type { OperationRoute } from '../fhir/http/routes.ts';
import { auditVerifyOperation } from './audit-verify.ts';

/** Every FHIR operation Baton serves, mounted under /fhir by the REST routes. */
export function operationRoutes(audit: Config['audit'] | undefined): OperationRoute[] {
  return [{ method: 'GET', path: '/AuditEvent/$verify', handle: (ctx, { params }) => auditVerifyOperation(ctx, params, audit?.key) }];
}
