import type { Bundle, OperationOutcome, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataRequest, member, setUpWorkflow, type WorkflowSetup } from './workflow-support.ts';

/** The data-request Task contract (issue 7) as a client meets it through POST /fhir/Task. */
describe('data-request Task intake', () => {
  let setup: WorkflowSetup;
  let valid: Task;
  beforeAll(async () => {
    setup = await setUpWorkflow();
    valid = await setup.request(member(0));
  });
  afterAll(async () => setup?.close());

  const post = async (task: unknown) => setup.baton.request('/fhir/Task', { method: 'POST', json: task });
  const base = (): Task => {
    const { id: _id, meta: _meta, businessStatus: _b, owner: _o, authoredOn: _a, ...rest } = valid;
    return { ...rest, identifier: [{ system: 'urn:enrollment:request', value: `intake-${Math.random()}` }] };
  };
  const refused = async (task: unknown, status: number, expression: string | RegExp) => {
    const response = await post(task);
    expect(response.status).toBe(status);
    const outcome = (await response.json()) as OperationOutcome;
    expect(outcome.resourceType).toBe('OperationOutcome');
    const where = outcome.issue[0].expression?.join(' ') ?? '';
    if (typeof expression === 'string') expect(where).toContain(expression);
    else expect(where).toMatch(expression);
    return outcome;
  };
  const withoutInput = (name: string): Task => ({ ...base(), input: base().input!.filter((i) => i.type.text !== name) });

  it('queues the request in the transaction that records the Task', async () => {
    const rows = await setup.baton.db.execute<{ step: string; status: string }>(sql`SELECT step, status FROM workflow_jobs WHERE task_id = ${valid.id}`);
    expect(rows).toEqual([{ step: 'validate', status: 'queued' }]);
  });

  it.each([
    ['member', 'Task.input[member]'],
    ['prior-coverage', 'Task.input[prior-coverage]'],
    ['consent', 'Task.input[consent]'],
  ])('refuses a request without its %s input, naming the input', async (name, expression) => {
    const task = withoutInput(name);
    if (name === 'member') delete task.for;
    await refused(task, 422, expression);
  });

  it('refuses the other contract violations with 422 naming the element', async () => {
    await refused({ ...base(), intent: 'plan' }, 422, 'Task.intent');
    await refused({ ...base(), identifier: undefined }, 422, 'Task.identifier');
    await refused({ ...base(), requester: { reference: 'Patient/x' } }, 422, 'Task.requester');
    await refused({ ...base(), owner: { reference: 'Organization/someone-else' } }, 422, 'Task.owner');
    await refused({ ...base(), status: 'in-progress' }, 422, 'Task.status');
    await refused({ ...base(), for: { reference: 'Patient/another' } }, 422, /Task.input\[member\]/);
    await refused({ ...base(), input: [...withoutInput('consent').input!, { type: { text: 'consent' }, valueReference: { reference: 'Consent/not-here' } }] }, 422, 'Task.input[consent]');
    await refused({ ...base(), input: [...withoutInput('consent').input!, { type: { text: 'consent' }, valueReference: { reference: '#missing' } }] }, 422, 'Task.input[consent]');
    await refused({ ...base(), input: [...withoutInput('prior-coverage').input!, { type: { text: 'prior-coverage' }, valueString: 'W123' }] }, 422, 'Task.input[prior-coverage]');
    await refused({ ...base(), input: [...base().input!, { type: { text: 'request-type' }, valueCode: 'fax' }] }, 422, 'Task.input[request-type]');
    await refused({ ...base(), input: [...base().input!, base().input![0]] }, 422, 'Task.input[member]');
  });

  it('refuses a member this payer does not hold, without echoing it', async () => {
    const task = { ...base(), for: undefined, input: [...withoutInput('member').input!, { type: { text: 'member' }, valueReference: { reference: 'Patient/nobody-here' } }] };
    const outcome = await refused(task, 422, 'Task.input[member]');
    expect(JSON.stringify(outcome)).not.toContain('nobody-here');
  });

  it('accepts the old card and the consent contained in the Task', async () => {
    const coverage = (await (await setup.baton.request(`/fhir/${base().input!.find((i) => i.type.text === 'prior-coverage')!.valueReference!.reference}`)).json()) as Record<string, unknown>;
    const task = {
      ...withoutInput('prior-coverage'),
      contained: [{ ...coverage, id: 'card', meta: undefined }],
      input: [...withoutInput('prior-coverage').input!, { type: { coding: [{ system: 'urn:baton:task-input', code: 'prior-coverage' }] }, valueReference: { reference: '#card' } }],
    };
    const response = await post(task);
    expect(response.status).toBe(201);
    const created = (await response.json()) as Task;
    const done = await setup.runUntil(created.id!, ['fulfilled', 'failed', 'dead-lettered']);
    expect(done.businessStatus?.coding?.[0]?.code).toBe('fulfilled');
  });

  it('leaves other Tasks alone', async () => {
    const response = await post({ resourceType: 'Task', status: 'draft', intent: 'proposal' });
    expect(response.status).toBe(201);
  });

  it('lets a client cancel a request, and nothing else', async () => {
    const task = await setup.request(member(1));
    const changed = await setup.baton.request(`/fhir/Task/${task.id}`, { method: 'PUT', json: { ...task, status: 'completed' } });
    expect(changed.status).toBe(422);
    const moved = await setup.baton.request(`/fhir/Task/${task.id}`, { method: 'PUT', json: { ...task, input: task.input!.slice(1) } });
    expect(moved.status).toBe(422);
    const cancelled = await setup.baton.request(`/fhir/Task/${task.id}`, { method: 'PUT', json: { ...task, status: 'cancelled' } });
    expect(cancelled.status).toBe(200);
    expect(((await cancelled.json()) as Task).businessStatus?.coding?.[0]?.code).toBe('cancelled');
    const [job] = await setup.baton.db.execute<{ status: string }>(sql`SELECT status FROM workflow_jobs WHERE task_id = ${task.id}`);
    expect(job.status).toBe('cancelled');
    await setup.worker().runPending();
    expect((await setup.task(task.id!)).status).toBe('cancelled');
  });

  it('turns no existing Task into a data request by an update', async () => {
    const plain = (await (await post({ resourceType: 'Task', status: 'draft', intent: 'order' })).json()) as Task;
    const response = await setup.baton.request(`/fhir/Task/${plain.id}`, { method: 'PUT', json: { ...dataRequest('x', 'Coverage/y', 'Consent/z', 'b'), id: plain.id } });
    expect(response.status).toBe(422);
  });

  it('answers "where is this request now" through Task search', async () => {
    const task = await setup.request(member(2));
    await setup.runUntil(task.id!, ['fulfilled']);
    const search = async (query: string) => ((await (await setup.baton.request(`/fhir/Task?${query}`)).json()) as Bundle<Task>).entry?.map((e) => e.resource!.id) ?? [];
    expect(await search('status=completed')).toContain(task.id);
    expect(await search('business-status=fulfilled')).toContain(task.id);
    expect(await search('business-status=created')).not.toContain(task.id);
    expect(await search('owner=Organization/baton-payer&status=completed')).toContain(task.id);
    expect(await search(`patient=${(await setup.task(task.id!)).for!.reference}`)).toEqual([task.id]);
    expect(await search(`identifier=${task.identifier![0].system}|${task.identifier![0].value}`)).toEqual([task.id]);
  });
});
