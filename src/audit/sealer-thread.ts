import { Worker } from 'node:worker_threads';
import type { AuditConfig } from '../config.ts';
import type { Logger } from '../logger.ts';

/**
 * The audit sealer (sealer.ts) on a thread of its own, for a server on PostgreSQL: hashing,
 * index keys and the sealer's SQL took about 0.3 ms of the serving thread per audited request,
 * and a read's throughput was 1,800/s with it there against 4,500/s without. On its own thread
 * with its own connections it uses the core the event loop does not. PGlite lives in the
 * serving thread's memory, so there the sealer stays beside it.
 */
export interface SealerThreadData {
  databaseUrl: string;
  audit: AuditConfig;
  logLevel: string;
}

/**
 * The thread's young generation: a pass's 1,000 parsed events and their keys outgrow V8's
 * default, and garbage collection took a quarter of the thread's time.
 */
const YOUNG_GENERATION_MB = 64;

/** After the thread fails, the wait before the next one starts. */
const RESTART_MS = 1000;

export function startSealerThread(data: SealerThreadData, logger: Logger): { stop(): Promise<void> } {
  let worker: Worker | undefined;
  let ended: Promise<void> = Promise.resolve();
  let stopping = false;
  let restart: NodeJS.Timeout | undefined;

  const start = (): void => {
    const thread = sealerWorker(data);
    worker = thread;
    // A failure's message can quote a driver's text: the class only, as the sealer logs its own.
    thread.on('error', (error) => logger.error({ error: error?.constructor?.name ?? typeof error }, 'audit sealer thread failed'));
    ended = new Promise((resolve) => {
      thread.once('exit', (code) => {
        resolve();
        if (stopping) return;
        logger.error({ code }, 'audit sealer thread ended; starting another');
        restart = setTimeout(start, RESTART_MS);
      });
    });
  };
  start();

  return {
    async stop() {
      stopping = true;
      clearTimeout(restart);
      worker?.postMessage('stop');
      await ended;
    },
  };
}

/**
 * The thread, running sealer-worker with the same extension as this module: as TypeScript under
 * tsx (whose loader a thread does not inherit, so it registers it first), or as the built .js.
 */
function sealerWorker(data: SealerThreadData): Worker {
  const extension = new URL(import.meta.url).pathname.endsWith('.ts') ? 'ts' : 'js';
  const entry = new URL(`./sealer-worker.${extension}`, import.meta.url);
  const options = { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } };
  if (extension === 'js') return new Worker(entry, options);
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}
