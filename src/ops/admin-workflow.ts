import { sql } from 'drizzle-orm';
import { Hono } from 'hono';
import type { AuditCaller } from '../audit/record.ts';
import type { Database } from '../db/connection.ts';
import { badRequest, conflict, FhirError, notFound, outcome } from '../fhir/errors.ts';
import { assertId } from '../fhir/interactions.ts';
import type { ResourceValidator } from '../fhir/validation.ts';
import type { Metrics } from './metrics.ts';
import { readJob, redriveJob, endJob } from '../workflow/jobs.ts';
import { RuleSetError } from '../workflow/routing.ts';
import { currentRollout, listRuleSets, publishRuleSet, ruleSetVersion, setCanaryShare } from '../workflow/routing-store.ts';
import { transitionTask } from '../workflow/transition.ts';

/**
 * The requester workflow's control plane for operators, behind the admin credential (the
 * '/admin/*' gate of auth/routes.ts; app.ts audits every call):
 * - routing rules: the rollout in force, each version, a new version (in force at once, or a
 *   canary for a share of requests), the canary's share (100 promotes, 0 rolls back);
 * - requests: a request's job (step, attempts, last error), its quarantined resources, and the
 *   operator's re-drive or close of a dead-lettered (or held) request.
 */
export function workflowAdminRoutes(deps: { db: Database; baseUrl: string; validator: ResourceValidator; metrics?: Metrics }): Hono {
  const app = new Hono({ strict: false });

  app.get('/admin/routing', async (c) => c.json({ rollout: (await currentRollout(deps.db)) ?? null, versions: await listRuleSets(deps.db) }));
  app.get('/admin/routing/versions/:version', async (c) => {
    const version = Number(c.req.param('version'));
    if (!Number.isInteger(version) || version < 1) throw badRequest('version is a positive integer');
    const ruleSet = await ruleSetVersion(deps.db, version);
    if (!ruleSet) throw notFound(`Routing has no version ${version}`);
    return c.json(ruleSet);
  });
  app.put('/admin/routing', async (c) => {
    const body = await jsonBody(c.req.raw);
    const { rules, reason, percent = 100, operator } = body as { rules?: unknown; reason?: unknown; percent?: unknown; operator?: unknown };
    if (typeof percent !== 'number' || !Number.isInteger(percent) || percent < 1 || percent > 100) throw badRequest('percent is the share of requests the new version takes: an integer from 1 (canary) to 100 (in force at once)', ['percent']);
    const saved = await publishRuleSet(deps.db, { rules }, text(operator, 'operator'), text(reason, 'reason'), percent).catch((error: unknown) => {
      if (error instanceof RuleSetError) throw new FhirError(422, outcome('error', 'invalid', error.message));
      throw error;
    });
    return c.json(saved, 201, { Location: new URL(`/admin/routing/versions/${saved.version}`, deps.baseUrl).href });
  });
  app.post('/admin/routing/canary', async (c) => {
    const { percent, operator } = (await jsonBody(c.req.raw)) as { percent?: unknown; operator?: unknown };
    if (typeof percent !== 'number' || !Number.isInteger(percent) || percent < 0 || percent > 100) throw badRequest('percent is an integer from 0 (roll back) to 100 (promote)', ['percent']);
    const rollout = await setCanaryShare(deps.db, percent, text(operator, 'operator'));
    if (!rollout) throw conflict('No canary is running');
    return c.json(rollout);
  });

  app.get('/admin/tasks/:id', async (c) => {
    const id = c.req.param('id');
    assertId(id);
    const job = await readJob(deps.db, id);
    if (!job) throw notFound(`No payer-to-payer request has Task/${id}`);
    const [{ quarantined }] = await deps.db.execute<{ quarantined: number }>(sql`SELECT count(*)::int AS quarantined FROM workflow_quarantine WHERE task_id = ${id}`);
    const { manifest: _manifest, partnerMember: _member, ...state } = job.state;
    return c.json({ task: `Task/${id}`, step: job.step, status: job.status, attempts: job.attempts, lastError: job.lastError, breached: job.breached, state, quarantined });
  });
  app.get('/admin/tasks/:id/quarantine', async (c) => {
    const id = c.req.param('id');
    assertId(id);
    const rows = await deps.db.execute(sql`SELECT id, resource_type AS "resourceType", source_id AS "sourceId", issues, content, created::text AS created FROM workflow_quarantine WHERE task_id = ${id} ORDER BY created, id`);
    return c.json(rows);
  });
  app.post('/admin/tasks/:id/retry', async (c) => {
    const { id, who, why, caller } = await operatorAction(c.req.param('id'), c.req.raw);
    const task = await deps.db.transaction(async (q) => {
      const job = await redriveJob(q, id);
      if (!job) throw conflict(`Task/${id} is not waiting for an operator (only a dead-lettered or held request is re-driven)`);
      return transitionTask(deps, q, id, job.state.stage ?? 'created', { note: `Re-driven by ${who}: ${why}` }, caller);
    });
    return c.json(task);
  });
  app.post('/admin/tasks/:id/close', async (c) => {
    const { id, who, why, caller } = await operatorAction(c.req.param('id'), c.req.raw);
    const task = await deps.db.transaction(async (q) => {
      const job = await readJob(q, id, true);
      if (!job || (job.status !== 'dead-lettered' && job.status !== 'held')) throw conflict(`Task/${id} is not waiting for an operator (only a dead-lettered or held request is closed)`);
      await endJob(q, id, 'failed', job.state, { class: 'non-retryable', code: 'closed-by-operator', detail: why });
      return transitionTask(deps, q, id, 'failed', { statusReason: { class: 'non-retryable', code: 'closed-by-operator', detail: `Closed by ${who}: ${why}` } }, caller);
    });
    return c.json(task);
  });
  return app;
}

/** An operator's action on a request: who and why are required, and recorded on the Task and in its AuditEvent. */
async function operatorAction(id: string, request: Request): Promise<{ id: string; who: string; why: string; caller: AuditCaller }> {
  assertId(id);
  const { reason, operator } = (await jsonBody(request)) as { reason?: unknown; operator?: unknown };
  const who = text(operator, 'operator');
  return { id, who, why: text(reason, 'reason'), caller: { clientId: `operator:${who}`, kind: 'operator' } };
}

async function jsonBody(request: Request): Promise<Record<string, unknown>> {
  const body: unknown = await request.json().catch(() => undefined);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('The body must be a JSON object');
  return body as Record<string, unknown>;
}

function text(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.trim() === '' || value.length > 1000) throw badRequest(`${name} is required: a text of 1 to 1000 characters`, [name]);
  return value.trim();
}
