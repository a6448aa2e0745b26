import type { Consent, Parameters } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';
import { consentFor, fixture, HAVE_FIXTURES, matchRequest, NEW_PAYER_NPI, OUR_NPI, putMember, registerPartner } from './member-match-support.ts';

/**
 * Issue 5, $member-match over HTTP as a new payer calls it: the match and what it leaves behind
 * (member identifier, linked coverage, stored consent, grant), refusals that say which case
 * without saying anything about the member, bad input, brute force, the index following writes,
 * and manual review settled through the admin API.
 */

const ADMIN = 'test-admin-token-member-match';
const OLD_PLAN_NPI = { system: 'http://hl7.org/fhir/sid/us-npi', value: '9876543210' };
let baton: TestBaton;
let partner: Awaited<ReturnType<typeof registerPartner>>;

const match = async (request: unknown, token?: string) =>
  baton.request('/fhir/Patient/$member-match', { method: 'POST', json: request, token: token ?? (await partner.token()) });
const detail = (outcome: Record<string, any>) => outcome.issue?.[0]?.details?.coding?.[0]?.code;
const admin = (path: string, init: RequestInit & { json?: unknown } = {}) => baton.request(path, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, token: null });

const OKAFOR = { family: 'Okafor', given: ['Margaret', 'Ann'], birthDate: '1979-04-09', gender: 'female' as const };

beforeAll(async () => {
  baton = await startBaton({ config: { adminToken: ADMIN, payer: { name: 'Old Health Plan', identifiers: [OUR_NPI, OLD_PLAN_NPI] } } });
  partner = await registerPartner(baton);
  await putMember(baton, { id: 'okafor', ...OKAFOR, memberId: 'W123456789-01', subscriberId: 'W123456789', line: '742 Evergreen Terrace', phone: '2175550143' });
  await putMember(baton, { id: 'twin-a', family: 'Lindqvist', given: ['Emma'], birthDate: '2010-06-15', gender: 'female', memberId: 'L5550001-02', subscriberId: 'L5550001', relationship: 'child', line: '9 Birch Lane' });
  await putMember(baton, { id: 'twin-b', family: 'Lindqvist', given: ['Ella'], birthDate: '2010-06-15', gender: 'female', memberId: 'L5550001-03', subscriberId: 'L5550001', relationship: 'child', line: '9 Birch Lane' });
  await putMember(baton, { id: 'vasquez', family: 'Vasquez', given: ['Teodora'], birthDate: '1992-11-30', gender: 'female', memberId: 'V9990001', subscriberId: 'V9990001', line: '18 Harbor Road' });
  await putMember(baton, { id: 'brandt', family: 'Brandt', given: ['Oskar'], birthDate: '1961-03-02', gender: 'male', memberId: 'B4440001', subscriberId: 'B4440001' });
  await putMember(baton, { id: 'johnny', family: 'Appleseed', given: ['Johnny'], birthDate: '1986-01-01', gender: 'male', memberId: '234567', subscriberId: '234567', line: '123 Main Street', city: 'Pittsburgh', postalCode: '12519', phone: '(443)555-1212' });
});
afterAll(async () => {
  await baton?.close();
});

describe('a unique match with an acceptable consent', () => {
  let value: string;

  it('answers MemberIdentifier (MB and UMB) and MemberId', async () => {
    const response = await match(matchRequest({ ...OKAFOR, given: ['Margaret'], cardId: 'W123456789-01', line: '742 Evergreen Terrace' }, { coverageToLink: true }));
    expect(response.status).toBe(200);
    const parameters = await body<Parameters>(response);
    const identifier = parameters.parameter?.find((p) => p.name === 'MemberIdentifier')?.valueIdentifier;
    expect(identifier?.type?.coding?.map((c) => c.code)).toEqual(['MB', 'UMB']);
    expect(identifier?.type?.coding?.map((c) => c.system)).toEqual(['http://terminology.hl7.org/CodeSystem/v2-0203', 'http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp']);
    expect(parameters.parameter?.find((p) => p.name === 'MemberId')?.valueReference?.reference).toBe('Patient/okafor');
    value = identifier?.value as string;
    expect(value).toBeTruthy();
  });

  it('lets the partner find the member by that identifier, and only that member', async () => {
    const bundle = await body(await baton.request(`/fhir/Patient?identifier=${encodeURIComponent(value)}`, { token: await partner.token() }));
    expect(bundle.entry.map((e: any) => e.resource.id)).toEqual(['okafor']);
    const others = await baton.request('/fhir/Patient/vasquez', { token: await partner.token() });
    expect(others.status).toBe(404);
  });

  it('links CoverageToLink, stores the Consent and the grant for the consent period', async () => {
    const coverages = await body(await baton.request('/fhir/Coverage?beneficiary=Patient/okafor'));
    expect(coverages.entry.map((e: any) => e.resource.subscriberId).sort()).toEqual(['NEW-778899', 'W123456789']);
    const consents = await body(await baton.request('/fhir/Consent?patient=Patient/okafor'));
    expect(consents.entry).toHaveLength(1);
    const consent = consents.entry[0].resource as Consent;
    expect(consent.policy?.[0]?.uri).toMatch(/#sensitive$/);
    const grants = await baton.db.execute<{ consent: string; validUntil: string }>(
      sql`SELECT consent, valid_until AS "validUntil" FROM access_grants WHERE client_id = ${partner.clientId} AND patient_id = 'okafor'`,
    );
    expect(grants.map((g) => g.consent)).toContain(`Consent/${consent.id}`);
    expect(new Date(grants[0].validUntil).getUTCFullYear()).toBe(new Date().getUTCFullYear() + 2);
  });

  it('gives the same member identifier when asked again, storing nothing twice', async () => {
    const again = matchRequest({ ...OKAFOR, given: ['Margaret'], cardId: 'W123456789-01', line: '742 Evergreen Terrace' }, { coverageToLink: true });
    const parameters = await body<Parameters>(await match(again));
    expect(parameters.parameter?.find((p) => p.name === 'MemberIdentifier')?.valueIdentifier?.value).toBe(value);
    expect((await body(await baton.request('/fhir/Coverage?beneficiary=Patient/okafor'))).entry).toHaveLength(2);
    expect((await body(await baton.request('/fhir/Consent?patient=Patient/okafor'))).entry).toHaveLength(1);
    const grants = await baton.db.execute(sql`SELECT 1 FROM access_grants WHERE client_id = ${partner.clientId} AND patient_id = 'okafor'`);
    expect(grants).toHaveLength(1);
  });

  it('stores the decision with its tier, score, policy version and candidates', async () => {
    const [row] = await baton.db.execute<{ outcome: string; tier: string; policyVersion: number; decision: string }>(
      sql`SELECT outcome, tier, policy_version AS "policyVersion", decision FROM match_decisions WHERE patient_id = 'okafor' ORDER BY created LIMIT 1`,
    );
    expect(row.outcome).toBe('matched');
    expect(['deterministic', 'probabilistic']).toContain(row.tier);
    const decision = JSON.parse(row.decision);
    expect(decision.candidates[0].candidateId).toBe('okafor');
    expect(decision.candidates[0].fields.map((f: { field: string }) => f.field)).toContain('birthDate');
    expect(row.policyVersion).toBeGreaterThanOrEqual(1);
    // The policy versions this database got from config/matching/ on first use are in the audit trail.
    const stored = await baton.db.execute(sql`SELECT 1 FROM audit_events WHERE content LIKE '%urn:baton:matching-policy-file%'`);
    expect(stored.length).toBeGreaterThanOrEqual(1);
  });
});

describe('explainability', () => {
  it('links the stored decision and the AuditEvent of the request by its request id', async () => {
    const response = await baton.request('/fhir/Patient/$member-match', {
      method: 'POST',
      json: matchRequest({ ...OKAFOR, cardId: 'W123456789-01' }),
      token: await partner.token(),
      headers: { 'x-request-id': 'member-match-explained-1' },
    });
    expect(response.status).toBe(200);
    const [decision] = await baton.db.execute<{ id: string; outcome: string }>(sql`SELECT id, outcome FROM match_decisions WHERE request_id = 'member-match-explained-1'`);
    expect(decision.outcome).toBe('matched');
    const events = await baton.db.execute<{ content: string }>(sql`SELECT content FROM audit_events WHERE content LIKE '%member-match-explained-1%'`);
    expect(events.map((e) => e.content).join()).toContain('http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match');
    const explained = await body(await admin(`/admin/match-decisions/${decision.id}`));
    expect(explained.outcome).toBe('matched');
  });
});

describe('refusals', () => {
  it('answers 422 no-match for a stranger, saying nothing about anyone', async () => {
    const response = await match(matchRequest({ family: 'Nobody', given: ['Quentin'], birthDate: '1990-01-01', cardId: 'Z00000001' }));
    expect(response.status).toBe(422);
    const outcome = await body(response);
    expect(outcome.issue[0].code).toBe('not-found');
    expect(detail(outcome)).toBe('no-match');
    expect(JSON.stringify(outcome)).not.toMatch(/Nobody|Quentin|1990|Patient\//);
  });

  it('never matches a twin to the other twin', async () => {
    const response = await match(matchRequest({ family: 'Lindqvist', given: ['Emma'], birthDate: '2010-06-15', subscriberId: 'L5550001', line: '9 Birch Lane' }));
    if (response.status === 200) {
      const parameters = await body<Parameters>(response);
      expect(parameters.parameter?.find((p) => p.name === 'MemberId')?.valueReference?.reference).toBe('Patient/twin-a');
    } else {
      expect(response.status).toBe(422);
    }
  });

  it('refuses two members it cannot tell apart', async () => {
    // A second, identical record of the same demographics under another card.
    await putMember(baton, { id: 'brandt-dup', family: 'Brandt', given: ['Oskar'], birthDate: '1961-03-02', gender: 'male', memberId: 'B4440077', subscriberId: 'B4440077' });
    const response = await match(matchRequest({ family: 'Brandt', given: ['Oskar'], birthDate: '1961-03-02', gender: 'male' }));
    expect(response.status).toBe(422);
    const outcome = await body(response);
    expect(['multiple-matches', 'under-review']).toContain(detail(outcome));
    expect(JSON.stringify(outcome)).not.toMatch(/brandt/i);
  });

  it.each([
    ['expired', { start: '2023-12-01', end: '2024-03-31' }, 'consent-expired'],
    ['not yet valid', { start: '2999-01-01', end: '2999-12-31' }, 'consent-not-yet-valid'],
  ])('refuses a consent that is %s', async (_name, period, code) => {
    const response = await match(matchRequest({ ...OKAFOR, cardId: 'W123456789-01' }, { consent: consentFor('Patient/req-1', { period }) }));
    expect(response.status).toBe(422);
    const outcome = await body(response);
    expect(outcome.issue[0].code).toBe('security');
    expect(detail(outcome)).toBe(code);
  });

  it('refuses a consent naming another recipient', async () => {
    const consent = consentFor('Patient/req-1');
    consent.provision!.actor![1].reference = { identifier: { system: NEW_PAYER_NPI.system, value: '5555555555' } };
    const response = await match(matchRequest({ ...OKAFOR, cardId: 'W123456789-01' }, { consent }));
    expect(response.status).toBe(422);
    expect(detail(await body(response))).toBe('consent-recipient-mismatch');
  });

  it('requires a consent by default', async () => {
    const response = await match(matchRequest({ ...OKAFOR, cardId: 'W123456789-01' }, { consent: false }));
    expect(response.status).toBe(400);
    const outcome = await body(response);
    expect(outcome.issue[0].expression[0]).toContain("name='Consent'");
  });
});

describe('bad input', () => {
  const good = () => matchRequest({ ...OKAFOR, cardId: 'W123456789-01' });
  const withParameters = (change: (parameters: NonNullable<Parameters['parameter']>) => void) => {
    const request = good();
    change(request.parameter as NonNullable<Parameters['parameter']>);
    return request;
  };

  it.each([
    ['not a Parameters resource', { resourceType: 'Patient' }, 400, 'Parameters'],
    ['no CoverageToMatch', withParameters((p) => p.splice(1, 1)), 400, "name='CoverageToMatch'"],
    ['MemberPatient twice', withParameters((p) => p.push({ ...p[0] })), 400, "name='MemberPatient'"],
    ['an unknown parameter', withParameters((p) => p.push({ name: 'Extra', valueString: 'x' })), 400, 'Parameters.parameter[3].name'],
    ['MemberPatient holding a Coverage', withParameters((p) => (p[0] = { name: 'MemberPatient', resource: p[1].resource })), 400, "name='MemberPatient'"],
    ['no birth date', withParameters((p) => delete (p[0].resource as { birthDate?: string }).birthDate), 422, '.birthDate'],
    ['no family name', withParameters((p) => ((p[0].resource as { name: unknown[] }).name = [{ given: ['Margaret'] }])), 422, '.name.family'],
    ['a beneficiary that is not MemberPatient', withParameters((p) => ((p[1].resource as { beneficiary: unknown }).beneficiary = { reference: 'Patient/someone-else' })), 422, '.beneficiary'],
    ['two payors on the card', withParameters((p) => ((p[1].resource as { payor: unknown[] }).payor = [{ display: 'A' }, { display: 'B' }])), 422, '.payor'],
    ['a consent for someone else', withParameters((p) => ((p[2].resource as Consent).patient = { reference: 'Patient/other' })), 422, 'patient'],
  ])('answers %s with %s and an OperationOutcome naming the parameter', async (_name, request, status, expression) => {
    const response = await match(request);
    expect(response.status).toBe(status);
    const outcome = await body(response);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue.map((i: { expression?: string[] }) => i.expression?.join(' ')).join(' ')).toContain(expression);
    expect(JSON.stringify(outcome)).not.toMatch(/Okafor|Margaret|1979-04-09|W123456789/);
  });

  it('never echoes an invalid value', async () => {
    const request = withParameters((p) => ((p[0].resource as { birthDate: string }).birthDate = '1979-13-45'));
    const response = await match(request);
    expect([400, 422]).toContain(response.status);
    expect(await response.text()).not.toContain('1979-13-45');
  });

  it('needs the operation scope and a token', async () => {
    const noScope = await baton.token({ clientId: partner.clientId, kind: 'partner', scopes: ['system/*.rs'], organization: [NEW_PAYER_NPI] });
    expect((await match(good(), noScope)).status).toBe(403);
    expect((await baton.request('/fhir/Patient/$member-match', { method: 'POST', json: good(), token: null })).status).toBe(401);
  });
});

describe('brute force (HRex mm-7)', () => {
  it('throttles one client trying many cards for the same person, not the others', async () => {
    const guesser = await registerPartner(baton, 'Guessing Plan');
    const token = await guesser.token();
    for (const card of ['G100001', 'G100002', 'G100003', 'G100001']) {
      expect((await match(matchRequest({ ...OKAFOR, cardId: card }), token)).status).not.toBe(429);
    }
    const refused = await match(matchRequest({ ...OKAFOR, cardId: 'G100004' }), token);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await body(refused)).issue[0].code).toBe('throttled');
    // Retrying a card already tried (above) is no guess; a client that keeps guessing stays refused; another client is not affected.
    expect((await match(matchRequest({ ...OKAFOR, cardId: 'G100001' }), token)).status).toBe(429);
    expect((await match(matchRequest({ ...OKAFOR, cardId: 'G100004' }))).status).not.toBe(429);
    const metrics = await (await baton.app.request('/metrics')).text();
    expect(metrics).toMatch(/baton_member_match_throttled_total [1-9]/);
  });
});

describe('the index follows writes', () => {
  it('finds a member by a name written just before the request', async () => {
    const request = matchRequest({ family: 'Brandt-Holm', given: ['Oskar'], birthDate: '1961-03-02', gender: 'male', cardId: 'B4440001' });
    const patient = await body(await baton.request('/fhir/Patient/brandt'));
    await baton.request('/fhir/Patient/brandt', { method: 'PUT', json: { ...patient, name: [{ family: 'Brandt-Holm', given: ['Oskar'] }] } });
    const response = await match(request);
    expect(response.status).toBe(200);
    expect((await body<Parameters>(response)).parameter?.find((p) => p.name === 'MemberId')?.valueReference?.reference).toBe('Patient/brandt');
  });
});

describe.skipIf(!HAVE_FIXTURES)('the Inferno PDex requests (../shared/fixtures/davinci/inferno)', () => {
  /** The presets' consents expired (2022, 2024): the same consent with a current period. */
  const current = (request: Parameters): Parameters => {
    const year = new Date().getUTCFullYear();
    for (const parameter of request.parameter ?? []) {
      if (parameter.resource?.resourceType === 'Consent') (parameter.resource as Consent).provision!.period = { start: `${year - 1}-01-01`, end: `${year + 1}-01-01` };
    }
    return request;
  };

  it('matches the member of preset-ri-member-match-request', async () => {
    const response = await match(current(fixture('preset-ri-member-match-request.json')));
    expect(response.status).toBe(200);
    expect((await body<Parameters>(response)).parameter?.find((p) => p.name === 'MemberId')?.valueReference?.reference).toBe('Patient/johnny');
  });

  it('refuses preset-ri-no-member-match-request', async () => {
    const response = await match(current(fixture('preset-ri-no-member-match-request.json')));
    expect(response.status).toBe(422);
  });

  it('refuses the preset consent as it was published: expired', async () => {
    const response = await match(fixture('preset-ri-member-match-request.json'));
    expect(response.status).toBe(422);
    expect(detail(await body(response))).toBe('consent-expired');
  });
});

describe('manual review', () => {
  let taskId: string;
  let original: Record<string, any>;

  const putPolicy = async (change: (policy: Record<string, any>) => void) => {
    const policy = structuredClone(await body(await admin('/admin/matching/policy')));
    change(policy);
    policy.version += 1;
    const response = await admin('/admin/matching/policy', { method: 'PUT', body: JSON.stringify(policy) });
    expect(response.status).toBe(201);
  };

  beforeAll(async () => {
    original = await body(await admin('/admin/matching/policy'));
    // Under this policy nothing matches automatically: every good candidate goes to review.
    await putPolicy((policy) => {
      for (const useCase of Object.values(policy.useCases) as Record<string, unknown>[]) Object.assign(useCase, { deterministic: false, autoThreshold: 1000, reviewThreshold: 10 });
    });
  });
  afterAll(async () => {
    await putPolicy((policy) => Object.assign(policy, { useCases: original.useCases }));
  });

  const vasquez = () => matchRequest({ family: 'Vasquez', given: ['Teodora'], birthDate: '1992-11-30', cardId: 'V9990001' }, { coverageToLink: true });

  it('holds an ambiguous request in an on-hold Task and answers 422 under-review', async () => {
    const response = await match(vasquez());
    expect(response.status).toBe(422);
    const outcome = await body(response);
    expect(detail(outcome)).toBe('under-review');
    taskId = /Task\/([A-Za-z0-9-]+)/.exec(outcome.issue[0].diagnostics)?.[1] as string;
    const task = await body(await baton.request(`/fhir/Task/${taskId}`));
    expect(task.status).toBe('on-hold');
    expect(task.businessStatus.coding[0].code).toBe('manual-review');
    expect(JSON.stringify(task)).not.toContain('vasquez');
  });

  it('answers a repeated request with the same review, and hides the Task from the partner', async () => {
    const outcome = await body(await match(vasquez()));
    expect(outcome.issue[0].diagnostics).toContain(`Task/${taskId}`);
    expect((await baton.request(`/fhir/Task/${taskId}`, { token: await partner.token() })).status).toBe(404);
  });

  it('refuses a review without the admin token, a bad body, or a candidate that was not one', async () => {
    expect((await baton.request(`/admin/reviews/${taskId}`, { method: 'POST', json: {}, token: null })).status).toBe(401);
    expect((await admin(`/admin/reviews/${taskId}`, { method: 'POST', body: JSON.stringify({ decision: 'maybe' }) })).status).toBe(400);
    expect((await admin(`/admin/reviews/${taskId}`, { method: 'POST', body: JSON.stringify({ decision: 'approve', reviewer: 'ana', reason: 'r' }) })).status).toBe(400);
    const wrong = await admin(`/admin/reviews/${taskId}`, { method: 'POST', body: JSON.stringify({ decision: 'approve', candidate: 'Patient/okafor', reviewer: 'ana', reason: 'same card' }) });
    expect(wrong.status).toBe(422);
    expect((await admin('/admin/reviews/no-such-task', { method: 'POST', body: JSON.stringify({ decision: 'reject', reviewer: 'ana', reason: 'r' }) })).status).toBe(404);
  });

  it('on approval completes the Task, links the member and lets the partner see it', async () => {
    const response = await admin(`/admin/reviews/${taskId}`, { method: 'POST', body: JSON.stringify({ decision: 'approve', candidate: 'Patient/vasquez', reviewer: 'ana', reason: 'card and birth date agree' }) });
    expect(response.status).toBe(200);
    const task = await body(response);
    expect(task.status).toBe('completed');
    expect(task.for.reference).toBe('Patient/vasquez');
    expect(task.output[0].valueIdentifier.type.coding.map((c: { code: string }) => c.code)).toEqual(['MB', 'UMB']);
    expect((await baton.request(`/fhir/Task/${taskId}`, { token: await partner.token() })).status).toBe(200);
    expect((await baton.request('/fhir/Patient/vasquez', { token: await partner.token() })).status).toBe(200);
    const [decision] = await baton.db.execute<{ outcome: string; reviewedBy: string }>(sql`SELECT outcome, reviewed_by AS "reviewedBy" FROM match_decisions WHERE task_id = ${taskId}`);
    expect(decision).toEqual({ outcome: 'approved', reviewedBy: 'operator:ana' });
    // Settled once.
    const again = await admin(`/admin/reviews/${taskId}`, { method: 'POST', body: JSON.stringify({ decision: 'reject', reviewer: 'bo', reason: 'r' }) });
    expect(again.status).toBe(409);
  });

  it('then answers the repeated request with the member', async () => {
    const response = await match(vasquez());
    expect(response.status).toBe(200);
    expect((await body<Parameters>(response)).parameter?.find((p) => p.name === 'MemberId')?.valueReference?.reference).toBe('Patient/vasquez');
  });

  it('on rejection rejects the Task and the repeated request gets no match', async () => {
    const request = matchRequest({ family: 'Appleseed', given: ['Johnny'], birthDate: '1986-01-01', gender: 'male', cardId: '234567' });
    const outcome = await body(await match(request));
    expect(detail(outcome)).toBe('under-review');
    const task = /Task\/([A-Za-z0-9-]+)/.exec(outcome.issue[0].diagnostics)?.[1] as string;
    const response = await admin(`/admin/reviews/${task}`, { method: 'POST', body: JSON.stringify({ decision: 'reject', reviewer: 'ana', reason: 'no candidate is the person' }) });
    expect(response.status).toBe(200);
    expect((await body(response)).status).toBe('rejected');
    const after = await match(request);
    expect(after.status).toBe(422);
    expect(detail(await body(after))).toBe('no-match');
  });
});

describe('without MemberId (HRex 1.0.0 clients)', () => {
  let other: TestBaton;
  beforeAll(async () => {
    other = await startBaton({ config: { memberMatch: { ...loadConfig({}).memberMatch, memberId: false } } });
    await putMember(other, { id: 'okafor', ...OKAFOR, memberId: 'W123456789-01', subscriberId: 'W123456789', line: '742 Evergreen Terrace' });
  });
  afterAll(async () => {
    await other?.close();
  });

  it('answers MemberIdentifier alone', async () => {
    const client = await registerPartner(other);
    const response = await other.request('/fhir/Patient/$member-match', { method: 'POST', json: matchRequest({ ...OKAFOR, cardId: 'W123456789-01' }), token: await client.token() });
    expect(response.status).toBe(200);
    expect((await body<Parameters>(response)).parameter?.map((p) => p.name)).toEqual(['MemberIdentifier']);
  });
});
