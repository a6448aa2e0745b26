import type { Bundle, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimJobs } from '../../src/workflow/jobs.ts';
import { member, MESSY, setUpWorkflow, stages, type WorkflowSetup } from './workflow-support.ts';

const stage = (task: Task) => task.businessStatus?.coding?.[0]?.code;
const reason = (task: Task) => task.statusReason?.coding?.[0]?.code;

/**
 * Fault tests against the scriptable fake partner (issue 7, "Demo and tests"): in each, no Task
 * is lost, no data is imported twice, the Task shows the right stage and error, and a request
 * that exhausts its retries is dead-lettered.
 */
describe('requester workflow under partner faults', () => {
  let setup: WorkflowSetup;
  beforeAll(async () => {
    setup = await setUpWorkflow();
  });
  afterAll(async () => setup?.close());

  const observations = async (memberRef: string) =>
    Number((await setup.baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM resources WHERE resource_type = 'Observation' AND NOT deleted AND content::jsonb #>> '{subject,reference}' = ${memberRef}`))[0].n);

  it('retries a burst of 503s and still completes, with one import', async () => {
    setup.partner.script('member-match', { kind: 'respond', status: 503, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'transient' }] } }, 2);
    const task = await setup.request(member(0));
    const done = await setup.runUntil(task.id!, ['fulfilled', 'failed', 'dead-lettered']);
    expect(stage(done)).toBe('fulfilled');
    expect(setup.partner.calls.filter((c) => c.route === 'member-match' && c.idempotencyKey === `baton-${task.id}-match`).length).toBe(3);
    expect(await observations(done.for!.reference!)).toBe(3);
  });

  it('honours 429 Retry-After before calling again', async () => {
    setup.partner.script('member-match', { kind: 'respond', status: 429, headers: { 'Retry-After': '1' } }, 1);
    const task = await setup.request(member(1));
    const worker = setup.worker();
    await worker.runPending();
    await worker.runPending();
    await worker.runPending();
    const [job] = await setup.baton.db.execute<{ step: string; due: boolean; attempts: number }>(sql`SELECT step, attempts, run_at > now() AS due FROM workflow_jobs WHERE task_id = ${task.id}`);
    expect(job).toMatchObject({ step: 'match', attempts: 1, due: true });
    const done = await setup.runUntil(task.id!, ['fulfilled', 'dead-lettered']);
    expect(stage(done)).toBe('fulfilled');
  });

  it('dead-letters a request when the partner stays down past the attempts, and an operator re-drives it', async () => {
    await setup.partner.down();
    const task = await setup.request(member(2));
    const dead = await setup.runUntil(task.id!, ['dead-lettered', 'fulfilled', 'failed']);
    expect(stage(dead)).toBe('dead-lettered');
    expect(dead.status).toBe('failed');
    expect(reason(dead)).toMatch(/network|circuit-open/);
    expect(dead.statusReason?.text).toMatch(/attempts-exhausted|budget-exhausted/);
    await setup.partner.up();
    const admin = await setup.baton.db.execute<{ status: string }>(sql`SELECT status FROM workflow_jobs WHERE task_id = ${task.id}`);
    expect(admin[0].status).toBe('dead-lettered');
    const { redriveJob } = await import('../../src/workflow/jobs.ts');
    await setup.baton.db.transaction(async (q) => {
      expect(await redriveJob(q, task.id!)).toBeDefined();
    });
    // The breaker of the process may still be open for a moment: the re-driven step retries through it.
    const done = await setup.runUntil(task.id!, ['fulfilled', 'dead-lettered'], setup.worker(), 400);
    expect(stage(done)).toBe('fulfilled');
  });

  it('fails for good when the partner finds no member, with the reason on the Task', async () => {
    const task = await setup.request({ family: 'Nobody', given: 'Known', birthDate: '1990-01-01', card: 'X-0' });
    const done = await setup.runUntil(task.id!, ['failed', 'fulfilled', 'dead-lettered']);
    expect(stage(done)).toBe('failed');
    expect(reason(done)).toBe('no-match');
    const [event] = await setup.baton.db.execute<{ content: string }>(sql`SELECT content FROM audit_events WHERE content LIKE ${`%workflow-${task.id}%`} AND content LIKE '%member-match%' AND content LIKE ${`%${setup.partner.baseUrl}%`}`);
    expect(JSON.parse(event.content)).toMatchObject({ outcome: '4' });
    expect(setup.partner.calls.filter((c) => c.route === 'member-match' && c.idempotencyKey === `baton-${task.id}-match`).length).toBe(1);
  });

  it('holds an ambiguous match for manual review (on-hold)', async () => {
    const task = await setup.request({ family: 'Lindqvist', given: 'Emma', birthDate: '2010-06-15' });
    const done = await setup.runUntil(task.id!, ['manual-review', 'failed', 'fulfilled', 'dead-lettered']);
    expect(stage(done)).toBe('manual-review');
    expect(done.status).toBe('on-hold');
    expect(reason(done)).toBe('ambiguous');
    const [job] = await setup.baton.db.execute<{ status: string }>(sql`SELECT status FROM workflow_jobs WHERE task_id = ${task.id}`);
    expect(job.status).toBe('held');
  });

  it('dead-letters a bulk export that stays at 202 past the bulk timeout, and cancels it at the partner', async () => {
    setup.partner.script('status', { kind: 'stuck' }, 1000);
    const task = await setup.request(member(3), {}, 'bulk');
    const worker = setup.worker({ bulkTimeoutSeconds: 1 });
    const done = await setup.runUntil(task.id!, ['dead-lettered', 'fulfilled', 'failed'], worker, 400);
    expect(stage(done)).toBe('dead-lettered');
    expect(reason(done)).toBe('timeout');
    expect(setup.partner.count('cancel')).toBeGreaterThan(0);
    setup.partner.clearScripts('status');
  });

  it('imports nothing twice when the partner answers 200 again to a repeated Idempotency-Key', async () => {
    const task = await setup.request(member(4));
    await setup.runUntil(task.id!, ['fulfilled']);
    const memberRef = (await setup.task(task.id!)).for!.reference!;
    const before = await observations(memberRef);
    // The same request again, the partner doing the work again for every repeated key.
    setup.partner.script('member-match', { kind: 'no-replay' }, 5);
    setup.partner.script('everything', { kind: 'no-replay' }, 5);
    const again = await setup.baton.request('/fhir/Task', {
      method: 'POST',
      json: { ...(await setup.task(task.id!)), id: undefined, meta: undefined, status: 'requested', businessStatus: undefined, output: undefined, statusReason: undefined, identifier: [{ system: 'urn:enrollment:request', value: `again-${Date.now()}` }] },
    });
    expect(again.status).toBe(201);
    const second = (await again.json()) as Task;
    const done = await setup.runUntil(second.id!, ['fulfilled']);
    expect(await observations(memberRef)).toBe(before);
    expect(done.output?.find((o) => o.type.text === 'imported')?.valueInteger).toBe(0);
    setup.partner.clearScripts('member-match');
    setup.partner.clearScripts('everything');
  });

  it('survives a worker killed between sending and recording: another worker takes the job over, once', async () => {
    const task = await setup.request(member(5));
    // Worker A claims the job with a one-second lease and dies without recording anything.
    const [claimed] = await claimJobs(setup.baton.db, 'worker-a', 1, 1);
    expect(claimed.taskId).toBe(task.id);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const done = await setup.runUntil(task.id!, ['fulfilled', 'dead-lettered', 'failed']);
    expect(stage(done)).toBe('fulfilled');
    const history = (await (await setup.baton.request(`/fhir/Task/${task.id}/_history`)).json()) as Bundle<Task>;
    expect(stages(history)).toEqual(['created', 'validated', 'routed', 'matched', 'acknowledged', 'fulfilled']);
  });

  it('imports once when the worker fails between the partner answering and recording it, and the partner answers 200 again to the same key', async () => {
    // The import step talks to the partner and imports, then its recording fails, as if the process died there.
    await setup.baton.db.execute(sql.raw(`CREATE FUNCTION fail_recording() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'process died'; END $$`));
    await setup.baton.db.execute(sql.raw(`CREATE TRIGGER fail_recording BEFORE UPDATE ON workflow_jobs FOR EACH ROW WHEN (NEW.status = 'completed') EXECUTE FUNCTION fail_recording()`));
    setup.partner.script('everything', { kind: 'no-replay' }, 5);
    const task = await setup.request(member(7));
    const crashing = setup.worker({ leaseSeconds: 1 });
    let memberRef = '';
    for (let round = 0; round < 100 && !memberRef; round += 1) {
      await crashing.runPending().catch(() => undefined);
      const current = await setup.task(task.id!);
      if (stage(current) === 'acknowledged' && (await observations(current.for!.reference!)) === 3) memberRef = current.for!.reference!;
    }
    await setup.baton.db.execute(sql.raw('DROP TRIGGER fail_recording ON workflow_jobs'));
    await setup.baton.db.execute(sql.raw('DROP FUNCTION fail_recording()'));
    expect(memberRef).not.toBe('');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const done = await setup.runUntil(task.id!, ['fulfilled', 'dead-lettered', 'failed']);
    setup.partner.clearScripts('everything');
    expect(stage(done)).toBe('fulfilled');
    const everything = setup.partner.calls.filter((c) => c.route === 'everything' && c.idempotencyKey === `baton-${task.id}-everything`);
    expect(everything.filter((c) => !c.replayed).length).toBeGreaterThanOrEqual(2);
    expect(await observations(memberRef)).toBe(3);
    expect(done.output?.find((o) => o.type.text === 'imported')?.valueInteger).toBe(0);
    const history = (await (await setup.baton.request(`/fhir/Task/${task.id}/_history`)).json()) as Bundle<Task>;
    expect(stages(history).filter((s) => s === 'fulfilled')).toHaveLength(1);
  });

  it('quarantines what fails validation or is not about the member, imports the rest, and reports it on the Task', async () => {
    const task = await setup.request({ family: MESSY.family, given: MESSY.given, birthDate: MESSY.birthDate, card: MESSY.memberId });
    const done = await setup.runUntil(task.id!, ['fulfilled', 'failed', 'dead-lettered']);
    expect(stage(done)).toBe('fulfilled');
    const count = (name: string) => done.output?.find((o) => o.type.text === name)?.valueInteger;
    expect(count('imported')).toBe(1);
    expect(count('quarantined')).toBe(2);
    const rows = await setup.baton.db.execute<{ type: string; source: string; issues: { issue: { diagnostics?: string }[] } }>(
      sql`SELECT resource_type AS type, source_id AS source, issues FROM workflow_quarantine WHERE task_id = ${task.id} ORDER BY source_id`,
    );
    expect(rows.map((r) => [r.type, r.source])).toEqual([['Observation', 'messy-bad'], ['Patient', 'someone-else']]);
    expect(JSON.stringify(rows[0].issues)).toMatch(/code/);
  });

  it('times out a partner slower than the endpoint timeout and retries', async () => {
    setup.partner.script('member-match', { kind: 'delay', ms: 1500 }, 1);
    const task = await setup.request(member(6));
    const done = await setup.runUntil(task.id!, ['fulfilled', 'dead-lettered', 'failed']);
    expect(stage(done)).toBe('fulfilled');
    const matches = setup.partner.calls.filter((c) => c.route === 'member-match' && c.idempotencyKey === `baton-${task.id}-match`);
    expect(matches.length).toBe(2);
    expect(await setup.metrics.workflowRetries.get()).toMatchObject({ values: expect.arrayContaining([expect.objectContaining({ labels: { code: 'timeout' } })]) });
  });
});
