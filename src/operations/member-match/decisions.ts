import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Queryable } from '../../db/connection.ts';
import { newId } from '../../db/ids.ts';
import type { MatchDecision } from '../../matching/decide.ts';
import { normalizeRecord } from '../../matching/normalize.ts';
import type { MatchQuery } from '../../matching/types.ts';

/**
 * Every $member-match decision is stored (match_decisions): tier, score, each candidate's field
 * levels and weights, the policy version, and what became of it. An operator reads it back
 * (GET /admin/match-decisions/{id}) to learn why a request matched a member, or did not.
 */
export type DecisionOutcome = 'matched' | 'no-match' | 'ambiguous' | 'review' | 'consent-refused' | 'approved' | 'rejected';

export interface StoredDecision {
  id: string;
  outcome: DecisionOutcome;
  patientId: string | null;
  taskId: string | null;
  pending: string | null;
}

export interface NewDecision {
  clientId: string;
  requestId?: string;
  requestHash: string;
  decision: MatchDecision;
  outcome: DecisionOutcome;
  patientId?: string;
  taskId?: string;
  /** What an approval must still do (review only). */
  pending?: unknown;
}

export async function recordDecision(q: Queryable, entry: NewDecision, id: string = newId()): Promise<string> {
  const { decision } = entry;
  await q.execute(sql`
    INSERT INTO match_decisions (id, client_id, request_id, request_hash, use_case, policy_id, policy_version, tier, outcome, patient_id, score, decision, task_id, pending)
    VALUES (${id}, ${entry.clientId}, ${entry.requestId ?? null}, ${entry.requestHash}, ${decision.useCase}, ${decision.policy.id}, ${decision.policy.version},
      ${decision.tier}, ${entry.outcome}, ${entry.patientId ?? null}, ${decision.score ?? null}, ${JSON.stringify(decision)}, ${entry.taskId ?? null},
      ${entry.pending === undefined ? null : JSON.stringify(entry.pending)})`);
  return id;
}

/**
 * The client's and request's fingerprint: the same person asked about with the same card by the
 * same client hashes alike whatever the formatting. A hash, so the table holds no demographics.
 */
export function requestHash(clientId: string, query: MatchQuery): string {
  const record = normalizeRecord(query);
  const canonical = JSON.stringify([
    clientId,
    record.names.map((name) => [name.family, name.first]).sort(),
    record.birthDate,
    [...record.memberIds, ...record.subscriberIds].map((id) => id.base).sort(),
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** The latest review of this request still open or decided by an operator, if any: a repeated request gets its answer. */
export async function reviewOfRequest(q: Queryable, clientId: string, hash: string): Promise<StoredDecision | undefined> {
  const rows = await q.execute<StoredDecision>(sql`
    SELECT id, outcome, patient_id AS "patientId", task_id AS "taskId", pending FROM match_decisions
    WHERE client_id = ${clientId} AND request_hash = ${hash} AND outcome IN ('review', 'approved', 'rejected')
    ORDER BY created DESC LIMIT 1`);
  return rows[0];
}

/** The decision a review Task settles, with its MatchDecision JSON (`decision`). */
export async function decisionOfTask(q: Queryable, taskId: string, forUpdate = false): Promise<(StoredDecision & { clientId: string; decision: string }) | undefined> {
  const lock = forUpdate ? sql` FOR UPDATE` : sql``;
  const rows = await q.execute<StoredDecision & { clientId: string; decision: string }>(sql`
    SELECT id, outcome, patient_id AS "patientId", task_id AS "taskId", pending, client_id AS "clientId", decision FROM match_decisions WHERE task_id = ${taskId}${lock}`);
  return rows[0];
}

export async function recordReview(q: Queryable, id: string, review: { outcome: 'approved' | 'rejected'; patientId?: string; by: string; reason: string }): Promise<void> {
  await q.execute(sql`
    UPDATE match_decisions SET outcome = ${review.outcome}, patient_id = ${review.patientId ?? null}, reviewed_by = ${review.by},
      review_reason = ${review.reason}, reviewed = now()
    WHERE id = ${id}`);
}
