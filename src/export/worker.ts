import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { runInBackground } from '../background.ts';
import { sql } from 'drizzle-orm';
import type { Queryable } from '../db/connection.ts';
import { FhirError, outcome } from '../fhir/errors.ts';
import type { Logger } from '../logger.ts';
import { claimJob, EXPORT_JOBS_CHANNEL, type ExportJob, failAbandoned, failStep, type JobError, LostLease, purgeJobs, readJob, recordStep, renewLease } from './jobs.ts';
import { completeJob, type PlanDeps, planNextType, publishJobFinished, resolveJob } from './plan.ts';

/**
 * Runs export jobs; one runs in every Baton process (server.ts), and the process that accepts a
 * kick-off kicks its own at once. Jobs are claimed from the database with a lease, so several
 * workers share them, a crashed worker's job is taken over when its lease runs out, and no
 * state outside the database matters. A worker renews the lease of the job it works on while
 * it works; a step that keeps failing is retried with a growing delay, and after maxAttempts
 * the job fails with an OperationOutcome instead of answering 202 forever.
 */
export interface ExportWorkerDeps extends PlanDeps {
  logger?: Logger;
  /** Matches the members of a $bulk-member-match job (operations/bulk-member-match.ts); every Baton process has it. */
  matchMembers?: MatchMembers;
}

/**
 * Matches a job's membersToMatch and stores their Groups; `record`, called in the transaction
 * that stores them, records the step (the job no longer holds the members).
 */
export type MatchMembers = (job: ExportJob, record: (q: Queryable) => Promise<void>) => Promise<void>;

/** What one step of a job led to. */
export type StepResult = { next: ExportJob } | { done: true } | { lost: true };

export class ExportWorker {
  /** This worker's name in lease_owner. */
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private running: Promise<void> | undefined;
  private kicked = false;

  constructor(private readonly deps: ExportWorkerDeps) {}

  /** Runs jobs until none is due (or stopping() says so); returns how many it took on. */
  async runPending(stopping: () => boolean = () => false): Promise<number> {
    const { db, config } = this.deps;
    await db.transaction(async (tx) => {
      for (const job of await failAbandoned(tx, config.maxAttempts, config.ttlSeconds)) await publishJobFinished(tx, this.deps.baseUrl, job);
    });
    await purgeJobs(db);
    let taken = 0;
    while (!stopping()) {
      const job = await this.claim();
      if (!job) break;
      taken += 1;
      await this.process(job);
    }
    return taken;
  }

  /** Starts a run now, in the background, or another one right after the run in progress. */
  kick(): void {
    if (this.running) {
      this.kicked = true;
      return;
    }
    this.running = (async () => {
      do {
        this.kicked = false;
        await this.runPending().catch((error: unknown) => this.logFailure(undefined, error));
      } while (this.kicked);
    })().finally(() => (this.running = undefined));
  }

  /** Resolves when the run in progress (if any) has ended. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  claim(): Promise<ExportJob | undefined> {
    return claimJob(this.deps.db, this.owner, this.deps.config.leaseSeconds, this.deps.config.maxAttempts);
  }

  /** Works on a claimed job step by step until it completes, fails, or is no longer this worker's. */
  async process(job: ExportJob): Promise<void> {
    const { db, config } = this.deps;
    const heartbeat = setInterval(() => {
      renewLease(db, job.id, this.owner, config.leaseSeconds).catch((error: unknown) => this.logFailure(job, error));
    }, (config.leaseSeconds * 1000) / 3);
    heartbeat.unref();
    let current = job;
    try {
      for (;;) {
        const result = await this.step(current);
        if (!('next' in result)) return;
        current = result.next;
      }
    } catch (error) {
      const failure = jobError(error);
      // A refusal (a Group gone by transactionTime) will not change on retry: it fails at once.
      const attempts = error instanceof FhirError ? config.maxAttempts : current.attempts;
      const result = await db.transaction(async (tx) => {
        const step = await failStep(tx, { ...current, attempts }, this.owner, failure, config.maxAttempts, config.ttlSeconds);
        if (step === 'failed') await publishJobFinished(tx, this.deps.baseUrl, { id: current.id, clientId: current.caller.clientId });
        return step;
      });
      this.logFailure(current, error, result);
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** One step of the job: match its members (a $bulk-member-match), resolve, plan one type, or complete. */
  async step(job: ExportJob): Promise<StepResult> {
    try {
      if (job.parameters.membersToMatch) return { next: await this.matchMembers(job) };
      if (job.types === null) return { next: await resolveJob(this.deps, job, this.owner) };
      if (job.planned < job.types.length) return { next: await planNextType(this.deps, job, this.owner) };
      await completeJob(this.deps, job, this.owner);
      return { done: true };
    } catch (error) {
      if (error instanceof LostLease) return { lost: true };
      throw error;
    }
  }

  /**
   * The members' Groups are what the job exports, so its transactionTime becomes the moment they
   * are stored (the kick-off's time came before them).
   */
  private async matchMembers(job: ExportJob): Promise<ExportJob> {
    const { matchMembers, db, config } = this.deps;
    if (!matchMembers) throw new Error('this worker cannot match members');
    await matchMembers(job, (q) =>
      recordStep(q, job, this.owner, config.leaseSeconds, sql`parameters = parameters - 'membersToMatch', transaction_time = date_trunc('milliseconds', clock_timestamp())`),
    );
    const next = await readJob(db, job.id);
    if (!next) throw new LostLease(`export ${job.id} is gone`);
    return next;
  }

  private logFailure(job: ExportJob | undefined, error: unknown, result?: string): void {
    // Class and SQLSTATE only: a driver's message can quote the data it was reading.
    const code = (error as { code?: string } | undefined)?.code;
    this.deps.logger?.error({ job: job?.id, error: (error as Error)?.constructor?.name ?? typeof error, code, result }, 'export job step failed');
  }
}

/** How a failed job answers: a refusal as it was raised, anything else as a 500 naming no internals. */
function jobError(error: unknown): JobError {
  if (error instanceof FhirError) return { status: error.status, outcome: error.outcome };
  return { status: 500, outcome: outcome('error', 'exception', 'The export failed on the server; the job id identifies it in the logs') };
}

/**
 * The worker of a Baton process: a run at once whenever a job is kicked off in any process
 * (NOTIFY on EXPORT_JOBS_CHANNEL), and a run every intervalMs for what no notification
 * announces (jobs left by crashed workers, retries, a notification lost); stopped on shutdown.
 */
export async function startExportWorker(deps: ExportWorkerDeps, intervalMs: number): Promise<{ worker: ExportWorker; stop(): Promise<void> }> {
  const worker = new ExportWorker(deps);
  const unlisten = await deps.db.listen(EXPORT_JOBS_CHANNEL, () => worker.kick());
  const background = runInBackground((stopping) => worker.runPending(stopping), intervalMs, { logger: deps.logger, what: 'export worker run' });
  return {
    worker,
    stop: async () => {
      await unlisten();
      await background.stop();
      await worker.idle();
    },
  };
}
