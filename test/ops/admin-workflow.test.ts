import type { Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { createLogger } from '../../src/logger.ts';
import { SLA_BREACH_EXTENSION } from '../../src/workflow/worker.ts';
import { ADMIN_TOKEN } from '../auth/harness.ts';
import { BASE_URL } from '../support/baton.ts';
import { member, PRIOR_PAYER, setUpWorkflow, stages, type WorkflowSetup } from '../workflow/workflow-support.ts';

/** The requester workflow's control plane as an operator uses it (issue 7): routing versions and canaries, re-drive and close, SLA breaches. */
describe('workflow admin API', () => {
  let setup: WorkflowSetup;
  let admin: (path: string, init?: { method?: string; json?: unknown; token?: string | null }) => Promise<Response>;
  beforeAll(async () => {
    setup = await setUpWorkflow();
    const app = createApp({ config: { baseUrl: BASE_URL, maxBodyBytes: 1024 * 1024, adminToken: ADMIN_TOKEN }, db: setup.baton.db, logger: createLogger('silent'), validator: setup.baton.validator });
    admin = async (path, init = {}) => {
      const headers = new Headers({ 'content-type': 'application/json' });
      if (init.token !== null) headers.set('authorization', `Bearer ${init.token ?? ADMIN_TOKEN}`);
      return app.request(path, { method: init.method ?? 'GET', headers, ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}) });
    };
  });
  afterAll(async () => setup?.close());

  const rules = (endpoint: string) => [{ id: 'r', when: { payer: [`${PRIOR_PAYER.system}|${PRIOR_PAYER.value}`] }, endpoint }];

  it('refuses every call without the admin credential', async () => {
    for (const [method, path] of [['GET', '/admin/routing'], ['PUT', '/admin/routing'], ['POST', '/admin/routing/canary'], ['GET', '/admin/tasks/x'], ['POST', '/admin/tasks/x/retry'], ['POST', '/admin/tasks/x/close']]) {
      const json = method === 'GET' ? undefined : {};
      expect((await admin(path, { method, token: null, json })).status).toBe(401);
      expect((await admin(path, { method, token: 'wrong', json })).status).toBe(403);
    }
  });

  it('publishes a routing version, runs it as a canary, and promotes it', async () => {
    const before = (await (await admin('/admin/routing')).json()) as { rollout: { stable: number } };
    const created = await admin('/admin/routing', { method: 'PUT', json: { rules: rules('Endpoint/prior-payer-fhir'), reason: 'canary test', operator: 'ops-1', percent: 10 } });
    expect(created.status).toBe(201);
    const { version, rollout } = (await created.json()) as { version: number; rollout: { stable: number; candidate: number; percent: number } };
    expect(rollout).toMatchObject({ stable: before.rollout.stable, candidate: version, percent: 10 });
    const read = (await (await admin(`/admin/routing/versions/${version}`)).json()) as { rules: unknown[]; createdBy: string; reason: string };
    expect(read).toMatchObject({ rules: rules('Endpoint/prior-payer-fhir'), createdBy: 'ops-1', reason: 'canary test' });
    const promoted = (await (await admin('/admin/routing/canary', { method: 'POST', json: { percent: 100, operator: 'ops-1' } })).json()) as { stable: number; candidate: number | null };
    expect(promoted).toMatchObject({ stable: version, candidate: null });
    expect((await admin('/admin/routing/canary', { method: 'POST', json: { percent: 50, operator: 'ops-1' } })).status).toBe(409);
    // Every change of the control plane is in the audit trail.
    const [{ n }] = await setup.baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM audit_events WHERE content LIKE '%urn:baton:admin:routing%'`);
    expect(Number(n)).toBeGreaterThanOrEqual(3);
  });

  it('routes a request by the version in force and writes it into the Task', async () => {
    const published = (await (await admin('/admin/routing', { method: 'PUT', json: { rules: rules('Endpoint/prior-payer-fhir'), reason: 'in force', operator: 'ops-1' } })).json()) as { version: number };
    const task = await setup.request(member(0));
    const done = await setup.runUntil(task.id!, ['fulfilled', 'failed', 'dead-lettered']);
    expect(done.output?.find((o) => o.type.text === 'routing-version')?.valueInteger).toBe(published.version);
  });

  it('refuses invalid routing versions with 422 or 400', async () => {
    expect((await admin('/admin/routing', { method: 'PUT', json: { rules: [{ id: 'a', endpoint: 'Nope' }], reason: 'x', operator: 'o' } })).status).toBe(422);
    expect((await admin('/admin/routing', { method: 'PUT', json: { rules: [], operator: 'o' } })).status).toBe(400);
    expect((await admin('/admin/routing', { method: 'PUT', json: { rules: [], reason: 'x', operator: 'o', percent: 0 } })).status).toBe(400);
    expect((await admin('/admin/routing/versions/999')).status).toBe(404);
  });

  it('fails a request no rule routes, and lets an operator read why', async () => {
    await admin('/admin/routing', { method: 'PUT', json: { rules: [], reason: 'no routes', operator: 'ops-1' } });
    const task = await setup.request(member(1));
    const done = await setup.runUntil(task.id!, ['failed', 'dead-lettered', 'fulfilled']);
    expect(done.statusReason?.coding?.[0]?.code).toBe('no-route');
    const job = (await (await admin(`/admin/tasks/${task.id}`)).json()) as { status: string; lastError: { code: string } };
    expect(job).toMatchObject({ status: 'failed', lastError: { code: 'no-route' } });
    await admin('/admin/routing', { method: 'PUT', json: { rules: rules('Endpoint/prior-payer-fhir'), reason: 'restore', operator: 'ops-1' } });
  });

  it('re-drives a dead-lettered request, recording who and why on the Task, and closes another', async () => {
    await setup.partner.down();
    const first = await setup.request(member(2));
    const second = await setup.request(member(3));
    await setup.runUntil(first.id!, ['dead-lettered']);
    await setup.runUntil(second.id!, ['dead-lettered']);
    await setup.partner.up();
    expect((await admin(`/admin/tasks/${first.id}/retry`, { method: 'POST', json: { operator: 'ops-2' } })).status).toBe(400);
    const redriven = await admin(`/admin/tasks/${first.id}/retry`, { method: 'POST', json: { operator: 'ops-2', reason: 'partner back up' } });
    expect(redriven.status).toBe(200);
    expect(((await redriven.json()) as Task).note?.at(-1)?.text).toBe('Re-driven by ops-2: partner back up');
    expect((await admin(`/admin/tasks/${first.id}/retry`, { method: 'POST', json: { operator: 'ops-2', reason: 'again' } })).status).toBe(409);
    const done = await setup.runUntil(first.id!, ['fulfilled', 'dead-lettered'], setup.worker(), 400);
    expect(done.businessStatus?.coding?.[0]?.code).toBe('fulfilled');
    const history = (await (await setup.baton.request(`/fhir/Task/${first.id}/_history`)).json()) as { entry?: { resource?: Task }[] };
    expect(stages(history)).toContain('dead-lettered');

    const closed = await admin(`/admin/tasks/${second.id}/close`, { method: 'POST', json: { operator: 'ops-2', reason: 'member withdrew' } });
    expect(closed.status).toBe(200);
    const task = (await closed.json()) as Task;
    expect(task.status).toBe('failed');
    expect(task.statusReason?.coding?.[0]?.code).toBe('closed-by-operator');
    expect((await admin(`/admin/tasks/${second.id}/close`, { method: 'POST', json: { operator: 'ops-2', reason: 'again' } })).status).toBe(409);
    expect((await admin('/admin/tasks/not-a-request')).status).toBe(404);
  });

  it('marks an overdue stage on the Task once, counts it, and keeps going', async () => {
    const task = await setup.request(member(4));
    await setup.baton.db.execute(sql`UPDATE workflow_jobs SET created = now() - interval '1 hour', run_at = now() + interval '1 hour' WHERE task_id = ${task.id}`);
    const worker = setup.worker({ sla: { validated: 10 } });
    await worker.checkDeadlines();
    await worker.checkDeadlines();
    const breached = await setup.task(task.id!);
    const marks = (breached.extension ?? []).filter((e) => e.url === SLA_BREACH_EXTENSION);
    expect(marks).toHaveLength(1);
    expect(marks[0].extension?.find((e) => e.url === 'stage')?.valueCode).toBe('validated');
    expect(breached.businessStatus?.coding?.[0]?.code).toBe('created');
    const metric = await setup.metrics.workflowSlaBreaches.get();
    expect(metric.values.find((v) => v.labels.stage === 'validated')?.value).toBe(1);
  });
});
