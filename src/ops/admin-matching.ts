import type { OperationOutcome } from '@medplum/fhirtypes';
import { sql, type SQL } from 'drizzle-orm';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Database } from '../db/connection.ts';
import { badRequest, conflict, FhirError, notFound, outcome } from '../fhir/errors.ts';
import type { CandidateAssessment, MatchDecision } from '../matching/decide.ts';
import { PolicyError } from '../matching/policy.ts';
import { listPolicies, MEMBER_MATCH_POLICY_ID, policyInForce, policyVersion, PolicyVersionConflict, savePolicy } from '../matching/policy-store.ts';

/**
 * The matching control plane for operators, behind the admin credential (the '/admin/*' gate in
 * auth/routes.ts, which app.ts mounts before these routes): the matching policy's versions, a new
 * version, and the explanation of any stored match decision. app.ts audits every call.
 */
export function matchingAdminRoutes(deps: { db: Database; baseUrl: string }): Hono {
  const app = new Hono({ strict: false });
  const id = MEMBER_MATCH_POLICY_ID;

  app.get('/admin/matching/policies', async (c) => c.json(await listPolicies(deps.db, id)));
  app.get('/admin/matching/policies/:version', async (c) => {
    const version = positiveInteger(c.req.param('version'), 'version');
    const policy = await policyVersion(deps.db, id, version);
    if (!policy) throw notFound(`Matching policy "${id}" has no version ${version}`);
    return c.json(policy);
  });
  app.get('/admin/matching/policy', async (c) => c.json(await policyInForce(deps.db, id)));
  app.put(
    '/admin/matching/policy',
    bodyLimit({
      maxSize: MAX_POLICY_BYTES,
      onError: () => {
        throw new FhirError(413, outcome('error', 'too-costly', `A matching policy is at most ${MAX_POLICY_BYTES} bytes`));
      },
    }),
    async (c) => {
      const body: unknown = await c.req.json().catch(() => {
        throw badRequest('The body must be a matching policy in JSON');
      });
      const reason = c.req.header(REASON_HEADER);
      if (reason !== undefined && (reason.trim() === '' || reason.length > MAX_REASON_LENGTH)) {
        throw badRequest(`${REASON_HEADER} must be 1 to ${MAX_REASON_LENGTH} characters`);
      }
      const saved = await savePolicy(deps.db, body, OPERATOR, reason?.trim(), id).catch((error: unknown) => {
        if (error instanceof PolicyError) throw new FhirError(422, policyProblems(error.problems));
        if (error instanceof PolicyVersionConflict) throw conflict(error.message);
        throw error;
      });
      const location = new URL(`/admin/matching/policies/${saved.version}`, deps.baseUrl).href;
      return c.json(saved, 201, { Location: location });
    },
  );

  app.get('/admin/match-decisions', async (c) => {
    const filters: SQL[] = [];
    const client = optionalText(c.req.query('client'), 'client');
    const patient = optionalText(c.req.query('patient'), 'patient');
    const decided = optionalText(c.req.query('outcome'), 'outcome');
    if (client !== undefined) filters.push(sql`client_id = ${client}`);
    if (patient !== undefined) filters.push(sql`patient_id = ${patient}`);
    if (decided !== undefined) filters.push(sql`outcome = ${decided}`);
    const countParameter = c.req.query('_count');
    const count = countParameter === undefined ? DEFAULT_DECISIONS : positiveInteger(countParameter, '_count');
    if (count > MAX_DECISIONS) throw badRequest(`_count must be at most ${MAX_DECISIONS}`, ['_count']);
    const where = filters.length > 0 ? sql`WHERE ${sql.join(filters, sql` AND `)}` : sql``;
    const rows = await deps.db.execute<DecisionRow>(sql`SELECT ${SUMMARY_COLUMNS} FROM match_decisions ${where} ORDER BY created DESC, id DESC LIMIT ${count}`);
    return c.json(rows.map(decisionSummary));
  });
  app.get('/admin/match-decisions/:id', async (c) => {
    const [row] = await deps.db.execute<DecisionRow & { decision: string }>(sql`SELECT ${SUMMARY_COLUMNS}, decision FROM match_decisions WHERE id = ${c.req.param('id')}`);
    if (!row) throw notFound('No match decision with this id');
    return c.json(decisionExplanation(row));
  });
  return app;
}

/** The operator's free-text reason for a new policy version, stored with it. */
export const REASON_HEADER = 'X-Change-Reason';
const MAX_REASON_LENGTH = 1000;
/** Policy v1 is about 4 KB; a body many times that is not a policy. */
const MAX_POLICY_BYTES = 256 * 1024;
/** Who saved a version through the admin API: the admin credential names no person. */
const OPERATOR = 'operator';
const DEFAULT_DECISIONS = 50;
const MAX_DECISIONS = 500;

/** One issue per problem, each pointing at the setting at fault. */
function policyProblems(problems: string[]): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: problems.map((problem) => ({ severity: 'error', code: 'invalid', diagnostics: problem, expression: [problem.slice(0, problem.indexOf(':'))] })),
  };
}

function positiveInteger(value: string, name: string): number {
  if (!/^[1-9]\d{0,8}$/.test(value)) throw badRequest(`${name} must be a positive integer`, [name]);
  return Number(value);
}

function optionalText(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (value === '' || value.length > 256) throw badRequest(`${name} must be 1 to 256 characters`, [name]);
  return value;
}

interface DecisionRow {
  id: string;
  created: string | Date;
  client_id: string;
  request_id: string | null;
  use_case: string;
  policy_id: string;
  policy_version: number;
  tier: string;
  outcome: string;
  patient_id: string | null;
  score: string | null;
  task_id: string | null;
  reviewed_by: string | null;
  review_reason: string | null;
  reviewed: string | Date | null;
}

const SUMMARY_COLUMNS = sql`id, created, client_id, request_id, use_case, policy_id, policy_version, tier, outcome, patient_id, score, task_id, reviewed_by, review_reason, reviewed`;

function decisionSummary(row: DecisionRow) {
  return {
    id: row.id,
    created: new Date(row.created).toISOString(),
    client: row.client_id,
    ...(row.request_id !== null ? { requestId: row.request_id } : {}),
    useCase: row.use_case,
    policy: { id: row.policy_id, version: Number(row.policy_version) },
    outcome: row.outcome,
    tier: row.tier,
    ...(row.score !== null ? { score: Number(row.score) } : {}),
    ...(row.patient_id !== null ? { patient: row.patient_id } : {}),
    ...(row.task_id !== null ? { task: row.task_id } : {}),
    ...(row.reviewed !== null ? { review: { by: row.reviewed_by, reason: row.review_reason, at: new Date(row.reviewed).toISOString() } } : {}),
  };
}

/**
 * "Why was this request matched to this member?": the stored MatchDecision laid out for a
 * reader. It holds ids, comparison levels, weights and reasons only; which candidate entry
 * agreed is shown by position and source, without its period (dates of a person's names and
 * addresses are PHI).
 */
function decisionExplanation(row: DecisionRow & { decision: string }) {
  const decision = JSON.parse(row.decision) as MatchDecision;
  return {
    ...decisionSummary(row),
    thresholds: decision.thresholds,
    ...(decision.candidateId !== undefined ? { matched: decision.candidateId } : {}),
    ...(decision.reviewCandidateIds.length > 0 ? { reviewCandidates: decision.reviewCandidateIds } : {}),
    reasons: decision.reasons.map((reason) => ({ code: reason.code, ...(reason.candidateId !== undefined ? { candidate: reason.candidateId } : {}), text: reason.text })),
    candidates: decision.candidates.map(candidateExplanation),
  };
}

function candidateExplanation(candidate: CandidateAssessment) {
  return {
    patient: candidate.candidateId,
    score: candidate.score,
    status: candidate.status,
    deterministic: candidate.deterministic,
    fields: candidate.fields.map((field) => ({
      field: field.field,
      level: field.level,
      weight: field.weight,
      ...(field.m !== undefined && field.u !== undefined ? { m: field.m, u: field.u } : {}),
      ...(field.termFrequency ? { termFrequency: field.termFrequency } : {}),
      ...(field.candidateEntry
        ? { entry: { index: field.candidateEntry.index, historical: field.candidateEntry.historical, ...(field.candidateEntry.source ? { source: field.candidateEntry.source } : {}) } }
        : {}),
    })),
    vetoes: candidate.vetoes,
  };
}
