import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import type { Stage } from './stages.ts';

/**
 * The durable job queue of the requester workflow (workflow_jobs): one row per request Task.
 * A worker claims due rows with FOR UPDATE SKIP LOCKED and a lease (the visibility timeout);
 * every later change is conditional on still holding that lease, so a worker whose lease ran out
 * (and whose row another worker took) changes nothing. pg-boss was the alternative: it runs its
 * own connection pool and schema maintenance, which PGlite (one connection, in process) does not
 * host; the claims, leases and retries here are three statements.
 */
export type Step = 'validate' | 'route' | 'match' | 'request' | 'poll' | 'import';
/** held: waiting for a person's judgement (manual review); dead-lettered: retries exhausted. Both wait for an operator. */
export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'dead-lettered' | 'held' | 'cancelled';

/** What earlier steps found; each step adds its part. */
export interface JobState {
  /** The stage the Task is at. */
  stage?: Stage;
  endpointId?: string;
  ruleVersion?: number;
  ruleId?: string;
  requestType?: 'single-member' | 'bulk';
  /** When the Task reached its stage (the next stage's SLA runs from there), epoch ms. */
  stageSinceMs?: number;
  partnerMember?: { identifier: { system?: string; value?: string }; id?: string };
  statusUrl?: string;
  /** When the partner accepted the bulk request: polls give up after the configured time. */
  acknowledgedMs?: number;
  manifest?: { transactionTime: string; requiresAccessToken: boolean; output: { type: string; url: string; count?: number }[]; error: { type: string; url: string }[] };
}

export interface JobError {
  class: 'retryable' | 'non-retryable' | 'manual';
  code: string;
  detail: string;
  status?: number;
}

export interface WorkflowJob {
  taskId: string;
  step: Step;
  status: JobStatus;
  attempts: number;
  stepStartedMs: number;
  createdMs: number;
  /** The database's clock when the row was read. */
  nowMs: number;
  state: JobState;
  lastError: JobError | null;
  breached: string[];
}

const COLUMNS = sql.raw(`task_id AS "taskId", step, status, attempts, state, last_error AS "lastError", breached,
  (extract(epoch FROM step_started) * 1000)::float8 AS "stepStartedMs", (extract(epoch FROM created) * 1000)::float8 AS "createdMs",
  (extract(epoch FROM now()) * 1000)::float8 AS "nowMs"`);

function toJob(row: WorkflowJob): WorkflowJob {
  return { ...row, attempts: Number(row.attempts), stepStartedMs: Number(row.stepStartedMs), createdMs: Number(row.createdMs), nowMs: Number(row.nowMs), state: row.state ?? {} };
}

/** Queues a new request's first step, in the transaction that records its Task. */
export async function enqueueJob(q: Queryable, taskId: string): Promise<void> {
  await q.execute(sql`INSERT INTO workflow_jobs (task_id, step, state) VALUES (${taskId}, 'validate', ${JSON.stringify({ stage: 'created' })}::jsonb) ON CONFLICT (task_id) DO NOTHING`);
}

/** Stops a request that has not ended; a worker holding it loses its lease. */
export async function cancelJob(q: Queryable, taskId: string): Promise<void> {
  await q.execute(sql`UPDATE workflow_jobs SET status = 'cancelled', lease_owner = NULL, updated = now() WHERE task_id = ${taskId} AND status IN ('queued', 'running', 'dead-lettered', 'held')`);
}

/** Claims up to `limit` due jobs: queued ones whose time has come and running ones whose worker's lease ran out. */
export async function claimJobs(db: Database, owner: string, leaseSeconds: number, limit: number): Promise<WorkflowJob[]> {
  const rows = await db.execute<WorkflowJob>(sql`
    UPDATE workflow_jobs SET status = 'running', lease_owner = ${owner}, lease_until = now() + make_interval(secs => ${leaseSeconds}), updated = now()
    WHERE task_id IN (
      SELECT task_id FROM workflow_jobs
      WHERE (status = 'queued' AND run_at <= now()) OR (status = 'running' AND lease_until < now())
      ORDER BY run_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
    RETURNING ${COLUMNS}`);
  return rows.map(toJob);
}

/** Extends the lease of a job still held (a long import); false when it was lost. */
export async function renewLease(q: Queryable, taskId: string, owner: string, leaseSeconds: number): Promise<boolean> {
  const rows = await q.execute(sql`UPDATE workflow_jobs SET lease_until = now() + make_interval(secs => ${leaseSeconds}) WHERE task_id = ${taskId} AND lease_owner = ${owner} AND status = 'running' RETURNING 1`);
  return rows.length === 1;
}

/**
 * Locks the job for the transaction that records a step's result; undefined when this worker no
 * longer holds it (lease lost, cancelled), in which case the transaction must change nothing.
 */
export async function lockHeldJob(q: Queryable, taskId: string, owner: string): Promise<WorkflowJob | undefined> {
  const rows = await q.execute<WorkflowJob>(sql`SELECT ${COLUMNS} FROM workflow_jobs WHERE task_id = ${taskId} AND lease_owner = ${owner} AND status = 'running' FOR UPDATE`);
  return rows[0] ? toJob(rows[0]) : undefined;
}

/** The next step of a held job, due after `delayMs` (a poll's Retry-After) or at once. A new step starts with a fresh retry budget. */
export async function moveJob(q: Queryable, taskId: string, step: Step, state: JobState, delayMs = 0): Promise<void> {
  await q.execute(sql`UPDATE workflow_jobs SET step = ${step}, state = ${JSON.stringify(state)}::jsonb, status = 'queued', lease_owner = NULL,
    run_at = now() + make_interval(secs => ${delayMs / 1000}), attempts = 0, step_started = now(), last_error = NULL, updated = now()
    WHERE task_id = ${taskId}`);
}

/** The same step again after `delayMs`: a poll that found the export still running (not a failure), or a retry (counted). */
export async function retryJob(q: Queryable, taskId: string, state: JobState, delayMs: number, error?: JobError): Promise<void> {
  const failed = error ? 1 : 0;
  await q.execute(sql`UPDATE workflow_jobs SET state = ${JSON.stringify(state)}::jsonb, status = 'queued', lease_owner = NULL,
    run_at = now() + make_interval(secs => ${delayMs / 1000}), attempts = attempts + ${failed},
    last_error = COALESCE(${error ? JSON.stringify(error) : null}::jsonb, last_error), updated = now()
    WHERE task_id = ${taskId}`);
}

/** Ends a held job: completed, failed (for good), or waiting for an operator (dead-lettered, held). */
export async function endJob(q: Queryable, taskId: string, status: 'completed' | 'failed' | 'dead-lettered' | 'held', state: JobState, error?: JobError): Promise<void> {
  await q.execute(sql`UPDATE workflow_jobs SET status = ${status}, state = ${JSON.stringify(state)}::jsonb, lease_owner = NULL, lease_until = NULL,
    attempts = attempts + ${status === 'completed' ? 0 : 1}, last_error = ${error ? JSON.stringify(error) : null}::jsonb, updated = now()
    WHERE task_id = ${taskId}`);
}

/** An operator re-drives a dead-lettered or held request: its step runs again at once with a fresh budget. */
export async function redriveJob(q: Queryable, taskId: string): Promise<WorkflowJob | undefined> {
  const rows = await q.execute<WorkflowJob>(sql`UPDATE workflow_jobs SET status = 'queued', run_at = now(), attempts = 0, step_started = now(), updated = now()
    WHERE task_id = ${taskId} AND status IN ('dead-lettered', 'held') RETURNING ${COLUMNS}`);
  return rows[0] ? toJob(rows[0]) : undefined;
}

export async function readJob(q: Queryable, taskId: string, forUpdate = false): Promise<WorkflowJob | undefined> {
  const rows = await q.execute<WorkflowJob>(sql`SELECT ${COLUMNS} FROM workflow_jobs WHERE task_id = ${taskId}${forUpdate ? sql` FOR UPDATE` : sql``}`);
  return rows[0] ? toJob(rows[0]) : undefined;
}

/** Jobs not ended, created before `beforeMs` (SLA checks). */
export async function openJobsCreatedBefore(q: Queryable, beforeMs: number): Promise<WorkflowJob[]> {
  const rows = await q.execute<WorkflowJob>(sql`SELECT ${COLUMNS} FROM workflow_jobs WHERE status IN ('queued', 'running', 'dead-lettered', 'held') AND created < to_timestamp(${beforeMs / 1000})`);
  return rows.map(toJob);
}

/** Records that a stage's deadline passed, once: false when it was recorded already. */
export async function markBreached(q: Queryable, taskId: string, stage: string): Promise<boolean> {
  const rows = await q.execute(sql`UPDATE workflow_jobs SET breached = array_append(breached, ${stage}) WHERE task_id = ${taskId} AND NOT (${stage} = ANY(breached)) RETURNING 1`);
  return rows.length === 1;
}
