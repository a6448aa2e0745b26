import type { Group, OperationOutcome } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { ExportConfig } from '../config.ts';
import type { Database, Queryable } from '../db/connection.ts';
import { FhirError, outcome } from '../fhir/errors.ts';
import { completedSet, type ExportFile, type ExportJob, insertFiles, recordStep } from './jobs.ts';
import { deletionPages, hasMembers, jobScope } from './job-scope.ts';
import { fileBoundaries, readSnapshotPage } from './snapshot.ts';
import { STATUS_PATH } from './engine.ts';
import { BULK_JOB_COMPLETE_TOPIC, publishEvent } from '../subscriptions/events.ts';

/**
 * A job's steps, each its own transaction that records it (jobs.ts recordStep), so a worker
 * that dies loses at most the step it was on and another one carries on from there:
 *
 * 1. resolve: wait until transactionTime has settled, then record the members (the Group's as
 *    of transactionTime, or the `patient` parameter's), the types to plan, and the export's
 *    items (selection.ts);
 * 2. plan, once per type: cut the type's snapshot into files of at most fileResources
 *    resources (and, with `_since`, its deletions into files of DELETE Bundles);
 * 3. complete: the error file of the messages, and the job completes.
 */
export interface PlanDeps {
  db: Database;
  baseUrl: string;
  config: ExportConfig;
}

/** Longest wait for transactions open since before transactionTime; after it the export goes on, saying so in its error file. */
const SETTLE_LIMIT_MS = 60_000;

export async function resolveJob(deps: PlanDeps, job: ExportJob, owner: string): Promise<ExportJob> {
  const messages: OperationOutcome[] = [];
  if (!(await settle(deps.db, job.transactionTime, deps.config.clockSkewMs))) {
    messages.push(outcome('warning', 'transient', `Transactions open since before transactionTime were still running after ${SETTLE_LIMIT_MS / 1000} s; what they write may be missing`));
  }
  const scope = jobScope(job, deps.baseUrl);
  const members = job.kind === 'group' ? await groupMembers(deps, job) : job.parameters.patients;
  const types = await exportTypes(deps.db, job, scope.policy);
  await deps.db.transaction(async (tx) => {
    if (hasMembers(job) && members?.length) {
      await tx.execute(sql`INSERT INTO export_patients (job_id, patient_id) SELECT ${job.id}, p FROM unnest(${sql.param(members)}::text[]) AS p ON CONFLICT DO NOTHING`);
    }
    for (const statement of scope.selection.itemStatements(job.id, types)) await tx.execute(statement);
    await recordStep(tx, job, owner, deps.config.leaseSeconds, sql`types = ${sql.param(types)}::text[], messages = messages || ${JSON.stringify(messages)}::jsonb`);
  });
  return { ...job, types, messages: [...job.messages, ...messages] };
}

export async function planNextType(deps: PlanDeps, job: ExportJob, owner: string): Promise<ExportJob> {
  const type = (job.types as string[])[job.planned];
  const scope = jobScope(job, deps.baseUrl);
  const perFile = deps.config.fileResources;
  const files: Omit<ExportFile, 'fileNo'>[] = [];
  let previous: { lastId: string | null; n: number } = { lastId: null, n: 0 };
  for (const boundary of await fileBoundaries(deps.db, type, scope.window, scope.selection.includes(type, sql.raw('r')), perFile)) {
    files.push({ kind: 'output', resourceType: type, afterId: previous.lastId, lastId: boundary.lastId, count: boundary.n - previous.n });
    previous = boundary;
  }
  if (job.parameters.since) {
    // Deletions are filtered row by row (job-scope.ts), so they are counted the way a download reads them.
    let after: string | null = null;
    let count = 0;
    let last: string | null = null;
    for await (const rows of deletionPages(deps.db, job, scope, type, {}, deps.baseUrl, deps.config.pageRows)) {
      for (const row of rows) {
        count += 1;
        last = row.id;
        if (count === perFile) {
          files.push({ kind: 'deleted', resourceType: type, afterId: after, lastId: last, count });
          after = last;
          count = 0;
        }
      }
    }
    if (count > 0) files.push({ kind: 'deleted', resourceType: type, afterId: after, lastId: last, count });
  }
  await deps.db.transaction(async (tx) => {
    await insertFiles(tx, job.id, files);
    await recordStep(tx, job, owner, deps.config.leaseSeconds, sql`planned = ${job.planned + 1}`);
  });
  return { ...job, planned: job.planned + 1 };
}

export async function completeJob(deps: PlanDeps, job: ExportJob, owner: string): Promise<void> {
  await deps.db.transaction(async (tx) => {
    if (job.messages.length > 0) await insertFiles(tx, job.id, [{ kind: 'error', resourceType: 'OperationOutcome', afterId: null, lastId: null, count: job.messages.length }]);
    await recordStep(tx, job, owner, deps.config.leaseSeconds, completedSet(deps.config.ttlSeconds));
    await publishJobFinished(tx, deps.baseUrl, { id: job.id, clientId: job.caller.clientId });
  });
}

/** A finished job (completed or failed) notifies its owner's subscriptions, in the transaction that finishes it. */
export async function publishJobFinished(tx: Queryable, baseUrl: string, job: { id: string; clientId: string }): Promise<void> {
  await publishEvent(tx, { topic: BULK_JOB_COMPLETE_TOPIC, focus: { reference: `${baseUrl}/${STATUS_PATH}/${job.id}` }, audience: job.clientId });
}

/**
 * Waits until the snapshot as of transactionTime can no longer change (Bulk Data: "a FHIR server
 * might need to wait for any pending transactions to resolve"). A version's lastUpdated is taken
 * by the Baton process inside its write transaction, so once the database clock has passed
 * transactionTime plus the clock skew margin and every transaction begun before that has
 * ended, no version at or before transactionTime can still appear. PGlite runs one transaction
 * at a time: nothing is open while this runs, and only the clock is waited for.
 */
async function settle(db: Database, transactionTime: string, skewMs: number): Promise<boolean> {
  // +1 ms: transactionTime is cut to the millisecond, as lastUpdated is.
  const horizon = sql`${transactionTime}::timestamptz + ${skewMs + 1} * interval '1 millisecond'`;
  const quiet =
    db.kind === 'pglite'
      ? sql`TRUE`
      : sql`NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
          AND a.backend_type = 'client backend' AND a.state <> 'idle' AND a.xact_start <= ${horizon})`;
  const deadline = Date.now() + SETTLE_LIMIT_MS;
  for (let wait = 5; ; wait = Math.min(wait * 2, 250)) {
    const [row] = await db.execute<{ settled: boolean }>(sql`SELECT clock_timestamp() > ${horizon} AND ${quiet} AS settled`);
    if (row.settled) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** The Group's members as of transactionTime: local Patient references of members not marked inactive. */
async function groupMembers(deps: PlanDeps, job: ExportJob): Promise<string[]> {
  const [row] = await readSnapshotPage(deps.db, 'Group', { at: job.transactionTime }, 'live', sql`r.id = ${job.groupId}`, {}, 1);
  if (!row) throw new FhirError(404, outcome('error', 'not-found', `Group/${job.groupId} did not exist at the export's transactionTime`));
  const group = JSON.parse(row.content) as Group;
  const members = new Set<string>();
  for (const member of group.member ?? []) {
    if (member.inactive) continue;
    const id = localPatientId(member.entity?.reference, deps.baseUrl);
    if (id) members.add(id);
  }
  const asked = job.parameters.patients;
  return asked ? [...members].filter((id) => asked.includes(id)) : [...members];
}

/** `Patient/<id>`, relative or under our base URL → the id. */
export function localPatientId(reference: string | undefined, baseUrl: string): string | undefined {
  if (!reference) return undefined;
  const local = reference.startsWith(`${baseUrl}/`) ? reference.slice(baseUrl.length + 1) : reference;
  return /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(local)?.[1];
}

/**
 * The types to plan, Patient first: those asked for (`_type`), else every type the caller may
 * read; Provenance when includeAssociatedData asks for it; only types the database holds.
 */
async function exportTypes(q: Queryable, job: ExportJob, policy: { mayRead(type: string): boolean }): Promise<string[]> {
  const present = new Set(await storedTypes(q));
  const types = new Set(job.parameters.types ?? [...present].filter((type) => policy.mayRead(type)));
  if (job.parameters.associatedProvenance && policy.mayRead('Provenance')) types.add('Provenance');
  return [...types].filter((type) => present.has(type)).sort((a, b) => (a === 'Patient' ? -1 : b === 'Patient' ? 1 : a.localeCompare(b)));
}

/** The resource types `resources` holds rows of: one index probe per type (a loose index scan). */
async function storedTypes(q: Queryable): Promise<string[]> {
  const rows = await q.execute<{ type: string }>(sql`WITH RECURSIVE t(type) AS (
      (SELECT resource_type FROM resources ORDER BY resource_type LIMIT 1)
      UNION ALL
      SELECT (SELECT resource_type FROM resources WHERE resource_type > t.type ORDER BY resource_type LIMIT 1) FROM t WHERE t.type IS NOT NULL)
    SELECT type FROM t WHERE type IS NOT NULL`);
  return rows.map((row) => row.type);
}
