import type { AuditEvent } from '@medplum/fhirtypes';
import { toAuditEvent } from '../audit/balp.ts';
import type { AuditOutcome } from '../audit/record.ts';
import { newId } from '../db/ids.ts';
import type { WorkflowJob } from './jobs.ts';
import { PartnerError } from './partner/types.ts';
import { WORKFLOW_CALLER } from './transition.ts';

/**
 * The AuditEvent of a step's exchange with a partner: Baton (the workflow, as client) sending the
 * member's demographics to the partner's $member-match, or asking it for the member's data. The
 * partner's base URL is the server of the event; the member here is its patient; the request is
 * recorded as BALP records queries, without any body. Steps that do not talk to a partner about
 * the member (validate, route, a status poll) have none.
 */
const OPERATIONS: Partial<Record<WorkflowJob['step'], (job: WorkflowJob) => { operation: string; request: string } | undefined>> = {
  match: () => ({ operation: 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match', request: 'POST Patient/$member-match' }),
  request: (job) => (job.state.requestType === 'bulk' ? { operation: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export', request: 'POST Patient/$export' } : undefined),
  import: (job) =>
    job.state.requestType === 'bulk'
      ? { operation: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export', request: `GET ${job.state.manifest?.output.length ?? 0} export files` }
      : { operation: 'http://hl7.org/fhir/OperationDefinition/Patient-everything', request: `GET Patient/${job.state.partnerMember?.id ?? ''}/$everything` },
};

export function outboundAuditEvent(job: WorkflowJob, partnerBaseUrl: string, memberId: string | undefined, error?: unknown): AuditEvent | undefined {
  const call = OPERATIONS[job.step]?.(job);
  if (!call) return undefined;
  const failure = error instanceof PartnerError ? error : undefined;
  const outcome: AuditOutcome = error === undefined ? '0' : failure && failure.errorClass !== 'retryable' ? '4' : '8';
  return toAuditEvent({
    id: newId(),
    recorded: new Date().toISOString(),
    interaction: 'operation',
    operation: call.operation,
    action: 'E',
    outcome,
    ...(error !== undefined ? { outcomeDescription: failure ? `${failure.code}: ${failure.message}` : 'Baton failed before the partner answered' } : {}),
    httpStatus: failure?.status ?? (error === undefined ? 200 : 0),
    caller: WORKFLOW_CALLER,
    requestId: `workflow-${job.taskId}`.slice(0, 64),
    server: partnerBaseUrl,
    resource: { type: 'Task', id: job.taskId },
    ...(memberId ? { patient: memberId } : {}),
    query: `${call.request.split(' ')[0]} ${partnerBaseUrl}/${call.request.split(' ').slice(1).join(' ')}`,
  });
}
