import { pino } from 'pino';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/**
 * PostgreSQL closing a connection under a request (a restart, a failover, an operator's
 * pg_terminate_backend) is the client's 503 to retry, not a 500, and the server goes on serving
 * on new connections. PGlite runs in process and has no connection to lose.
 */
describe.skipIf(!process.env.DATABASE_URL)('database connection lost during a request (PostgreSQL)', () => {
  let baton: TestBaton;
  let admin: postgres.Sql;
  const logged: Record<string, any>[] = [];
  beforeAll(async () => {
    baton = await startBaton({ logger: pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) }) });
    admin = postgres(baton.databaseUrl as string, { max: 2, onnotice: () => undefined });
  });
  afterAll(async () => {
    await admin?.end();
    await baton?.close();
  });

  /** Runs request while the resources table is locked, terminates the backend that waits for the lock, then lets go. */
  async function withBackendTerminated(request: () => Promise<Response>): Promise<Response> {
    return admin.begin(async (tx) => {
      await tx`LOCK TABLE resources IN ACCESS EXCLUSIVE MODE`;
      const answer = request();
      for (let tries = 0; ; tries++) {
        const [waiting] = await admin`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`;
        if (waiting) {
          await admin`SELECT pg_terminate_backend(${waiting.pid})`;
          break;
        }
        if (tries > 200) throw new Error('no request waited for the lock');
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      return answer;
    });
  }

  it('answers 503 with Retry-After and an OperationOutcome, then serves the next requests', async () => {
    const created = await baton.request('/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient', gender: 'female' } });
    expect(created.status).toBe(201);
    const id = (await body(created)).id as string;

    const lost = await withBackendTerminated(() => baton.request(`/fhir/Patient/${id}`));
    expect(lost.status).toBe(503);
    expect(lost.headers.get('retry-after')).toBe('1');
    const outcome = await body(lost);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].code).toBe('transient');
    expect(JSON.stringify(outcome)).not.toMatch(/at .*\.(ts|js):\d+|terminating connection/);
    // The operator's line: the request it answered, the driver's code, no message text.
    const warning = logged.find((line) => line.msg === 'database unavailable');
    expect(warning?.requestId).toBe(lost.headers.get('x-request-id'));
    // The server's FATAL message or, when the socket's reset comes first, the socket's code.
    expect(['57P01', 'ECONNRESET', 'CONNECTION_CLOSED']).toContain(warning?.err.code);
    expect(JSON.stringify(logged)).not.toMatch(/terminating connection|unhandled error/);

    for (let i = 0; i < 3; i++) expect((await baton.request(`/fhir/Patient/${id}`)).status).toBe(200);
  });

  it('rolls back a write whose connection was lost, and answers 503', async () => {
    const lost = await withBackendTerminated(() => baton.request('/fhir/Patient/lost-write', { method: 'PUT', json: { resourceType: 'Patient', id: 'lost-write' } }));
    expect(lost.status).toBe(503);
    expect((await baton.request('/fhir/Patient/lost-write')).status).toBe(404);
    expect((await baton.request('/fhir/Patient/lost-write', { method: 'PUT', json: { resourceType: 'Patient', id: 'lost-write' } })).status).toBe(201);
  });
});
