import type { KeyObject } from 'node:crypto';
import type { Parameters, ParametersParameter } from '@medplum/fhirtypes';
import { type VerifyResult, VerifyRangeError, parseVerifyRange, verifyAuditTrail } from '../audit/verify.ts';
import { badRequest } from '../fhir/errors.ts';
import type { FhirContext } from '../fhir/interactions.ts';

/**
 * GET [base]/AuditEvent/$verify[?from=N&to=N]: recomputes the audit trail's hash chain and
 * checkpoints (issue 4) and answers a Parameters resource whose shape stays stable: `verified`,
 * `checkedEvents`, `lastCheckpoint` (`position`, `time`) and, when not verified,
 * `firstInvalidPosition` and `reason`. `auditKey` is BATON_AUDIT_KEY when configured: then only
 * its signatures count.
 */
export async function auditVerifyOperation(ctx: FhirContext, params: URLSearchParams, auditKey?: KeyObject): Promise<Parameters> {
  // Issue 4: only auditors, the holders of AuditEvent search, may verify the trail.
  ctx.access.authorize('s', 'AuditEvent');
  const result = await verifyAuditTrail(ctx.q, { ...verifyRange(params), auditKey });
  return verificationParameters(result);
}

function verifyRange(params: URLSearchParams) {
  for (const name of ['from', 'to']) {
    if (params.getAll(name).length > 1) throw badRequest(`${name} may be given once`, [name]);
  }
  try {
    return parseVerifyRange(params.get('from') ?? undefined, params.get('to') ?? undefined);
  } catch (error) {
    if (error instanceof VerifyRangeError) throw badRequest(error.message);
    throw error;
  }
}

function verificationParameters(result: VerifyResult): Parameters {
  const parameter: ParametersParameter[] = [
    { name: 'verified', valueBoolean: result.verified },
    { name: 'checkedEvents', valueInteger: result.checkedEvents },
  ];
  if (result.lastCheckpoint) {
    parameter.push({
      name: 'lastCheckpoint',
      part: [
        { name: 'position', valueInteger: result.lastCheckpoint.position },
        { name: 'time', valueInstant: result.lastCheckpoint.time },
      ],
    });
  }
  if (result.firstInvalidPosition !== undefined) parameter.push({ name: 'firstInvalidPosition', valueInteger: result.firstInvalidPosition });
  if (result.reason !== undefined) parameter.push({ name: 'reason', valueString: result.reason });
  return { resourceType: 'Parameters', parameter };
}
