import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { AuditEvent, Extension, Task } from '@medplum/fhirtypes';
import { insertAuditEvents } from '../audit/writer.ts';
import { runInBackground } from '../background.ts';
import type { WorkflowConfig } from '../config.ts';
import type { Database, Queryable } from '../db/connection.ts';
import { FhirError } from '../fhir/errors.ts';
import { readCurrent } from '../fhir/store.ts';
import type { ResourceValidator } from '../fhir/validation.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import { publishEvent, SLA_BREACH_TOPIC } from '../subscriptions/events.ts';
import { DirectoryError, type Partner, readPartner } from './directory.ts';
import type { ImportTarget } from './import.ts';
import { claimJobs, endJob, type JobError, lockHeldJob, markBreached, moveJob, openJobsCreatedBefore, renewLease, retryJob, type WorkflowJob } from './jobs.ts';
import { PartnerError, type PartnerClient } from './partner/types.ts';
import { decideRetry, DEFAULT_RETRY_POLICY } from './retry-policy.ts';
import { type Stage, stageOf } from './stages.ts';
import { outboundAuditEvent } from './outbound-audit.ts';
import { runStep, StepFailure, type StepResult } from './steps.ts';
import { transitionTask, workflowAudit } from './transition.ts';

/**
 * Runs payer-to-payer requests: every Baton process runs a worker (BATON_WORKFLOW_WORKER), which
 * claims due jobs from workflow_jobs, runs one step of each, and records what the step achieved
 * in one transaction: the Task's new version (its stage, outputs or error), the AuditEvent of
 * that write, and the job's next step. A retryable failure is tried again after the retry
 * policy's backoff; one that exhausts attempts or budget is dead-lettered for an operator;
 * a refusal fails the request for good; a partner's ambiguous answer holds it for review.
 */

export interface WorkflowDeps {
  db: Database;
  baseUrl: string;
  validator: ResourceValidator;
  logger: Logger;
  metrics?: Metrics;
  config: WorkflowConfig;
  partnerClient: (partner: Partner) => PartnerClient;
}

export const SLA_BREACH_EXTENSION = 'urn:baton:sla-breach';

/** The stages in the order a request moves through them, for the SLA of "the next stage". */
const PATH: readonly Stage[] = ['created', 'validated', 'routed', 'matched', 'acknowledged', 'fulfilled'];

export class WorkflowWorker {
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

  constructor(private readonly deps: WorkflowDeps) {}

  /** Runs due jobs (up to `concurrency` at once) until none is due or stopping() says so; returns how many steps ran. */
  async runPending(stopping: () => boolean = () => false): Promise<number> {
    const { db, config, metrics } = this.deps;
    let ran = 0;
    while (!stopping()) {
      const start = performance.now();
      const jobs = await claimJobs(db, this.owner, config.leaseSeconds, config.concurrency);
      metrics?.workflowQueueSeconds.observe({ phase: 'claim' }, (performance.now() - start) / 1000);
      if (jobs.length === 0) break;
      await Promise.all(jobs.map((job) => this.process(job)));
      ran += jobs.length;
      // On PGlite a query resolves without the event loop turning: without this, batches of
      // database-only steps would hold the whole process (its API, timers, partner calls) until the queue ran dry.
      await new Promise((resolve) => setImmediate(resolve));
    }
    await this.checkDeadlines();
    return ran;
  }

  /** Runs one step of a claimed job and records its result. */
  async process(job: WorkflowJob): Promise<void> {
    const { db, config, metrics } = this.deps;
    const task = await readTask(db, job.taskId);
    if (!task) {
      await db.transaction(async (q) => {
        if (await lockHeldJob(q, job.taskId, this.owner)) await endJob(q, job.taskId, 'failed', job.state, { class: 'non-retryable', code: 'task-deleted', detail: 'The request Task was deleted' });
      });
      return;
    }
    const start = performance.now();
    const stepDeps = {
      db,
      baseUrl: this.deps.baseUrl,
      partnerClient: this.deps.partnerClient,
      bulkTimeoutMs: config.bulkTimeoutSeconds * 1000,
      importTarget: (j: WorkflowJob, partner: Partner, partnerMemberId: string, memberId: string): ImportTarget => ({
        db,
        baseUrl: this.deps.baseUrl,
        validator: this.deps.validator,
        audit: () => workflowAudit(this.deps.baseUrl, j.taskId),
        taskId: j.taskId,
        partnerBaseUrl: partner.endpoint.baseUrl,
        partnerMemberId,
        memberId,
        transmitter: partner.organization,
      }),
      renewLease: async () => {
        if (!(await renewLease(db, job.taskId, this.owner, config.leaseSeconds))) throw new LostLease();
      },
    };
    // The partner chosen by the route step, read once for the step, its AuditEvent and its retry policy.
    let partner: Partner | undefined;
    let result: StepResult;
    try {
      partner = job.state.endpointId ? await readPartner(db, job.state.endpointId) : undefined;
      result = await runStep(stepDeps, job, task, partner);
    } catch (error) {
      metrics?.workflowSteps.observe({ step: job.step, result: 'error' }, (performance.now() - start) / 1000);
      if (error instanceof LostLease) return;
      await this.recordFailure(job, error, partner, exchangeAudit(job, task, partner, error));
      return;
    }
    metrics?.workflowSteps.observe({ step: job.step, result: 'wait' in result ? 'wait' : 'ok' }, (performance.now() - start) / 1000);
    const exchange = 'wait' in result ? undefined : exchangeAudit(job, task, partner);
    const recording = performance.now();
    await db.transaction(async (q) => {
      const held = await lockHeldJob(q, job.taskId, this.owner);
      if (!held) return;
      if (exchange) await insertAuditEvents(q, [exchange]);
      if ('wait' in result) {
        await retryJob(q, job.taskId, result.state, result.wait);
        return;
      }
      let state = result.state;
      if (result.stage) {
        state = { ...state, stage: result.stage, stageSinceMs: held.nowMs };
        await transitionTask(this.deps, q, job.taskId, result.stage, { ...(result.output ? { output: result.output } : {}) });
      }
      if (result.next === 'done') await endJob(q, job.taskId, 'completed', state);
      else await moveJob(q, job.taskId, result.next, state, result.delayMs);
    });
    metrics?.workflowQueueSeconds.observe({ phase: 'record' }, (performance.now() - recording) / 1000);
  }

  /** A failed step: tried again (under the partner's retry policy, or the default before one is chosen), dead-lettered, failed for good, or held for review. */
  private async recordFailure(job: WorkflowJob, error: unknown, partner: Partner | undefined, exchange: AuditEvent | undefined): Promise<void> {
    const { db, metrics, logger } = this.deps;
    const failure = classify(error);
    logger.warn({ task: job.taskId, step: job.step, code: failure.error.code, class: failure.error.class, status: failure.error.status, attempt: job.attempts + 1 }, 'workflow step failed');
    const policy = (failure.partnerError && partner?.retry) || DEFAULT_RETRY_POLICY;
    await db.transaction(async (q) => {
      if (!(await lockHeldJob(q, job.taskId, this.owner))) return;
      if (exchange) await insertAuditEvents(q, [exchange]);
      let outcome = failure.outcome;
      if (outcome === 'retry') {
        const retryable = failure.partnerError ?? new PartnerError('retryable', 'server-error', failure.error.detail);
        const decision = decideRetry(policy, { number: job.attempts + 1, firstAttemptAtMs: job.stepStartedMs, nowMs: job.nowMs }, retryable);
        if (decision.retry) {
          metrics?.workflowRetries.inc({ code: failure.error.code });
          await retryJob(q, job.taskId, job.state, decision.delayMs, failure.error);
          return;
        }
        outcome = decision.reason === 'manual' ? 'manual-review' : decision.reason === 'non-retryable' ? 'failed' : 'dead-lettered';
        if (outcome === 'dead-lettered') failure.error.detail = `${failure.error.detail} (${decision.reason})`;
      }
      await transitionTask(this.deps, q, job.taskId, outcome, { statusReason: failure.error });
      await endJob(q, job.taskId, outcome === 'manual-review' ? 'held' : outcome, job.state, failure.error);
    });
  }

  /**
   * SLA: a request whose next stage is overdue (counted from when it reached its stage) gets a
   * Task version carrying the breach, a metric and a subscription event, once per stage.
   */
  async checkDeadlines(): Promise<void> {
    const { sla } = this.deps.config;
    const shortest = Math.min(...Object.values(sla));
    if (!Number.isFinite(shortest)) return;
    const jobs = await openJobsCreatedBefore(this.deps.db, Date.now() - shortest * 1000);
    for (const job of jobs) {
      const current = job.state.stage ?? 'created';
      const next = PATH[PATH.indexOf(current) + 1];
      const seconds = next ? (sla as Partial<Record<Stage, number>>)[next] : undefined;
      if (!next || seconds === undefined) continue;
      const deadlineMs = (job.state.stageSinceMs ?? job.createdMs) + seconds * 1000;
      if (job.nowMs <= deadlineMs) continue;
      await this.deps.db.transaction(async (q) => {
        if (!(await markBreached(q, job.taskId, next))) return;
        const stored = await readCurrent(q, 'Task', job.taskId, true);
        const task = stored && !stored.deleted ? (JSON.parse(stored.json) as Task) : undefined;
        if (!task) return;
        const extension: Extension = { url: SLA_BREACH_EXTENSION, extension: [{ url: 'stage', valueCode: next }, { url: 'deadline', valueDateTime: new Date(deadlineMs).toISOString() }] };
        await transitionTask(this.deps, q, job.taskId, stageOf(task) ?? current, { extension });
        await publishEvent(q, { topic: SLA_BREACH_TOPIC, focus: { reference: `Task/${job.taskId}` } });
        this.deps.metrics?.workflowSlaBreaches.inc({ stage: next });
        this.deps.logger.warn({ task: job.taskId, stage: next }, 'workflow SLA breached');
      });
    }
  }
}

class LostLease extends Error {}

type Classified = { outcome: 'retry' | 'failed' | 'dead-lettered' | 'manual-review'; error: JobError; partnerError?: PartnerError };

/** Baton's error taxonomy applied to what a step threw. */
function classify(error: unknown): Classified {
  if (error instanceof PartnerError) {
    const jobError: JobError = { class: error.errorClass, code: error.code, detail: error.message, ...(error.status !== undefined ? { status: error.status } : {}) };
    return { outcome: 'retry', error: jobError, partnerError: error };
  }
  if (error instanceof StepFailure) return { outcome: error.outcome, error: { class: 'non-retryable', code: error.code, detail: error.message } };
  if (error instanceof DirectoryError) return { outcome: 'dead-lettered', error: { class: 'non-retryable', code: 'configuration', detail: error.message } };
  if (error instanceof FhirError && error.status < 500) return { outcome: 'failed', error: { class: 'non-retryable', code: 'invalid-input', detail: error.outcome.issue?.[0]?.diagnostics ?? 'Invalid request' } };
  // Baton's own trouble (the database, a bug): retried like a partner's 5xx, and named without details that could quote data.
  const name = (error as Error)?.constructor?.name ?? typeof error;
  return { outcome: 'retry', error: { class: 'retryable', code: 'internal', detail: `Internal error (${name}); the logs have its request id` } };
}

/** The AuditEvent of the step's exchange with the partner, if it had one (outbound-audit.ts). */
function exchangeAudit(job: WorkflowJob, task: Task, partner: Partner | undefined, error?: unknown): AuditEvent | undefined {
  return partner ? outboundAuditEvent(job, partner.endpoint.baseUrl, task.for?.reference?.replace(/^Patient\//, ''), error) : undefined;
}

async function readTask(q: Queryable, taskId: string): Promise<Task | undefined> {
  const stored = await readCurrent(q, 'Task', taskId);
  return stored && !stored.deleted ? (JSON.parse(stored.json) as Task) : undefined;
}

/** The worker of a Baton process: a run every intervalMs, stopped on shutdown; kick() runs one now. */
export function startWorkflowWorker(deps: WorkflowDeps, intervalMs: number): { worker: WorkflowWorker; stop(): Promise<void> } {
  const worker = new WorkflowWorker(deps);
  const background = runInBackground((stopping) => worker.runPending(stopping), intervalMs, { logger: deps.logger, what: 'workflow worker run' });
  return { worker, stop: () => background.stop() };
}
