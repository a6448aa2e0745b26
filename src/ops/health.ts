import { sql } from 'drizzle-orm';
import { Hono } from 'hono';
import { sealingLag } from '../audit/sealer.ts';
import type { Database } from '../db/connection.ts';
import { migrationStatus } from '../db/migrate.ts';
import type { Metrics } from './metrics.ts';

type Status = 'pass' | 'warn' | 'fail';

interface Check {
  componentType: string;
  status: Status;
  observedValue?: number | string;
  observedUnit?: string;
  output?: string;
  time: string;
}

/**
 * /livez: the process answers (no dependencies). /readyz: the database answers, every migration
 * is applied, and the audit trail is sealed within a minute (application/health+json,
 * draft-inadreyes-healthcheck). /metrics: Prometheus.
 */
export function healthRoutes(db: Database, metrics: Metrics): Hono {
  const app = new Hono();
  app.get('/livez', (c) => c.body(JSON.stringify({ status: 'pass' }), 200, { 'Content-Type': 'application/health+json' }));
  app.get('/readyz', async (c) => {
    const checks: Record<string, Check[]> = {
      'database:responseTime': [await databaseCheck(db)],
      'database:migrations': [await migrationsCheck(db)],
      'audit:sealingLag': [await sealingCheck(db)],
    };
    const status = worst(Object.values(checks).flat().map((check) => check.status));
    const body = { status, checks };
    return c.body(JSON.stringify(body), status === 'fail' ? 503 : 200, { 'Content-Type': 'application/health+json', 'Cache-Control': 'no-store' });
  });
  app.get('/metrics', async (c) => c.body(await metrics.registry.metrics(), 200, { 'Content-Type': metrics.registry.contentType }));
  return app;
}

async function databaseCheck(db: Database): Promise<Check> {
  const start = performance.now();
  try {
    await db.execute(sql`SELECT 1`);
    const ms = performance.now() - start;
    return { componentType: 'datastore', status: ms > 1000 ? 'warn' : 'pass', observedValue: Math.round(ms * 10) / 10, observedUnit: 'ms', time: new Date().toISOString() };
  } catch (error) {
    return { componentType: 'datastore', status: 'fail', output: (error as Error).name, time: new Date().toISOString() };
  }
}

async function migrationsCheck(db: Database): Promise<Check> {
  try {
    const { expected, applied } = await migrationStatus(db);
    const status: Status = applied >= expected ? 'pass' : 'fail';
    return { componentType: 'datastore', status, observedValue: `${applied}/${expected}`, time: new Date().toISOString() };
  } catch (error) {
    return { componentType: 'datastore', status: 'fail', output: (error as Error).name, time: new Date().toISOString() };
  }
}

/**
 * Sealing behind by more than this many seconds warns: events wait unchained and unsearchable
 * (sustained audited traffic faster than the sealers seal, or no sealer running).
 */
const SEALING_LAG_WARN_SECONDS = 60;

async function sealingCheck(db: Database): Promise<Check> {
  try {
    const lag = await sealingLag(db);
    const seconds = Math.round(lag.seconds * 10) / 10;
    const behind = seconds > SEALING_LAG_WARN_SECONDS;
    return {
      componentType: 'component',
      status: behind ? 'warn' : 'pass',
      observedValue: seconds,
      observedUnit: 's',
      ...(behind ? { output: `${lag.events >= 10_000 ? 'at least 10000' : lag.events} audit events wait to be sealed; the oldest was recorded ${seconds} s ago` } : {}),
      time: new Date().toISOString(),
    };
  } catch (error) {
    return { componentType: 'component', status: 'fail', output: (error as Error).name, time: new Date().toISOString() };
  }
}

function worst(statuses: Status[]): Status {
  return statuses.includes('fail') ? 'fail' : statuses.includes('warn') ? 'warn' : 'pass';
}
