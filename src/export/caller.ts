import { ScopedAccess } from '../auth/access-policy.ts';
import type { AccessPolicy } from '../fhir/access.ts';
import { FhirError, outcome } from '../fhir/errors.ts';

/**
 * Who started an export, as the job stores it: enough to rebuild the access policy the export
 * runs under in a worker or another process, with no request at hand. Grants are never stored:
 * the policy reads them from access_grants when the job runs and at every download, so a grant
 * that has expired since the kick-off hides its member's data.
 */
export interface ExportCaller {
  clientId: string;
  kind: 'partner' | 'internal' | 'operator';
  scopes: string[];
}

/** The caller of a request; Baton itself (no caller) does not export. */
export function exportCaller(access: AccessPolicy): ExportCaller {
  if (!(access instanceof ScopedAccess)) throw new FhirError(403, outcome('error', 'forbidden', 'An export is started by an authenticated client'));
  const { clientId, kind, scopes } = access.principal;
  return { clientId, kind, scopes: [...scopes] };
}

/**
 * The access policy of a stored caller, exactly as authentication builds it from a token.
 * `isolated` says whether it is a partner's, who sees only the members it holds grants for.
 */
export function callerPolicy(caller: ExportCaller, baseUrl: string): ScopedAccess {
  return new ScopedAccess({ clientId: caller.clientId, kind: caller.kind, scopes: caller.scopes }, baseUrl);
}
