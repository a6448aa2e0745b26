import type { Config } from '../config.ts';
import type { OperationRoute } from '../fhir/http/routes.ts';
import type { Metrics } from '../ops/metrics.ts';
import { auditVerifyOperation } from './audit-verify.ts';

export interface OperationDeps {
  audit: Config['audit'] | undefined;
  metrics: Metrics;
}

/** Every FHIR operation Baton serves, mounted under /fhir by the REST routes. */
export function operationRoutes(deps: OperationDeps): OperationRoute[] {
  return [{ method: 'GET', path: '/AuditEvent/$verify', handle: (ctx, { params }) => auditVerifyOperation(ctx, params, deps.audit?.key) }];
}
