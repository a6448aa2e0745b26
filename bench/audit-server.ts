import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { createApp } from '../src/app.ts';
import { startSealerThread } from '../src/audit/sealer-thread.ts';
import { connectDatabase } from '../src/db/connection.ts';
import { createValidator } from '../src/fhir/profiles.ts';
import { createLogger } from '../src/logger.ts';

/*
 * Baton's app for bench:audit, started as a child process on BENCH_DATABASE_URL, with the
 * production request path (bearer verification included) and either the whole audit trail
 * (BENCH_AUDITING=on: events recorded with writes and through the group-commit writer, and a
 * sealer thread chaining and indexing them, as a production server runs one) or none of it
 * (off: AppDeps.auditing false, no sealer). Prints {"port": n} once listening; the FHIR base is
 * http://127.0.0.1:<port>/fhir.
 */

const auditing = process.env.BENCH_AUDITING !== 'off';
const logger = createLogger('warn');
const db = await connectDatabase({ databaseUrl: process.env.BENCH_DATABASE_URL, dataDir: 'memory://' });
const validator = await createValidator([], logger);
const server = serve({ fetch: (request) => app.fetch(request), port: 0, hostname: '127.0.0.1' });
await new Promise((resolve) => server.once('listening', resolve));
const { port } = server.address() as AddressInfo;
const app = createApp({ config: { baseUrl: `http://127.0.0.1:${port}/fhir`, maxBodyBytes: 16 * 1024 * 1024 }, db, logger, validator, ...(auditing ? {} : { auditing: false as const }) });
// Checkpoints as often as Baton's defaults make them (src/config.ts), signed with a key kept in the database.
// On its own thread, as src/server.ts runs it on PostgreSQL.
if (auditing) startSealerThread({ databaseUrl: process.env.BENCH_DATABASE_URL as string, audit: { key: undefined, checkpointEvery: 1000, checkpointSeconds: 60 }, logLevel: 'warn' }, logger);
console.log(JSON.stringify({ port }));
