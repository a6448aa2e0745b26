import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { member, setUpWorkflow, type WorkflowSetup } from './workflow-support.ts';

/**
 * A worker lets the rest of its process run between batches. On PGlite every query resolves
 * without the event loop turning, so a worker running database-only steps (validate, route)
 * batch after batch would hold the process (its HTTP API, timers, partner calls in flight)
 * until the queue ran dry: 1,000 queued requests froze it for 31 s in bench:workflow.
 */
describe('requester workflow: the worker yields between batches', () => {
  let setup: WorkflowSetup;
  beforeAll(async () => {
    setup = await setUpWorkflow();
  });
  afterAll(async () => setup?.close());

  it('lets a timer set before runPending fire while database-only steps are still queued', async () => {
    for (let i = 0; i < 4; i++) await setup.request(member(i));
    const worker = setup.worker({ concurrency: 1 });
    let fired = false;
    setTimeout(() => (fired = true), 0);
    // Four validates and four routes touch only the database; the timer stops the worker as soon as it can run.
    const ran = await worker.runPending(() => fired);
    expect(fired).toBe(true);
    expect(ran).toBeGreaterThan(0);
    expect(ran).toBeLessThan(8);
  });
});
