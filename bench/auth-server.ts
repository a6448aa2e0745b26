import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { createApp } from '../src/app.ts';
import { ScopedAccess } from '../src/auth/access-policy.ts';
import { connectDatabase } from '../src/db/connection.ts';
import { createValidator } from '../src/fhir/profiles.ts';
import { createLogger } from '../src/logger.ts';

/*
 * Baton's app for bench:auth, started as a child process on BENCH_DATABASE_URL: with bearer
 * verification (BENCH_VERIFY=on, the production path) or with it replaced by a fixed internal
 * caller holding system/*.* (off), so the two differ only in verifying the token. Prints
 * {"port": n} once listening; the FHIR base is http://127.0.0.1:<port>/fhir.
 */

const logger = createLogger('warn');
const db = await connectDatabase({ databaseUrl: process.env.BENCH_DATABASE_URL, dataDir: 'memory://', maxConnections: 32 });
const validator = await createValidator([], logger);
const server = serve({ fetch: (request) => app.fetch(request), port: 0, hostname: '127.0.0.1' });
await new Promise((resolve) => server.once('listening', resolve));
const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
const fixedCaller = new ScopedAccess({ clientId: 'bench-unverified', kind: 'internal', scopes: ['system/*.*'] }, baseUrl);
const app = createApp({
  config: { baseUrl, maxBodyBytes: 16 * 1024 * 1024 },
  db,
  logger,
  validator,
  ...(process.env.BENCH_VERIFY === 'off' ? { authenticate: async () => fixedCaller } : {}),
});
console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }));
