import type { Task } from '@medplum/fhirtypes';
import { Hono } from 'hono';
import type { Database } from '../../db/connection.ts';
import type { AuditedEnv } from '../../audit/middleware.ts';
import { type RequestAudit, serverAudit } from '../../audit/trail.ts';
import { type AccessPolicy, systemAccess } from '../../fhir/access.ts';
import { badRequest, conflict, FhirError, notFound, outcome, unprocessable } from '../../fhir/errors.ts';
import * as interactions from '../../fhir/interactions.ts';
import { readCurrent } from '../../fhir/store.ts';
import type { ResourceValidator } from '../../fhir/validation.ts';
import type { MatchDecision } from '../../matching/decide.ts';
import { decisionOfTask, recordReview } from './decisions.ts';
import { linkMatchedMember, type MatchLink } from './link.ts';
import { stage } from './review.ts';

/**
 * POST /admin/reviews/{taskId}: an operator settles a $member-match held for manual review.
 * `{"decision": "approve", "candidate": "Patient/<id>", "reviewer": "<who>", "reason": "<why>"}`
 * links the request to that candidate (exactly what an automatic match does: CoverageToLink,
 * Consent, grant) and completes the Task with the member's identifier; `"reject"` rejects it.
 * Who and why are stored with the decision and on the Task; the writes are audited in their
 * transaction, the call itself by the admin API's audit. The requester learns the outcome from
 * the Task (readable once it concerns the member it was granted) or by asking again.
 */
export interface ReviewBody {
  decision: 'approve' | 'reject';
  candidate?: string;
  reviewer: string;
  reason: string;
}

export function reviewRoutes(deps: { db: Database; baseUrl: string; validator: ResourceValidator }): Hono<AuditedEnv> {
  const app = new Hono<AuditedEnv>();
  app.post('/admin/reviews/:taskId', async (c) => {
    const review = parseReview(await c.req.json().catch(() => undefined));
    const taskId = c.req.param('taskId');
    interactions.assertId(taskId);
    const audit = serverAudit(deps.baseUrl, c.get('requestId'), `/Task/${taskId}`, OPERATOR);
    const task = await settleReview({ ...deps, audit }, taskId, review);
    return c.json(task, 200);
  });
  return app;
}

const OPERATOR = { clientId: 'operator', kind: 'operator' as const };

function parseReview(value: unknown): ReviewBody {
  if (typeof value !== 'object' || value === null) throw badRequest('The body must be a JSON object: {"decision", "candidate", "reviewer", "reason"}');
  const body = value as Record<string, unknown>;
  if (body.decision !== 'approve' && body.decision !== 'reject') throw badRequest('decision must be "approve" or "reject"', ['decision']);
  for (const field of ['reviewer', 'reason'] as const) {
    const text = body[field];
    if (typeof text !== 'string' || text.trim() === '' || text.length > 1000) throw badRequest(`${field} is required: a text of 1 to 1000 characters saying ${field === 'reviewer' ? 'who decides' : 'why'}`, [field]);
  }
  if (body.decision === 'approve' && typeof body.candidate !== 'string') throw badRequest('candidate is required to approve: the Patient reference of the member chosen', ['candidate']);
  return {
    decision: body.decision,
    reviewer: (body.reviewer as string).trim(),
    reason: (body.reason as string).trim(),
    ...(typeof body.candidate === 'string' ? { candidate: body.candidate.replace(/^Patient\//, '') } : {}),
  };
}

async function settleReview(deps: { db: Database; baseUrl: string; validator: ResourceValidator; audit: RequestAudit }, taskId: string, review: ReviewBody): Promise<Task> {
  return deps.db.transaction(async (q) => {
    const decision = await decisionOfTask(q, taskId, true);
    if (!decision) throw notFound(`No match review has Task/${taskId}`);
    if (decision.outcome !== 'review') throw conflict(`Task/${taskId} was already settled (${decision.outcome})`);
    const stored = await readCurrent(q, 'Task', taskId, true);
    if (!stored || stored.deleted) throw notFound(`Task/${taskId} is not known`);
    const task = JSON.parse(stored.json) as Task;
    const ctx: interactions.FhirContext = { db: deps.db, q, inTransaction: true, baseUrl: deps.baseUrl, validator: deps.validator, access: systemAccess, audit: deps.audit };
    const by = `operator:${review.reviewer}`;
    const note = { text: `${review.decision === 'approve' ? 'Approved' : 'Rejected'} by ${review.reviewer}: ${review.reason}`, time: new Date().toISOString() };
    let settled: Task;
    if (review.decision === 'approve') {
      const patientId = review.candidate as string;
      const candidates = (JSON.parse(decision.decision) as MatchDecision).reviewCandidateIds;
      if (!candidates.includes(patientId)) throw unprocessable('candidate must be one of the candidates of this review (GET /admin/match-decisions/{id} lists them)', ['candidate']);
      const pending = JSON.parse(decision.pending ?? 'null') as MatchLink | null;
      if (!pending) throw new FhirError(500, outcome('fatal', 'exception', 'The review has lost what its match must do'));
      // The partner's Consent and Coverage are stored on its behalf, as an automatic match would.
      const partner: AccessPolicy = { ...systemAccess, caller: { clientId: pending.clientId, kind: 'partner' } };
      const identifier = await linkMatchedMember({ ...ctx, access: partner }, q, { ...pending, patientId });
      settled = { ...task, status: 'completed', businessStatus: stage('matched'), for: { reference: `Patient/${patientId}` }, output: [{ type: { text: 'MemberIdentifier' }, valueIdentifier: identifier }], note: [...(task.note ?? []), note] };
      await recordReview(q, decision.id, { outcome: 'approved', patientId, by, reason: review.reason });
    } else {
      settled = { ...task, status: 'rejected', businessStatus: stage('no-match'), statusReason: { text: 'No candidate is the member (manual review)' }, note: [...(task.note ?? []), note] };
      await recordReview(q, decision.id, { outcome: 'rejected', by, reason: review.reason });
    }
    const result = await interactions.update(ctx, 'Task', taskId, settled);
    await deps.audit.flush(q);
    return result.resource as Task;
  });
}
