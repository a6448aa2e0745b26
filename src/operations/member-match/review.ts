import type { Task } from '@medplum/fhirtypes';
import type { Queryable } from '../../db/connection.ts';
import { systemAccess } from '../../fhir/access.ts';
import * as interactions from '../../fhir/interactions.ts';
import { OWN_ORGANIZATION_ID } from '../../fhir/own-organization.ts';

/**
 * Manual review (issue 5): a match the engine could not settle becomes a Task on hold for an
 * operator, naming the candidates and the stored decision. Its businessStatus follows the
 * request stages of DESIGN.md (manual-review); the operator's answer completes or rejects it.
 * The Task names the stored decision, not the candidates: once approved it concerns the member
 * (`for`) and the partner may read it and its history, which must not name other members.
 * Operators read the candidates from the decision (GET /admin/match-decisions/{id}).
 */
export const TASK_STAGE_SYSTEM = 'urn:baton:task-stage';
export const REVIEW_TASK_CODE = { system: 'urn:baton:task-code', code: 'member-match-review', display: 'Manual review of a $member-match' };

export const stage = (code: string) => ({ coding: [{ system: TASK_STAGE_SYSTEM, code }], text: code });

export async function createReviewTask(
  ctx: interactions.FhirContext,
  q: Queryable,
  review: { decisionId: string; candidates: number; requester?: Task['requester'] },
): Promise<string> {
  const task: Task = {
    resourceType: 'Task',
    status: 'on-hold',
    businessStatus: stage('manual-review'),
    intent: 'order',
    code: { coding: [REVIEW_TASK_CODE] },
    authoredOn: new Date().toISOString(),
    owner: { reference: `Organization/${OWN_ORGANIZATION_ID}` },
    ...(review.requester ? { requester: review.requester } : {}),
    input: [
      { type: { text: 'match-decision' }, valueString: review.decisionId },
      { type: { text: 'candidates' }, valueInteger: review.candidates },
    ],
  };
  const created = await interactions.create({ ...ctx, q, inTransaction: true, access: systemAccess }, 'Task', task);
  return created.id as string;
}
