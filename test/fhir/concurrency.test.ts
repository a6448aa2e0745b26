import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton.close());

const patient = (id: string, gender: string) => ({ resourceType: 'Patient', id, gender });

describe('concurrent writes', () => {
  it('serializes concurrent updates of one resource into consecutive versions', async () => {
    await baton.request('/fhir/Patient/racer', { method: 'PUT', json: patient('racer', 'unknown') });
    const genders = ['male', 'female', 'other', 'unknown'];
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => baton.request('/fhir/Patient/racer', { method: 'PUT', json: { ...patient('racer', genders[i % 4]), birthDate: `2000-01-${String(i + 1).padStart(2, '0')}` } })),
    );
    expect(answers.map((r) => r.status).sort()).toEqual(Array(12).fill(200));
    const history = await body(await baton.request('/fhir/Patient/racer/_history?_count=50'));
    expect(history.entry.map((e: any) => Number(e.resource.meta.versionId))).toEqual(Array.from({ length: 13 }, (_, i) => 13 - i));
  });

  it('answers concurrent creates of one new id with 201 or 409, never 500', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () => baton.request('/fhir/Patient/newborn', { method: 'PUT', json: patient('newborn', 'female') })));
    const statuses = answers.map((r) => r.status);
    expect(statuses.every((s) => [200, 201, 409].includes(s))).toBe(true);
    expect(statuses).toContain(201);
    const conflicts = answers.filter((r) => r.status === 409);
    for (const r of conflicts) expect((await body(r)).issue[0].code).toBe('conflict');
    expect((await body(await baton.request('/fhir/Patient/newborn'))).gender).toBe('female');
  });
});
