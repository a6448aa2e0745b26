import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/**
 * Issue 4, "Auditor search", end to end: requests are audited, sealed, and an auditor answers
 * "who did what to which member, when, under which token, with what outcome" with FHIR search
 * alone, then proves the trail intact with $verify. Reading the trail is audited too.
 */

const ISSUER = 'http://baton.test';
let baton: TestBaton;
let auditor: string;
let writerToken: string;
let writerJti: string;

const search = async (query: string) => body(await baton.request(`/fhir/AuditEvent?${query}`, { token: auditor }));
const entries = (bundle: Record<string, any>) => (bundle.entry ?? []).map((e: { resource: any }) => e.resource);

beforeAll(async () => {
  baton = await startBaton();
  auditor = await baton.token({ clientId: 'auditor-1', scopes: ['system/AuditEvent.rs'] });
  writerToken = await baton.token({ clientId: 'loader-7' });
  writerJti = JSON.parse(Buffer.from(writerToken.split('.')[1], 'base64url').toString()).jti;
  const as = { token: writerToken };
  await baton.request('/fhir/Patient/m1', { method: 'PUT', json: { resourceType: 'Patient', id: 'm1' }, ...as });
  await baton.request('/fhir/Observation/m1-obs', { method: 'PUT', json: { resourceType: 'Observation', id: 'm1-obs', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/m1' } }, ...as });
  await baton.request('/fhir/Patient/m1', as);
  await baton.request('/fhir/Patient/nobody', as);
  await baton.request('/fhir/Patient/m2', { method: 'PUT', json: { resourceType: 'Patient', id: 'm2' } });
  expect((await baton.sealAudit()).sealed).toBeGreaterThan(0);
});
afterAll(async () => {
  await baton?.close();
});

describe('auditor search', () => {
  it("lists one member's events, newest first", async () => {
    const events = entries(await search('patient=Patient/m1&_sort=-date&_count=50'));
    expect(events.length).toBe(3);
    expect(events.map((e: { action: string }) => e.action)).toEqual(['R', 'C', 'C']);
    const dates = events.map((e: { recorded: string }) => e.recorded);
    expect([...dates].sort().reverse()).toEqual(dates);
  });

  it("finds a client's failures, and everything done under one token", async () => {
    const failures = entries(await search(`agent:identifier=${ISSUER}|loader-7&outcome=4`));
    expect(failures).toHaveLength(1);
    expect(failures[0].outcomeDesc).toContain('Patient/nobody');
    const underToken = entries(await search(`policy=urn:ietf:params:oauth:jti:${writerJti}&_count=50`));
    expect(underToken).toHaveLength(4);
  });

  it('audits reading the audit trail', async () => {
    await search('patient=Patient/m2');
    await baton.sealAudit();
    const reads = entries(await search(`agent:identifier=${ISSUER}|auditor-1&_count=50`));
    expect(reads.length).toBeGreaterThan(0);
    const query = reads[0].entity.find((x: { role?: { code: string } }) => x.role?.code === '24').query;
    expect(Buffer.from(query, 'base64').toString()).toContain('/AuditEvent?');
  });

  it('keeps the trail from everyone else', async () => {
    const other = await baton.token({ scopes: ['system/*.*'] });
    expect((await baton.request('/fhir/AuditEvent?patient=Patient/m1', { token: other })).status).toBe(403);
    expect((await baton.request('/fhir/AuditEvent/$verify', { token: other })).status).toBe(403);
  });
});

describe('$verify', () => {
  it('answers a Parameters resource that says the trail verifies', async () => {
    const response = await baton.request('/fhir/AuditEvent/$verify', { token: auditor });
    expect(response.status).toBe(200);
    const parameters = await body(response);
    expect(parameters.resourceType).toBe('Parameters');
    const value = (name: string) => parameters.parameter.find((p: { name: string }) => p.name === name);
    expect(value('verified').valueBoolean).toBe(true);
    expect(value('checkedEvents').valueInteger).toBeGreaterThan(5);
  });

  it('refuses a bad range with 400', async () => {
    const response = await baton.request('/fhir/AuditEvent/$verify?from=banana', { token: auditor });
    expect(response.status).toBe(400);
    expect((await body(response)).resourceType).toBe('OperationOutcome');
  });
});
