import type { Resource, Task } from '@medplum/fhirtypes';
import type { Queryable } from '../db/connection.ts';
import { unprocessable } from '../fhir/errors.ts';
import type { FhirContext, WriteRule, WriteRules } from '../fhir/interactions.ts';
import { OWN_ORGANIZATION_ID } from '../fhir/own-organization.ts';
import { readCurrent } from '../fhir/store.ts';
import { cancelJob, enqueueJob } from './jobs.ts';
import { stage } from '../operations/member-match/review.ts';
import { FINAL_STAGES, stageOf } from './stages.ts';
import { isDataRequest, type NamedResource, parseDataRequest } from './task-contract.ts';

/**
 * How a payer-to-payer request enters the workflow: a data-request Task written through the API
 * (REST create, create-on-update, a transaction Bundle) is checked against the Task contract,
 * stamped `requested`/created and owned by this payer, and its job is queued in the same
 * transaction, so no request is recorded without its job and no job runs for a rolled-back Task.
 * After that the workflow owns the Task's status: a client may only cancel it.
 */
const dataRequestRule: WriteRule = async (ctx, q, { resource, id, versionId }) => {
  const task = resource as Task;
  if (versionId === 1) {
    if (!isDataRequest(task)) return task;
    const request = parseDataRequest(task);
    if (task.status !== 'requested') throw unprocessable('A new data-request Task has status "requested"; the workflow moves it on', ['Task.status']);
    await assertStored(ctx, q, 'Patient', `Patient/${request.memberId}`, 'member');
    await assertNamed(ctx, q, request.priorCoverage, 'prior-coverage');
    await assertNamed(ctx, q, request.consent, 'consent');
    await enqueueJob(q, id);
    return { ...task, businessStatus: stage('created'), owner: { reference: `Organization/${OWN_ORGANIZATION_ID}` }, for: { reference: `Patient/${request.memberId}` }, authoredOn: task.authoredOn ?? new Date().toISOString() };
  }
  const current = await readCurrent(q, 'Task', id);
  const before = current && !current.deleted ? (JSON.parse(current.json) as Task) : undefined;
  if (!before || !isDataRequest(before)) {
    if (isDataRequest(task)) throw unprocessable('A Task becomes a data request only when it is created as one', ['Task.code']);
    return task;
  }
  return clientChange(q, id, before, task);
};

/** A client's update of a request: the same request, either unchanged in status or cancelled. */
async function clientChange(q: Queryable, id: string, before: Task, after: Task): Promise<Task> {
  const fixed = (t: Task) => JSON.stringify([t.code, t.intent, t.for, t.requester, t.owner, t.identifier, t.input, t.contained, t.businessStatus, t.output]);
  if (fixed(after) !== fixed(before)) throw unprocessable('The workflow owns a data-request Task: a client may only cancel it (status "cancelled"); code, for, requester, owner, identifier, input, businessStatus and output stay as they are', ['Task']);
  if (after.status === before.status) return after;
  const current = stageOf(before);
  if (after.status !== 'cancelled') throw unprocessable('A client may only change the status of a data-request Task to "cancelled"', ['Task.status']);
  if (current && FINAL_STAGES.includes(current)) throw unprocessable(`The request is already ${current}`, ['Task.status']);
  await cancelJob(q, id);
  return { ...after, businessStatus: stage('cancelled') };
}

async function assertStored(ctx: FhirContext, q: Queryable, type: string, reference: string, input: string): Promise<void> {
  const stored = await readCurrent(q, type, reference.slice(type.length + 1));
  if (!stored || stored.deleted || !ctx.access.mayRead(type)) throw unprocessable(`The ${input} input names ${type} that is not known here`, [`Task.input[${input}]`]);
}

async function assertNamed(ctx: FhirContext, q: Queryable, named: NamedResource<Resource>, input: string): Promise<void> {
  if ('reference' in named) await assertStored(ctx, q, named.reference.split('/')[0], named.reference, input);
}

export const workflowWriteRules: WriteRules = { Task: dataRequestRule };
