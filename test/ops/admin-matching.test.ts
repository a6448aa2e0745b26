import type { AuditEvent, OperationOutcome } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import policyV1 from '../../config/matching/policy-v1.json' with { type: 'json' };
import type { MatchDecision } from '../../src/matching/decide.ts';
import { parsePolicy } from '../../src/matching/policy.ts';
import { listPolicies, loadPolicyFiles, policyInForce } from '../../src/matching/policy-store.ts';
import { ADMIN_TOKEN, type AuthBaton, startAuthBaton } from '../auth/harness.ts';
import { member, queryOf, resolve } from '../matching/members.ts';

/**
 * Issue 5's control plane through HTTP, as an operator uses it: the matching policy's versions
 * (read, and a new one put in force at run time), and "why was this request matched to this
 * member?" for a stored decision. Every call is behind the admin credential and audited.
 */

let auth: AuthBaton;
let closed: AuthBaton;
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
type Mutable = Record<string, any>;

beforeAll(async () => {
  auth = await startAuthBaton();
  closed = await startAuthBaton({ adminApiClosed: true });
  await loadPolicyFiles(auth.baton.db);
});
afterAll(async () => {
  await auth.close();
  await closed.close();
});

async function json<T = Mutable>(response: Response): Promise<T> {
  return (await response.json()) as T;
}

async function latest(): Promise<number> {
  return (await listPolicies(auth.baton.db))[0].version;
}

/** Policy v1 as the next version, with one threshold changed. */
async function nextPolicy(autoThreshold = 30): Promise<Mutable> {
  const policy = structuredClone(policyV1) as Mutable;
  policy.version = (await latest()) + 1;
  policy.useCases['coverage-check'].autoThreshold = autoThreshold;
  return policy;
}

function putPolicy(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return auth.request('/admin/matching/policy', { method: 'PUT', headers: { ...admin, ...headers }, json: body });
}

async function auditEvents(): Promise<AuditEvent[]> {
  const rows = await auth.baton.db.execute<{ content: string }>(sql`SELECT content FROM audit_events ORDER BY seq`);
  return rows.map((row) => JSON.parse(row.content) as AuditEvent);
}

const subtypes = (event: AuditEvent) => (event.subtype ?? []).map((s) => s.code);
const requestOf = (event: AuditEvent) => {
  const query = (event.entity ?? []).find((entity) => entity.query)?.query;
  return query ? Buffer.from(query, 'base64').toString() : undefined;
};

const ROUTES: [string, string][] = [
  ['GET', '/admin/matching/policies'],
  ['GET', '/admin/matching/policies/1'],
  ['GET', '/admin/matching/policy'],
  ['PUT', '/admin/matching/policy'],
  ['GET', '/admin/match-decisions'],
  ['GET', '/admin/match-decisions/some-id'],
];

describe('admin credential', () => {
  it.each(ROUTES)('answers 401 to %s %s without a token', async (method, path) => {
    const response = await auth.request(path, { method, ...(method === 'PUT' ? { json: await nextPolicy() } : {}) });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    expect((await json<OperationOutcome>(response)).resourceType).toBe('OperationOutcome');
  });

  it.each(ROUTES)('answers 403 to %s %s with a wrong token', async (method, path) => {
    const response = await auth.request(path, { method, headers: { authorization: 'Bearer not-the-admin-token' }, ...(method === 'PUT' ? { json: await nextPolicy() } : {}) });
    expect(response.status).toBe(403);
  });

  it.each(ROUTES)('is closed (404) to %s %s when BATON_ADMIN_TOKEN is not configured', async (method, path) => {
    expect((await closed.request(path, { method, headers: admin })).status).toBe(404);
  });

  it('changes nothing when the token is missing or wrong', async () => {
    const before = await latest();
    await auth.request('/admin/matching/policy', { method: 'PUT', json: await nextPolicy() });
    await auth.request('/admin/matching/policy', { method: 'PUT', headers: { authorization: 'Bearer wrong' }, json: await nextPolicy() });
    expect(await latest()).toBe(before);
  });
});

describe('matching policy', () => {
  it('lists the stored versions, newest first, and serves each body', async () => {
    const listed = await json<Mutable[]>(await auth.request('/admin/matching/policies', { headers: admin }));
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.map((p) => p.version)).toEqual([...listed.map((p) => p.version)].sort((a, b) => b - a));
    expect(listed.at(-1)).toMatchObject({ id: 'baton-member-match', version: 1, createdBy: 'config', reason: 'config/matching/policy-v1.json' });
    expect(Date.parse(listed[0].created)).not.toBeNaN();

    const v1 = await auth.request('/admin/matching/policies/1', { headers: admin });
    expect(v1.status).toBe(200);
    expect(await v1.json()).toEqual(parsePolicy(structuredClone(policyV1)));
  });

  it.each([
    ['999', 404],
    ['0', 400],
    ['latest', 400],
  ])('answers version %s with %i', async (version, status) => {
    const response = await auth.request(`/admin/matching/policies/${version}`, { headers: admin });
    expect(response.status).toBe(status);
    expect((await json<OperationOutcome>(response)).resourceType).toBe('OperationOutcome');
  });

  it('puts a new version in force at run time, with who and why, and audits the change', async () => {
    const body = await nextPolicy(31);
    const response = await putPolicy(body, { 'X-Change-Reason': 'coverage-check threshold after the EM run' });
    expect(response.status).toBe(201);
    expect(response.headers.get('location')).toBe(`http://baton.test/admin/matching/policies/${body.version}`);
    expect(await response.json()).toMatchObject({ id: 'baton-member-match', version: body.version, createdBy: 'operator', reason: 'coverage-check threshold after the EM run' });
    const event = (await auditEvents()).at(-1) as AuditEvent;
    expect(subtypes(event)).toContain('urn:baton:admin:matching-policy');
    expect(event).toMatchObject({ action: 'U', outcome: '0' });
    expect(requestOf(event)).toBe('PUT /admin/matching/policy');
    expect(event.agent?.some((agent) => agent.who?.identifier?.value === 'operator')).toBe(true);

    const inForce = await json(await auth.request('/admin/matching/policy', { headers: admin }));
    expect(inForce).toEqual(parsePolicy(structuredClone(body)));
    const decidingPolicy = await policyInForce(auth.baton.db);
    expect(decidingPolicy.version).toBe(body.version);
    expect(decidingPolicy.useCases['coverage-check'].autoThreshold).toBe(31);
    expect(await json(await auth.request(response.headers.get('location') as string, { headers: admin }))).toEqual(inForce);
  });

  it('answers 422 listing every problem of an invalid policy, and keeps the version in force', async () => {
    const before = await latest();
    const body = await nextPolicy();
    body.useCases['coverage-check'].reviewThreshold = 99;
    body.fields.gender.levels.exact.m = 0.5;
    delete body.vetoes.twin;
    const response = await putPolicy(body);
    expect(response.status).toBe(422);
    const outcome = await json<OperationOutcome>(response);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue.map((issue) => issue.diagnostics)).toEqual(
      expect.arrayContaining([
        'useCases.coverage-check.reviewThreshold: must be below autoThreshold',
        expect.stringMatching(/^fields\.gender\.levels: m must sum to 1/),
        'vetoes.twin: must be "exclude" or "review"',
      ]),
    );
    expect(outcome.issue.find((issue) => issue.diagnostics?.startsWith('vetoes.twin'))?.expression).toEqual(['vetoes.twin']);
    expect(await latest()).toBe(before);
    expect((await policyInForce(auth.baton.db)).version).toBe(before);
    const event = (await auditEvents()).at(-1) as AuditEvent;
    expect(subtypes(event)).toContain('urn:baton:admin:matching-policy');
    expect(event.outcome).toBe('4');
  });

  it.each<[string, (next: number) => Mutable]>([
    ['the version in force', (next) => ({ ...structuredClone(policyV1), version: next - 1 })],
    ['a version that skips one', (next) => ({ ...structuredClone(policyV1), version: next + 1 })],
    ['a version beyond any stored number', () => ({ ...structuredClone(policyV1), version: 2 ** 31 })],
    ['another policy id', (next) => ({ ...structuredClone(policyV1), version: next, id: 'other-policy' })],
  ])('answers 409 to %s', async (_, policyFor) => {
    const before = await latest();
    const response = await putPolicy(policyFor(before + 1));
    expect(response.status).toBe(409);
    const outcome = await json<OperationOutcome>(response);
    expect(outcome.issue[0].code).toBe('conflict');
    expect(await latest()).toBe(before);
  });

  it('tells the version to send when the version is wrong', async () => {
    const before = await latest();
    const outcome = await json<OperationOutcome>(await putPolicy({ ...structuredClone(policyV1), version: before }));
    expect(outcome.issue[0].diagnostics).toContain(`send version ${before + 1}`);
  });

  it.each([
    ['a body that is not JSON', { 'content-type': 'application/json' }, '{"id": '],
    ['an empty reason', { 'X-Change-Reason': ' ' }, undefined],
    ['a reason over 1000 characters', { 'X-Change-Reason': 'x'.repeat(1001) }, undefined],
  ])('answers 400 to %s', async (_, headers, raw) => {
    const before = await latest();
    const response =
      raw === undefined
        ? await putPolicy(await nextPolicy(), headers)
        : await auth.request('/admin/matching/policy', { method: 'PUT', headers: { ...admin, ...headers }, body: raw });
    expect(response.status).toBe(400);
    expect((await json<OperationOutcome>(response)).resourceType).toBe('OperationOutcome');
    expect(await latest()).toBe(before);
  });

  it('answers 413 to a body far larger than a policy', async () => {
    const body = { ...(await nextPolicy()), description: 'x'.repeat(300 * 1024) };
    expect((await putPolicy(body)).status).toBe(413);
  });
});

describe('match decisions', () => {
  // Margaret's former married name, with the period she held it: the decision remembers which entry agreed.
  const margaret = member('margaret', {
    names: [
      { family: 'Okafor', given: ['Margaret', 'Ann'] },
      { family: 'Brown', given: ['Margaret'], historical: true, period: { start: '1999-05-01', end: '2004-06-30' }, source: 'Patient/margaret/_history/1' },
    ],
  });
  const martha = member('martha', { names: [{ family: 'Okafor', given: ['Martha'] }], memberIds: [{ value: 'W123456789-02' }] });
  const query = queryOf(margaret, { names: [{ family: 'Brown', given: ['Peggy'] }], addresses: [{ line: ['18 Harbor Rd'], city: 'Peoria', state: 'IL', postalCode: '61602' }] });
  let decision: MatchDecision;

  async function insertDecision(row: { id: string; client: string; outcome: string; patient?: string; created: string; decision: MatchDecision; review?: { by: string; reason: string } }) {
    await auth.baton.db.execute(sql`INSERT INTO match_decisions (id, created, client_id, request_id, use_case, policy_id, policy_version, tier, outcome, patient_id, score, decision, reviewed_by, review_reason, reviewed)
      VALUES (${row.id}, ${row.created}, ${row.client}, 'req-1', ${row.decision.useCase}, ${row.decision.policy.id}, ${row.decision.policy.version}, ${row.decision.tier}, ${row.outcome},
              ${row.patient ?? null}, ${row.decision.score ?? null}, ${JSON.stringify(row.decision)}, ${row.review?.by ?? null}, ${row.review?.reason ?? null}, ${row.review ? row.created : null})`);
  }

  beforeAll(async () => {
    decision = resolve(query, [margaret, martha], 'coverage-check');
    await insertDecision({ id: 'decision-matched', client: 'partner-a', outcome: 'matched', patient: 'margaret', created: '2026-03-01T10:00:00Z', decision });
    const ambiguous = resolve(queryOf(margaret, { memberIds: [{ value: 'ZX-1' }], subscriberIds: [], addresses: [], phones: [] }), [margaret], 'clinical-history-release');
    await insertDecision({ id: 'decision-reviewed', client: 'partner-b', outcome: 'approved', patient: 'margaret', created: '2026-03-02T10:00:00Z', decision: ambiguous, review: { by: 'operator', reason: 'confirmed with the member' } });
    await insertDecision({ id: 'decision-none', client: 'partner-a', outcome: 'no-match', created: '2026-03-03T10:00:00Z', decision: resolve(query, [], 'coverage-check') });
  });

  it('explains a decision: outcome, tier, policy, thresholds, every candidate field by field, and the reasons', async () => {
    expect(decision.tier).toBe('probabilistic');
    const response = await auth.request('/admin/match-decisions/decision-matched', { headers: admin });
    expect(response.status).toBe(200);
    const explanation = await json(response);
    expect(explanation).toMatchObject({
      id: 'decision-matched',
      client: 'partner-a',
      requestId: 'req-1',
      useCase: 'coverage-check',
      outcome: 'matched',
      tier: 'probabilistic',
      patient: 'margaret',
      matched: 'margaret',
      policy: decision.policy,
      thresholds: decision.thresholds,
    });
    expect(explanation.score).toBeCloseTo(decision.score as number, 6);
    expect(explanation.reasons.map((r: Mutable) => r.code)).toEqual(decision.reasons.map((r) => r.code));
    expect(explanation.reasons.find((r: Mutable) => r.code === 'above-auto-threshold')).toMatchObject({ candidate: 'margaret' });

    const candidates = explanation.candidates as Mutable[];
    expect(candidates.map((c) => [c.patient, c.status])).toEqual(decision.candidates.map((c) => [c.candidateId, c.status]));
    const chosen = candidates.find((c) => c.patient === 'margaret') as Mutable;
    const family = chosen.fields.find((f: Mutable) => f.field === 'family');
    expect(family).toMatchObject({ level: 'exact', entry: { index: 1, historical: true, source: 'Patient/margaret/_history/1' } });
    expect(family.weight).toBeGreaterThan(0);
    expect(chosen.fields.map((f: Mutable) => f.field)).toEqual(decision.candidates[0].fields.map((f) => f.field));
    const twin = candidates.find((c) => c.patient === 'martha') as Mutable;
    expect(twin.vetoes.length).toBeGreaterThan(0);
  });

  it('shows no name, birth date, address, phone, member id or name period of the person', async () => {
    const text = await (await auth.request('/admin/match-decisions/decision-matched', { headers: admin })).text();
    for (const phi of ['Okafor', 'Brown', 'Margaret', 'Peggy', '1979', '1999-05-01', '2004-06-30', 'Harbor', 'Evergreen', '62704', '61602', '555', 'W123456789']) expect(text).not.toContain(phi);
    // The stored decision does hold the period: the explanation leaves it out on purpose.
    expect(JSON.stringify(decision)).toContain('1999-05-01');
  });

  it('shows who reviewed a decision, why and when', async () => {
    const explanation = await json(await auth.request('/admin/match-decisions/decision-reviewed', { headers: admin }));
    expect(explanation).toMatchObject({ outcome: 'approved', review: { by: 'operator', reason: 'confirmed with the member', at: '2026-03-02T10:00:00.000Z' } });
    expect((await json(await auth.request('/admin/match-decisions/decision-matched', { headers: admin }))).review).toBeUndefined();
  });

  it('answers 404 for an unknown decision', async () => {
    const response = await auth.request('/admin/match-decisions/no-such-decision', { headers: admin });
    expect(response.status).toBe(404);
    expect((await json<OperationOutcome>(response)).issue[0].code).toBe('not-found');
  });

  it.each<[string, string[]]>([
    ['', ['decision-none', 'decision-reviewed', 'decision-matched']],
    ['?client=partner-a', ['decision-none', 'decision-matched']],
    ['?patient=margaret', ['decision-reviewed', 'decision-matched']],
    ['?outcome=matched', ['decision-matched']],
    ['?client=partner-a&patient=margaret', ['decision-matched']],
    ['?client=partner-c', []],
    ['?_count=2', ['decision-none', 'decision-reviewed']],
  ])('lists decisions%s newest first', async (search, ids) => {
    const response = await auth.request(`/admin/match-decisions${search}`, { headers: admin });
    expect(response.status).toBe(200);
    const listed = await json<Mutable[]>(response);
    expect(listed.map((d) => d.id)).toEqual(ids);
    for (const summary of listed) expect(summary.candidates).toBeUndefined();
  });

  it.each(['?_count=0', '?_count=501', '?_count=ten', '?client='])('answers 400 to %s', async (search) => {
    expect((await auth.request(`/admin/match-decisions${search}`, { headers: admin })).status).toBe(400);
  });

  it('audits reading a decision as a match-decisions read', async () => {
    await auth.request('/admin/match-decisions/decision-matched', { headers: admin });
    const event = (await auditEvents()).at(-1) as AuditEvent;
    expect(subtypes(event)).toContain('urn:baton:admin:match-decisions');
    expect(event).toMatchObject({ action: 'R', outcome: '0' });
    expect(requestOf(event)).toBe('GET /admin/match-decisions/decision-matched');
  });
});

describe('audit naming', () => {
  it.each([
    ['/admin/clients', 'urn:baton:admin:clients'],
    ['/admin/matching/policies', 'urn:baton:admin:matching-policy'],
    ['/admin/match-decisions', 'urn:baton:admin:match-decisions'],
    ['/admin/reviews/some-task', 'urn:baton:admin:reviews'],
    ['/admin/constructor', 'urn:baton:admin'],
  ])('names a call to %s %s, attempts without the token included', async (path, operation) => {
    await auth.request(path);
    const event = (await auditEvents()).at(-1) as AuditEvent;
    expect(subtypes(event)).toContain(operation);
    expect(event.outcome).toBe('4');
    expect(event.agent?.some((agent) => agent.who?.identifier?.value === 'operator')).toBe(false);
  });
});
