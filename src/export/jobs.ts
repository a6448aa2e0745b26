import { randomUUID } from 'node:crypto';
import type { OperationOutcome } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import { FhirError, outcome } from '../fhir/errors.ts';
import type { ExportCaller } from './caller.ts';
import type { ExportKind, ExportParameters, ExportRequest } from './request.ts';

/**
 * Export jobs in export_jobs. Every change of state is one conditional UPDATE (STYLE: atomic
 * state changes): a cancel, a worker's claim, each step of a worker (only while it holds the
 * lease and the job still runs) and the completion, so a cancelled job is never completed and
 * a completed one is cancelled whole.
 */
export type ExportStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface ExportJob {
  id: string;
  caller: ExportCaller;
  kind: ExportKind;
  groupId: string | null;
  requestUrl: string;
  parameters: ExportParameters;
  messages: OperationOutcome[];
  /** ISO, millisecond precision. */
  transactionTime: string;
  status: ExportStatus;
  /** The types to plan, once the job is resolved. */
  types: string[] | null;
  planned: number;
  error: JobError | null;
  leaseOwner: string | null;
  attempts: number;
  expiresMs: number | null;
  /** The database's clock when the row was read, epoch ms. */
  nowMs: number;
}

/** How a failed job answers its status request. */
export interface JobError {
  status: number;
  outcome: OperationOutcome;
}

interface JobRow extends Omit<ExportJob, 'caller'> {
  clientId: string;
  clientKind: ExportCaller['kind'];
  scopes: string[];
}

function columns(j: SQL): SQL {
  return sql`${j}.id, ${j}.client_id AS "clientId", ${j}.client_kind AS "clientKind", ${j}.scopes, ${j}.kind, ${j}.group_id AS "groupId",
    ${j}.request_url AS "requestUrl", ${j}.parameters, ${j}.messages,
    to_char(${j}.transaction_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "transactionTime",
    ${j}.status, ${j}.types, ${j}.planned, ${j}.error, ${j}.lease_owner AS "leaseOwner", ${j}.attempts,
    (extract(epoch FROM ${j}.expires) * 1000)::float8 AS "expiresMs", (extract(epoch FROM now()) * 1000)::float8 AS "nowMs"`;
}

function toJob(row: JobRow): ExportJob {
  const { clientId, clientKind, scopes, ...rest } = row;
  // jsonb arrives parsed from both drivers; a text[] as an array.
  return { ...rest, caller: { clientId, kind: clientKind, scopes }, planned: Number(row.planned), attempts: Number(row.attempts) };
}

const J = sql.raw('j');

/**
 * Records a queued job, unless the client already has `maxActive` queued or running (429). The
 * count and the insert hold the client's lock, so concurrent kick-offs in several processes
 * cannot both pass. transactionTime is the database's clock, to the millisecond.
 */
/** The channel a new job is announced on. */
export const EXPORT_JOBS_CHANNEL = 'baton_export_jobs';

export async function insertJob(db: Database, caller: ExportCaller, request: ExportRequest, maxActive: number, retryAfterSeconds: number): Promise<ExportJob> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${`baton.export:${caller.clientId}`}))`);
    const [{ n }] = await tx.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM export_jobs WHERE client_id = ${caller.clientId} AND status IN ('queued', 'running')`);
    if (n >= maxActive) {
      throw new FhirError(429, outcome('error', 'throttled', `This client already has ${n} exports in progress (at most ${maxActive}); wait for one to complete or cancel one`), {
        'Retry-After': String(retryAfterSeconds),
      });
    }
    const { kind, groupId, requestUrl, messages, ...parameters } = request;
    const rows = await tx.execute<JobRow>(sql`INSERT INTO export_jobs AS ${J} (id, client_id, client_kind, scopes, kind, group_id, request_url, parameters, messages, transaction_time)
      VALUES (${randomUUID()}, ${caller.clientId}, ${caller.kind}, ${sql.param(caller.scopes)}::text[], ${kind}, ${groupId ?? null}, ${requestUrl},
        ${JSON.stringify(parameters)}::jsonb, ${JSON.stringify(messages ?? [])}::jsonb, date_trunc('milliseconds', clock_timestamp()))
      RETURNING ${columns(J)}`);
    // Wakes the workers of every process at commit (worker.ts); they poll as well.
    await tx.execute(sql`SELECT pg_notify(${EXPORT_JOBS_CHANNEL}, '')`);
    return toJob(rows[0]);
  });
}

export async function readJob(q: Queryable, id: string): Promise<ExportJob | undefined> {
  const rows = await q.execute<JobRow>(sql`SELECT ${columns(J)} FROM export_jobs ${J} WHERE ${J}.id = ${id}`);
  return rows[0] ? toJob(rows[0]) : undefined;
}

/**
 * A status request of the client's job: records it as the last poll, unless it came sooner than
 * `intervalMs` after the last one recorded (then waitMs says how long is left, and nothing is
 * recorded, so polling too often never pushes the next allowed poll further away).
 */
export async function pollJob(q: Queryable, id: string, clientId: string, intervalMs: number): Promise<{ job: ExportJob; waitMs?: number } | undefined> {
  const tooSoon = sql`p.last_polled > now() - ${intervalMs} * interval '1 millisecond'`;
  const rows = await q.execute<JobRow & { sincePolledMs: number | null }>(sql`UPDATE export_jobs ${J}
    SET last_polled = CASE WHEN ${tooSoon} THEN p.last_polled ELSE now() END
    FROM (SELECT id, last_polled FROM export_jobs WHERE id = ${id} AND client_id = ${clientId} FOR UPDATE) p
    WHERE ${J}.id = p.id
    RETURNING ${columns(J)}, CASE WHEN ${tooSoon} THEN (extract(epoch FROM now() - p.last_polled) * 1000)::float8 END AS "sincePolledMs"`);
  const row = rows[0];
  if (!row) return undefined;
  const { sincePolledMs, ...job } = row;
  return sincePolledMs === null ? { job: toJob(job) } : { job: toJob(job), waitMs: Math.max(0, intervalMs - Number(sincePolledMs)) };
}

/** Cancels the client's job in any state but cancelled; false when there is no such job. */
export async function cancelJob(q: Queryable, id: string, clientId: string): Promise<boolean> {
  const rows = await q.execute(sql`UPDATE export_jobs SET status = 'cancelled', lease_owner = NULL, updated = now()
    WHERE id = ${id} AND client_id = ${clientId} AND status <> 'cancelled' RETURNING id`);
  return rows.length > 0;
}

/** Thrown by a worker's step when the job is no longer its own: cancelled, or taken over after its lease ran out. */
export class LostLease extends Error {}

/**
 * Claims the next job: a queued one due, or a running one whose worker's lease has run out (it
 * crashed, or stalled). Between clients it is fair: the job claimed is the oldest of a client
 * with the fewest jobs running. The claim counts an attempt.
 */
export async function claimJob(q: Queryable, owner: string, leaseSeconds: number, maxAttempts: number): Promise<ExportJob | undefined> {
  const rows = await q.execute<JobRow>(sql`UPDATE export_jobs ${J}
    SET status = 'running', lease_owner = ${owner}, lease_until = now() + ${leaseSeconds} * interval '1 second', attempts = ${J}.attempts + 1, updated = now()
    WHERE ${J}.id = (
      SELECT c.id FROM export_jobs c
      WHERE ((c.status = 'queued' AND c.not_before <= now()) OR (c.status = 'running' AND c.lease_until < now())) AND c.attempts < ${maxAttempts}
      ORDER BY (SELECT count(*) FROM export_jobs o WHERE o.client_id = c.client_id AND o.status = 'running' AND o.lease_until >= now()), c.created, c.id
      LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING ${columns(J)}`);
  return rows[0] ? toJob(rows[0]) : undefined;
}

/** Jobs whose last allowed attempt's worker vanished fail, instead of waiting for a worker forever. */
export async function failAbandoned(q: Queryable, maxAttempts: number, ttlSeconds: number): Promise<{ id: string; clientId: string }[]> {
  const error: JobError = { status: 500, outcome: outcome('error', 'exception', `The export was attempted ${maxAttempts} times without completing`) };
  const rows = await q.execute(sql`UPDATE export_jobs SET status = 'failed', error = ${JSON.stringify(error)}::jsonb, lease_owner = NULL,
      completed = now(), expires = now() + ${ttlSeconds} * interval '1 second', updated = now()
    WHERE status = 'running' AND lease_until < now() AND attempts >= ${maxAttempts} RETURNING id, client_id AS "clientId"`);
  return rows as { id: string; clientId: string }[];
}

/** Extends the worker's lease; false when the job is no longer its own. */
export async function renewLease(q: Queryable, id: string, owner: string, leaseSeconds: number): Promise<boolean> {
  const rows = await q.execute(sql`UPDATE export_jobs SET lease_until = now() + ${leaseSeconds} * interval '1 second'
    WHERE id = ${id} AND lease_owner = ${owner} AND status = 'running' RETURNING id`);
  return rows.length > 0;
}

/**
 * Records a worker's step in the caller's transaction: `set` applies only while the worker holds
 * the lease, the job runs and `planned` is still what the worker read (a step is never applied
 * twice); otherwise LostLease, and the transaction rolls back whatever the step wrote.
 */
export async function recordStep(q: Queryable, job: ExportJob, owner: string, leaseSeconds: number, set: SQL): Promise<void> {
  const rows = await q.execute(sql`UPDATE export_jobs SET ${set}, lease_until = now() + ${leaseSeconds} * interval '1 second', updated = now()
    WHERE id = ${job.id} AND lease_owner = ${owner} AND status = 'running' AND planned = ${job.planned} RETURNING id`);
  if (rows.length === 0) throw new LostLease(`export ${job.id} is no longer this worker's`);
}

/** The job completes: its files are served for `ttlSeconds` from now. */
export function completedSet(ttlSeconds: number): SQL {
  return sql`status = 'completed', lease_owner = NULL, completed = now(), expires = now() + ${ttlSeconds} * interval '1 second'`;
}

/**
 * A step failed: the job waits and is tried again (with a growing delay), or fails for good once
 * it has had its attempts. Only the lease holder's failure counts.
 */
export async function failStep(q: Queryable, job: ExportJob, owner: string, error: JobError, maxAttempts: number, ttlSeconds: number): Promise<'retry' | 'failed' | 'lost'> {
  const final = job.attempts >= maxAttempts;
  const set = final
    ? sql`status = 'failed', error = ${JSON.stringify(error)}::jsonb, completed = now(), expires = now() + ${ttlSeconds} * interval '1 second'`
    : sql`status = 'queued', not_before = now() + ${2 ** job.attempts} * interval '1 second'`;
  const rows = await q.execute(sql`UPDATE export_jobs SET ${set}, lease_owner = NULL, updated = now()
    WHERE id = ${job.id} AND lease_owner = ${owner} AND status = 'running' RETURNING id`);
  if (rows.length === 0) return 'lost';
  return final ? 'failed' : 'retry';
}

/** Removes jobs (and their files, members and references) a day after they expired or were cancelled. */
export async function purgeJobs(q: Queryable): Promise<number> {
  const rows = await q.execute(sql`DELETE FROM export_jobs
    WHERE expires < now() - interval '1 day' OR (status = 'cancelled' AND updated < now() - interval '1 day') RETURNING id`);
  return rows.length;
}

/** One planned file, as the manifest and the download read it. */
export interface ExportFile {
  fileNo: number;
  kind: 'output' | 'deleted' | 'error';
  resourceType: string;
  afterId: string | null;
  lastId: string | null;
  count: number;
}

export async function jobFiles(q: Queryable, jobId: string): Promise<ExportFile[]> {
  const rows = await q.execute<ExportFile>(sql`SELECT file_no AS "fileNo", kind, resource_type AS "resourceType", after_id AS "afterId", last_id AS "lastId", count
    FROM export_files WHERE job_id = ${jobId} ORDER BY file_no`);
  return rows.map((row) => ({ ...row, fileNo: Number(row.fileNo), count: Number(row.count) }));
}

export async function jobFile(q: Queryable, jobId: string, fileNo: number): Promise<ExportFile | undefined> {
  const rows = await q.execute<ExportFile>(sql`SELECT file_no AS "fileNo", kind, resource_type AS "resourceType", after_id AS "afterId", last_id AS "lastId", count
    FROM export_files WHERE job_id = ${jobId} AND file_no = ${fileNo}`);
  return rows[0] ? { ...rows[0], fileNo: Number(rows[0].fileNo), count: Number(rows[0].count) } : undefined;
}

/** Adds files after the job's last one. */
export async function insertFiles(q: Queryable, jobId: string, files: Omit<ExportFile, 'fileNo'>[]): Promise<void> {
  if (files.length === 0) return;
  const values = sql.join(
    files.map((f, i) => sql`(${jobId}::text, base.n + ${i + 1}::int, ${f.kind}::text, ${f.resourceType}::text, ${f.afterId}::text, ${f.lastId}::text, ${f.count}::int)`),
    sql`, `,
  );
  await q.execute(sql`INSERT INTO export_files (job_id, file_no, kind, resource_type, after_id, last_id, count)
    SELECT v.* FROM (SELECT coalesce(max(file_no), 0) AS n FROM export_files WHERE job_id = ${jobId}) base,
      LATERAL (VALUES ${values}) v`);
}
