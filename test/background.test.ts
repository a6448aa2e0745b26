import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_BACKOFF_MS, REPEAT_LOG_MS, runInBackground } from '../src/background.ts';

function capturingLogger() {
  const lines: Record<string, any>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

/** A database error as postgres.js throws it: a message that can quote data, and a SQLSTATE. */
class PostgresError extends Error {
  code = '57P01';
}

describe('runInBackground', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('runs a pass at once and then every interval, never two at a time', async () => {
    let running = 0;
    let most = 0;
    let passes = 0;
    const job = runInBackground(
      async () => {
        passes++;
        most = Math.max(most, ++running);
        await new Promise((resolve) => setTimeout(resolve, 250));
        running--;
      },
      100,
      { logger: undefined, what: 'test pass' },
    );
    expect(passes).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    const stopped = job.stop();
    await vi.advanceTimersByTimeAsync(300);
    await stopped;
    expect(most).toBe(1);
    expect(passes).toBeGreaterThanOrEqual(3);
    expect(passes).toBeLessThanOrEqual(5);
  });

  it('logs a failure streak once (class and code, no message), backs off, logs once a minute while it lasts, and logs the recovery', async () => {
    const { logger, lines } = capturingLogger();
    let failing = true;
    let passes = 0;
    const job = runInBackground(
      async () => {
        passes++;
        if (failing) throw new PostgresError('terminating connection for Jane Doe');
      },
      100,
      { logger, what: 'test pass' },
    );
    await vi.advanceTimersByTimeAsync(30_000);
    // Without backoff, 300 passes; with it, the waits double from 200 ms up to MAX_BACKOFF_MS.
    expect(passes).toBeGreaterThan(5);
    expect(passes).toBeLessThanOrEqual(Math.ceil(30_000 / MAX_BACKOFF_MS) + 7);
    expect(lines).toEqual([expect.objectContaining({ level: 50, msg: 'test pass failed; retrying', error: 'PostgresError', code: '57P01' })]);

    await vi.advanceTimersByTimeAsync(REPEAT_LOG_MS);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 50, msg: 'test pass still failing; retrying', code: '57P01' });
    expect(lines[1].failures).toBeGreaterThan(passes / 2);

    failing = false;
    await vi.advanceTimersByTimeAsync(MAX_BACKOFF_MS + 100);
    expect(lines[2]).toMatchObject({ level: 30, msg: 'test pass recovered' });
    expect(lines[2].failingForS).toBeGreaterThanOrEqual(90);
    const recovered = passes;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(passes - recovered).toBeGreaterThanOrEqual(9);
    await job.stop();
    expect(lines).toHaveLength(3);
    expect(JSON.stringify(lines)).not.toContain('Jane');
  });

  it('logs what describe says of a failure, and waits no less than its interval', async () => {
    const { logger, lines } = capturingLogger();
    let passes = 0;
    const job = runInBackground(
      async () => {
        passes++;
        throw new Error('disk full at /var/archive/member-1234');
      },
      60_000,
      { logger, what: 'archiving', describe: () => ({ reason: 'the archive folder is not writable' }) },
    );
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    await job.stop();
    expect(passes).toBeGreaterThanOrEqual(4);
    expect(lines[0]).toEqual(expect.objectContaining({ msg: 'archiving failed; retrying', reason: 'the archive folder is not writable' }));
    expect(JSON.stringify(lines)).not.toContain('member-1234');
  });

  it('stop() ends the schedule and waits for the pass in flight, which sees stopping()', async () => {
    let sawStopping = false;
    let passes = 0;
    const job = runInBackground(
      async (stopping) => {
        passes++;
        await new Promise((resolve) => setTimeout(resolve, 500));
        sawStopping = stopping();
      },
      100,
      { logger: undefined, what: 'test pass' },
    );
    const stopped = job.stop();
    await vi.advanceTimersByTimeAsync(600);
    await stopped;
    expect(sawStopping).toBe(true);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(passes).toBe(1);
  });
});
