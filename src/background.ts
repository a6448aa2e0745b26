import { sqlState } from './db/connection.ts';
import type { Logger } from './logger.ts';

/** How a background job's failures are logged: no message text, which can quote data. */
export interface BackgroundFailures {
  logger: Logger | undefined;
  /** What failed, as its log lines name it: 'audit sealing pass'. */
  what: string;
  /** The fields of a failure's log line, when the job knows better than the default: the error's class and code. */
  describe?: (error: unknown) => Record<string, unknown> | undefined;
}

/**
 * After a failure, the wait before the next pass doubles per failure in a row, up to this (or
 * the job's interval, when longer): while the database is down, a job polling every 100 ms
 * neither reconnects ten times a second nor logs ten lines a second.
 */
export const MAX_BACKOFF_MS = 5_000;
/** While a job keeps failing, one log line this often, with the count, after the first one. */
export const REPEAT_LOG_MS = 60_000;

/**
 * A background job (the sealer, the archiver, the workers): `pass` runs at once and then every
 * `intervalMs`, never two at a time, without keeping the process alive. A pass that throws is
 * logged and retried with backoff; the first failure, one line a minute while it lasts, and the
 * recovery are logged. stop() ends the schedule and waits for the pass in flight, which reads
 * `stopping()` to end early.
 */
export function runInBackground(pass: (stopping: () => boolean) => Promise<unknown>, intervalMs: number, failures: BackgroundFailures): { stop(): Promise<void> } {
  const { logger, what } = failures;
  let inFlight: Promise<void> | undefined;
  let stopped = false;
  let failing: { since: number; count: number; loggedAt: number } | undefined;
  let resumeAt = 0;
  const stopping = () => stopped;

  const failed = (error: unknown): void => {
    const now = Date.now();
    const fields = failures.describe?.(error) ?? { error: (error as Error)?.constructor?.name ?? typeof error, code: sqlState(error) };
    if (!failing) {
      failing = { since: now, count: 1, loggedAt: now };
      logger?.error(fields, `${what} failed; retrying`);
    } else {
      failing.count++;
      if (now - failing.loggedAt >= REPEAT_LOG_MS) {
        failing.loggedAt = now;
        logger?.error({ ...fields, failures: failing.count, failingForS: Math.round((now - failing.since) / 1000) }, `${what} still failing; retrying`);
      }
    }
    resumeAt = now + Math.min(Math.max(intervalMs, MAX_BACKOFF_MS), intervalMs * 2 ** Math.min(failing.count, 20));
  };
  const succeeded = (): void => {
    if (!failing) return;
    logger?.info({ failures: failing.count, failingForS: Math.round((Date.now() - failing.since) / 1000) }, `${what} recovered`);
    failing = undefined;
    resumeAt = 0;
  };
  const tick = (): void => {
    if (stopped || inFlight || Date.now() < resumeAt) return;
    inFlight = pass(stopping)
      .then(succeeded, failed)
      .finally(() => (inFlight = undefined));
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  tick();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await inFlight;
    },
  };
}
