import { randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createClient } from '../src/auth/clients.ts';
import { createGrant } from '../src/auth/grants.ts';
import { connectDatabase } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { freshDatabase, tokenMinter } from '../test/support/baton.ts';
import { httpLoad, type LoadFigures, pick, round } from './load.ts';
import { seedPopulation } from './population.ts';
import { type ChildServer, startPortPrintingChild } from './servers.ts';

/*
 * npm run bench:auth [-- --patients N --duration S --warmup S --connections N --rounds N]
 *
 * Issue 3's figures, in one run on PostgreSQL (DATABASE_URL, default the local `test` server;
 * a fresh database of its own, dropped at the end):
 * - token issuance: POST /auth/token with a fresh ES384 client assertion each time;
 * - the cost of token verification: reads by id with a bearer token, against the same app with
 *   verification replaced by a fixed caller (bench/auth-server.ts, both child processes), in
 *   alternating rounds; the issue's target is authenticated/unverified >= 0.85;
 * - for information, the same reads by a partner payer, whose every read also checks its grants.
 * Prints one JSON object on stdout; progress goes to stderr. Never fails on a figure.
 */

const { values: flags } = parseArgs({
  options: {
    patients: { type: 'string', default: '2000' },
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '2' },
  },
});
const settings = {
  patients: Number(flags.patients),
  seconds: Number(flags.duration),
  warmupSeconds: Number(flags.warmup),
  connections: Number(flags.connections),
  rounds: Number(flags.rounds),
};
for (const [name, value] of Object.entries(settings)) if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);

const log = (message: string): void => void process.stderr.write(`[bench:auth] ${message}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

process.env.DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/test';
const { databaseUrl, drop } = await freshDatabase();
const db = await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections: 4 });
const running: ChildServer[] = [];
try {
  await migrateDatabase(db);
  log(`seeding ${settings.patients} Patients`);
  await seedPopulation(db, { patients: settings.patients, observations: 0 }, log);
  const patientIds = (await db.execute<{ id: string }>(sql`SELECT id FROM resources WHERE resource_type = 'Patient'`)).map((r) => r.id);

  const env = { BENCH_DATABASE_URL: databaseUrl as string };
  const verified = await startPortPrintingChild('bench/auth-server.ts', { ...env, BENCH_VERIFY: 'on' });
  running.push(verified);
  const unverified = await startPortPrintingChild('bench/auth-server.ts', { ...env, BENCH_VERIFY: 'off' });
  running.push(unverified);
  const fhirBase = `${verified.url}/fhir`;

  // Clients: an internal one and a partner with grants for every member; tokens as /auth/token issues them.
  const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES384' }] };
  const client = (name: string, kind: 'partner' | 'internal') =>
    createClient(db, { name, kind, organizationIdentifiers: [{ system: 'http://www.naic.org', value: '00000' }], jwks, jwksUri: undefined, scopes: ['system/*.rs'] });
  const internal = await client('bench internal', 'internal');
  const partner = await client('bench partner', 'partner');
  for (const id of patientIds) await createGrant(db, { clientId: partner.client_id, patientId: id });
  const mint = tokenMinter(db, fhirBase);
  const internalToken = await mint({ clientId: internal.client_id, kind: 'internal', scopes: ['system/*.rs'] });
  const partnerToken = await mint({ clientId: partner.client_id, kind: 'partner', scopes: ['system/*.rs'] });

  const readLoad = (server: ChildServer, token: string | undefined) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    return async (seconds: number) => httpLoad({ url: server.url, connections: settings.connections, seconds, next: () => ({ path: `/fhir/Patient/${pick(patientIds)}`, headers }) });
  };
  const runs: Record<'verified' | 'unverified' | 'partner', LoadFigures[]> = { verified: [], unverified: [], partner: [] };
  const loads = { verified: readLoad(verified, internalToken), unverified: readLoad(unverified, undefined), partner: readLoad(verified, partnerToken) };
  for (const [name, load] of Object.entries(loads)) {
    log(`warming up: ${name}`);
    await load(settings.warmupSeconds);
  }
  for (let round = 1; round <= settings.rounds; round++) {
    for (const name of ['unverified', 'verified', 'partner'] as const) {
      const figures = await loads[name](settings.seconds);
      log(`round ${round} ${name}: ${figures.rps}/s, p99 ${figures.p99_ms} ms, failed ${figures.failed}`);
      runs[name].push(figures);
    }
  }

  log('token issuance');
  const assertions: string[] = [];
  const tokenUrl = `${verified.url}/auth/token`;
  const toSign = 1500 * (settings.seconds + settings.warmupSeconds);
  for (let i = 0; i < toSign; i++) {
    const now = Math.floor(Date.now() / 1000);
    assertions.push(
      await new SignJWT({})
        .setProtectedHeader({ alg: 'ES384', kid: 'bench', typ: 'JWT' })
        .setIssuer(internal.client_id)
        .setSubject(internal.client_id)
        .setAudience(tokenUrl)
        .setExpirationTime(now + 280)
        .setJti(randomUUID())
        .sign(privateKey),
    );
  }
  let next = 0;
  const tokenLoad = (seconds: number) =>
    httpLoad({
      url: verified.url,
      connections: settings.connections,
      seconds,
      next: () => ({
        method: 'POST',
        path: '/auth/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          scope: 'system/*.rs',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: assertions[next++ % assertions.length],
        }).toString(),
      }),
    });
  await tokenLoad(settings.warmupSeconds);
  const issuance = await tokenLoad(settings.seconds);
  log(`token issuance: ${issuance.rps}/s, p99 ${issuance.p99_ms} ms, failed ${issuance.failed} (of ${assertions.length} assertions, ${next} used)`);

  const best = (figures: LoadFigures[]) => Math.max(...figures.map((f) => f.rps));
  const median = (figures: LoadFigures[]) => [...figures].sort((a, b) => a.rps - b.rps)[Math.floor(figures.length / 2)].rps;
  const ratio = (a: number, b: number) => round(a / b, 3);
  const perRound = runs.verified.map((v, i) => ratio(v.rps, runs.unverified[i].rps));
  console.log(
    JSON.stringify(
      {
        benchmark: 'bench:auth',
        config: { ...settings, node: process.version, cpus: cpus().length, load_avg_1m: round(loadavg()[0]) },
        token_issuance: { per_s: issuance.rps, p50_ms: issuance.p50_ms, p99_ms: issuance.p99_ms, failed: issuance.failed },
        read_unverified: runs.unverified,
        read_verified: runs.verified,
        read_partner_with_grants: runs.partner,
        verified_over_unverified: { per_round: perRound, best_over_best: ratio(best(runs.verified), best(runs.unverified)), median_over_median: ratio(median(runs.verified), median(runs.unverified)), target: 0.85 },
        partner_over_unverified: ratio(median(runs.partner), median(runs.unverified)),
      },
      null,
      2,
    ),
  );
} finally {
  for (const server of running.reverse()) await server.stop();
  await db.close();
  await drop();
}
