import type { AuditEvent, Bundle, Observation, Provenance, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { member, OKAFOR, setUpWorkflow, stages, type WorkflowSetup } from './workflow-support.ts';

describe('requester workflow: a data-request Task through to the imported data', () => {
  let setup: WorkflowSetup;
  beforeAll(async () => {
    setup = await setUpWorkflow();
  });
  afterAll(async () => setup?.close());

  it('accepts a data-request Task as requested/created, owned by this payer', async () => {
    const task = await setup.request(member(7));
    expect(task.status).toBe('requested');
    expect(task.businessStatus?.coding?.[0]?.code).toBe('created');
    expect(task.owner?.reference).toBe('Organization/baton-payer');
  });

  it('runs a single-member request to fulfilled: match at the partner, $everything, import with Provenance', async () => {
    const task = await setup.request();
    const done = await setup.runUntil(task.id!, ['fulfilled', 'failed', 'dead-lettered']);
    expect(done.status).toBe('completed');
    expect(done.businessStatus?.coding?.[0]?.code).toBe('fulfilled');
    const output = Object.fromEntries((done.output ?? []).map((o) => [o.type.text, o.valueInteger ?? o.valueReference?.reference ?? o.valueString ?? o.valueIdentifier?.value]));
    expect(output['partner-endpoint']).toBe('Endpoint/prior-payer-fhir');
    expect(output['routing-version']).toBeGreaterThan(0);
    expect(output['partner-member-identifier']).toBe(OKAFOR.card);
    expect(output.imported).toBeGreaterThan(0);
    expect(output.quarantined).toBe(0);

    const history = (await (await setup.baton.request(`/fhir/Task/${task.id}/_history`)).json()) as Bundle<Task>;
    expect(stages(history)).toEqual(['created', 'validated', 'routed', 'matched', 'acknowledged', 'fulfilled']);

    // The imported Observations are the member's here, and the Provenance names the partner as transmitter.
    const observations = (await (await setup.baton.request(`/fhir/Observation?subject=${done.for?.reference}`)).json()) as Bundle<Observation>;
    expect(observations.entry?.length).toBe(output.imported as number - 1);
    for (const entry of observations.entry ?? []) expect(entry.resource?.meta?.source).toMatch(new RegExp(`^${setup.partner.baseUrl}/Observation/`));
    const provenance = (await (await setup.baton.request(`/fhir/${output.provenance}`)).json()) as Provenance;
    expect(provenance.agent[0].who?.reference).toBe('Organization/prior-payer');
    expect(provenance.agent[0].type?.coding?.map((c) => c.code)).toContain('transmitter');
    expect(provenance.target.length).toBe((output.imported as number) + (output.unchanged as number));

    // Every call carried an Idempotency-Key derived from the Task and step.
    const calls = setup.partner.calls.filter((c) => c.route !== 'token');
    expect(calls.every((c) => c.idempotencyKey?.startsWith('baton-'))).toBe(true);
  });

  it('imports the same data again without duplicates: ids derive from the partner and its ids', async () => {
    const first = await setup.request(member(0));
    const a = await setup.runUntil(first.id!, ['fulfilled']);
    const count = async () => Number((await setup.baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM resources WHERE resource_type = 'Observation' AND NOT deleted`))[0].n);
    const before = await count();
    // Same member again (a second enrollment event for the member of `first`).
    const again = await setup.baton.request('/fhir/Task', {
      method: 'POST',
      json: { ...first, id: undefined, meta: undefined, identifier: [{ system: 'urn:enrollment:request', value: `again-${Date.now()}` }], businessStatus: undefined, owner: undefined },
    });
    expect(again.status).toBe(201);
    const second = (await again.json()) as Task;
    const b = await setup.runUntil(second.id!, ['fulfilled']);
    expect(await count()).toBe(before);
    const imported = (t: Task) => t.output?.find((o) => o.type.text === 'imported')?.valueInteger;
    const unchanged = (t: Task) => t.output?.find((o) => o.type.text === 'unchanged')?.valueInteger;
    expect(imported(a)).toBeGreaterThan(0);
    expect(imported(b)).toBe(0);
    expect(unchanged(b)).toBe(imported(a));
  });

  it('records each transition as an AuditEvent by the workflow', async () => {
    const task = await setup.request(member(1));
    await setup.runUntil(task.id!, ['fulfilled']);
    const rows = await setup.baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM audit_events WHERE content::text LIKE ${`%Task/${task.id}%`} AND content::text LIKE '%baton-workflow%'`);
    expect(Number(rows[0].n)).toBeGreaterThanOrEqual(5);
    // The exchanges with the partner: the member's demographics sent to its $member-match, its $everything asked for.
    const outbound = await setup.baton.db.execute<{ content: string }>(sql`SELECT content FROM audit_events WHERE content LIKE ${`%workflow-${task.id}%`} AND content LIKE ${`%${setup.partner.baseUrl}%`}`);
    const operations = outbound.map((r) => (JSON.parse(r.content) as AuditEvent).subtype?.map((c) => c.code)).flat();
    expect(operations).toContain('http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match');
    expect(operations).toContain('http://hl7.org/fhir/OperationDefinition/Patient-everything');
    for (const row of outbound) {
      const event = JSON.parse(row.content) as AuditEvent;
      expect(event.outcome).toBe('0');
      expect(event.entity?.some((e) => e.what?.reference === (task.for?.reference ?? ''))).toBe(true);
      expect(row.content).not.toContain(member(1).family);
    }
  });

  it('runs a bulk request: kick-off acknowledged, polls, downloads and imports the files', async () => {
    const polls = setup.partner.count('status');
    const task = await setup.request(member(2), {}, 'bulk');
    const done = await setup.runUntil(task.id!, ['fulfilled', 'failed', 'dead-lettered']);
    expect(done.businessStatus?.coding?.[0]?.code).toBe('fulfilled');
    expect(setup.partner.count('status')).toBeGreaterThan(polls);
    expect(done.output?.find((o) => o.type.text === 'request-type')?.valueCode).toBe('bulk');
    const history = (await (await setup.baton.request(`/fhir/Task/${task.id}/_history`)).json()) as Bundle<Task>;
    expect(stages(history)).toEqual(['created', 'validated', 'routed', 'matched', 'acknowledged', 'fulfilled']);
  });

  it('shares the queue between two workers (two processes): every step runs once', async () => {
    const tasks = await Promise.all([3, 4, 5, 6].map((i) => setup.request(member(i))));
    const a = setup.worker({ concurrency: 2 });
    const b = setup.worker({ concurrency: 2 });
    for (let round = 0; round < 200; round += 1) {
      await Promise.all([a.runPending(), b.runPending()]);
      const current = await Promise.all(tasks.map((t) => setup.task(t.id!)));
      if (current.every((t) => t.status === 'completed')) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const task of tasks) {
      const history = (await (await setup.baton.request(`/fhir/Task/${task.id}/_history`)).json()) as Bundle<Task>;
      expect(stages(history)).toEqual(['created', 'validated', 'routed', 'matched', 'acknowledged', 'fulfilled']);
      expect(setup.partner.calls.filter((c) => c.idempotencyKey === `baton-${task.id}-match` && !c.replayed)).toHaveLength(1);
    }
  });
});
