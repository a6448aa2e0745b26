import type { Extension, Task, TaskOutput } from '@medplum/fhirtypes';
import type { AuditCaller } from '../audit/record.ts';
import { type RequestAudit, serverAudit } from '../audit/trail.ts';
import type { Database, Queryable } from '../db/connection.ts';
import { systemAccess } from '../fhir/access.ts';
import * as interactions from '../fhir/interactions.ts';
import { readCurrent } from '../fhir/store.ts';
import type { ResourceValidator } from '../fhir/validation.ts';
import { stage as stageConcept } from '../operations/member-match/review.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { JobError } from './jobs.ts';
import { mayMove, STAGE_STATUS, type Stage, stageOf } from './stages.ts';

/**
 * A request's move to a stage: the Task's next version (status and businessStatus per
 * DESIGN.md's table, outputs, the error in statusReason), written on the caller's transaction
 * with its AuditEvent, and counted. Every transition is such a version, so the Task's _history
 * is the request's timeline.
 */
export const WORKFLOW_CALLER: AuditCaller = { clientId: 'baton-workflow', kind: 'internal' };
export const WORKFLOW_ERROR_SYSTEM = 'urn:baton:workflow-error';

export interface TransitionDeps {
  db: Database;
  baseUrl: string;
  validator: ResourceValidator;
  metrics?: Metrics;
}

export interface TaskChange {
  output?: TaskOutput[];
  statusReason?: JobError;
  extension?: Extension;
  note?: string;
}

export async function transitionTask(deps: TransitionDeps, q: Queryable, taskId: string, stage: Stage, change: TaskChange, caller: AuditCaller = WORKFLOW_CALLER): Promise<Task> {
  const stored = await readCurrent(q, 'Task', taskId, true);
  if (!stored || stored.deleted) throw new Error(`Task/${taskId} is gone`);
  const task = JSON.parse(stored.json) as Task;
  const from = stageOf(task);
  if (from !== undefined && from !== stage && !mayMove(from, stage)) throw new Error(`A request cannot move from ${from} to ${stage}`);
  const output = mergeOutputs(task.output, change.output);
  const now = new Date().toISOString();
  const next: Task = {
    ...task,
    status: STAGE_STATUS[stage],
    businessStatus: stageConcept(stage),
    lastModified: now,
    ...(output.length ? { output } : {}),
    ...(change.statusReason ? { statusReason: { coding: [{ system: WORKFLOW_ERROR_SYSTEM, code: change.statusReason.code }], text: change.statusReason.detail } } : {}),
    ...(change.extension ? { extension: [...(task.extension ?? []), change.extension] } : {}),
    ...(change.note ? { note: [...(task.note ?? []), { text: change.note, time: now }] } : {}),
  };
  if (!change.statusReason && STAGE_STATUS[stage] !== 'failed' && STAGE_STATUS[stage] !== 'on-hold') delete next.statusReason;
  const audit = workflowAudit(deps.baseUrl, taskId, caller);
  const ctx: interactions.FhirContext = { db: deps.db, q, inTransaction: true, baseUrl: deps.baseUrl, validator: deps.validator, access: systemAccess, audit };
  const result = await interactions.update(ctx, 'Task', taskId, next);
  await audit.flush(q);
  if (from !== stage) deps.metrics?.workflowTransitions.inc({ stage });
  return (result.resource ?? next) as Task;
}

/** The audit of the workflow's writes about one request (the Task's versions, the imported data). */
export function workflowAudit(baseUrl: string, taskId: string, caller: AuditCaller = WORKFLOW_CALLER): RequestAudit {
  return serverAudit(baseUrl, `workflow-${taskId}`, `/Task/${taskId}`, caller);
}

/** Outputs replaced by type (text), so a re-run step leaves one entry of each. */
function mergeOutputs(current: TaskOutput[] | undefined, added: TaskOutput[] | undefined): TaskOutput[] {
  if (!added?.length) return current ?? [];
  const names = new Set(added.map((o) => o.type.text));
  return [...(current ?? []).filter((o) => !names.has(o.type.text)), ...added];
}
