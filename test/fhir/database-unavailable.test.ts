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
  beforeAll(async () => {
    baton = await startBaton();
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

    for (let i = 0; i < 3; i++) expect((await baton.request(`/fhir/Patient/${id}`)).status).toBe(200);
  });

  it('rolls back a write whose connection was lost, and answers 503', async () => {
    const lost = await withBackendTerminated(() => baton.request('/fhir/Patient/lost-write', { method: 'PUT', json: { resourceType: 'Patient', id: 'lost-write' } }));
    expect(lost.status).toBe(503);
    expect((await baton.request('/fhir/Patient/lost-write')).status).toBe(404);
    expect((await baton.request('/fhir/Patient/lost-write', { method: 'PUT', json: { resourceType: 'Patient', id: 'lost-write' } })).status).toBe(201);
  });
});
