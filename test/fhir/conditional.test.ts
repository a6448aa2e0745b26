import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton.close());

const SYSTEM = 'https://plan.example.org/member';
const member = (value: string, extra: Record<string, unknown> = {}) => ({ resourceType: 'Patient', identifier: [{ system: SYSTEM, value }], ...extra });
const ifNoneExist = (value: string) => ({ 'if-none-exist': `identifier=${SYSTEM}|${value}` });

describe('conditional create (If-None-Exist)', () => {
  it('creates when nothing matches, then answers 200 with the existing resource', async () => {
    const first = await baton.request('/fhir/Patient', { method: 'POST', json: member('C-1'), headers: ifNoneExist('C-1') });
    expect(first.status).toBe(201);
    const second = await baton.request('/fhir/Patient', { method: 'POST', json: member('C-1', { gender: 'male' }), headers: ifNoneExist('C-1') });
    expect(second.status).toBe(200);
    expect((await body(second)).id).toBe((await body(first)).id);
  });

  it('creates exactly one resource when the same conditional create races', async () => {
    const answers = await Promise.all(Array.from({ length: 6 }, () => baton.request('/fhir/Patient', { method: 'POST', json: member('C-race'), headers: ifNoneExist('C-race') })));
    expect(answers.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
    const found = await body(await baton.request(`/fhir/Patient?identifier=${SYSTEM}|C-race&_total=accurate`));
    expect(found.total).toBe(1);
  });

  it('answers 412 when more than one resource matches', async () => {
    await baton.request('/fhir/Patient', { method: 'POST', json: member('C-dup') });
    await baton.request('/fhir/Patient', { method: 'POST', json: member('C-dup') });
    const res = await baton.request('/fhir/Patient', { method: 'POST', json: member('C-dup'), headers: ifNoneExist('C-dup') });
    expect(res.status).toBe(412);
    expect((await body(res)).issue[0].diagnostics).toContain('matched 2');
  });

  it('answers 400 when the condition has an invalid search value', async () => {
    const res = await baton.request('/fhir/Patient', { method: 'POST', json: member('C-x'), headers: { 'if-none-exist': 'birthdate=not-a-date' } });
    expect(res.status).toBe(400);
  });
});

describe('conditional update', () => {
  it('creates when nothing matches and updates the single match afterwards', async () => {
    const created = await baton.request(`/fhir/Patient?identifier=${SYSTEM}|U-1`, { method: 'PUT', json: member('U-1') });
    expect(created.status).toBe(201);
    const id = (await body(created)).id;
    const updated = await baton.request(`/fhir/Patient?identifier=${SYSTEM}|U-1`, { method: 'PUT', json: member('U-1', { gender: 'female' }) });
    expect(updated.status).toBe(200);
    expect(await body(updated)).toMatchObject({ id, gender: 'female', meta: { versionId: '2' } });
  });

  it('answers 412 on several matches and 400 when the body id differs from the match', async () => {
    await baton.request('/fhir/Patient', { method: 'POST', json: member('U-dup') });
    await baton.request('/fhir/Patient', { method: 'POST', json: member('U-dup') });
    expect((await baton.request(`/fhir/Patient?identifier=${SYSTEM}|U-dup`, { method: 'PUT', json: member('U-dup') })).status).toBe(412);
    await baton.request(`/fhir/Patient?identifier=${SYSTEM}|U-2`, { method: 'PUT', json: member('U-2') });
    const wrongId = await baton.request(`/fhir/Patient?identifier=${SYSTEM}|U-2`, { method: 'PUT', json: { ...member('U-2'), id: 'other-id' } });
    expect(wrongId.status).toBe(400);
  });

  it('answers 400 when the URL carries no search parameters', async () => {
    expect((await baton.request('/fhir/Patient', { method: 'PUT', json: member('U-3') })).status).toBe(400);
  });
});

describe('conditions naming references', () => {
  it('matches a reference written as an absolute URL under this server base', async () => {
    const patientId = (await body(await baton.request('/fhir/Patient', { method: 'POST', json: member('R-1') }))).id;
    const observation = { resourceType: 'Observation', status: 'final', code: { text: 'pulse' }, subject: { reference: `Patient/${patientId}` } };
    const first = await baton.request('/fhir/Observation', { method: 'POST', json: observation });
    const condition = `subject=${encodeURIComponent(`http://baton.test/fhir/Patient/${patientId}`)}`;
    const again = await baton.request('/fhir/Observation', { method: 'POST', json: observation, headers: { 'if-none-exist': condition } });
    expect(again.status).toBe(200);
    expect((await body(again)).id).toBe((await body(first)).id);
  });
});

describe('conditional delete', () => {
  it('deletes the single match, is a no-op without one, and refuses several', async () => {
    const id = (await body(await baton.request('/fhir/Patient', { method: 'POST', json: member('D-1') }))).id;
    expect((await baton.request(`/fhir/Patient?identifier=${SYSTEM}|D-1`, { method: 'DELETE' })).status).toBe(204);
    expect((await baton.request(`/fhir/Patient/${id}`)).status).toBe(410);
    expect((await baton.request(`/fhir/Patient?identifier=${SYSTEM}|D-1`, { method: 'DELETE' })).status).toBe(204);
    await baton.request('/fhir/Patient', { method: 'POST', json: member('D-dup') });
    await baton.request('/fhir/Patient', { method: 'POST', json: member('D-dup') });
    expect((await baton.request(`/fhir/Patient?identifier=${SYSTEM}|D-dup`, { method: 'DELETE' })).status).toBe(412);
  });
});
