import { parentPort, workerData } from 'node:worker_threads';
import { connectDatabase } from '../db/connection.ts';
import { createLogger } from '../logger.ts';
import { startAuditSealer } from './sealer.ts';
import type { SealerThreadData } from './sealer-thread.ts';

/** The sealer thread's entry (sealer-thread.ts): seals until the serving thread says stop. */
const { databaseUrl, audit, logLevel } = workerData as SealerThreadData;
const db = await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections: 2 });
const sealer = startAuditSealer({ db, audit }, createLogger(logLevel));
parentPort?.once('message', () => {
  void sealer
    .stop()
    .then(() => db.close())
    .finally(() => process.exit(0));
});
