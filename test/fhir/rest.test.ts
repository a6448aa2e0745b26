import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_URL, body, startBaton, type TestBaton, UUID_V7 } from '../support/baton.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton.close());

const patient = (extra: Record<string, unknown> = {}) => ({
  resourceType: 'Patient',
  name: [{ family: 'Rest', given: ['Tess'] }],
  gender: 'female',
  birthDate: '1980-04-01',
  ...extra,
});

async function createPatient(extra: Record<string, unknown> = {}) {
  const res = await baton.request('/fhir/Patient', { method: 'POST', json: patient(extra) });
  expect(res.status).toBe(201);
  return body(res);
}

describe('create', () => {
  it('assigns an id and version 1 and answers 201 with Location, ETag and Last-Modified', async () => {
    const res = await baton.request('/fhir/Patient', { method: 'POST', json: patient({ id: 'client-chosen' }) });
    expect(res.status).toBe(201);
    const created = await body(res);
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.meta.versionId).toBe('1');
    expect(res.headers.get('location')).toBe(`${BASE_URL}/Patient/${created.id}/_history/1`);
    expect(res.headers.get('etag')).toBe('W/"1"');
    expect(new Date(res.headers.get('last-modified') as string).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(res.headers.get('content-type')).toContain('application/fhir+json');
  });

  it('assigns time-ordered ids (UUIDv7): a later create gets a later id', async () => {
    const first = await createPatient();
    await new Promise((resolve) => setTimeout(resolve, 2));
    const second = await createPatient();
    for (const id of [first.id, second.id]) expect(id).toMatch(UUID_V7);
    expect(second.id > first.id).toBe(true);
  });

  it.each([
    ['minimal', null],
    ['OperationOutcome', 'OperationOutcome'],
    ['representation', 'Patient'],
  ])('honours Prefer: return=%s', async (prefer, resourceType) => {
    const res = await baton.request('/fhir/Patient', { method: 'POST', json: patient(), headers: { prefer: `return=${prefer}` } });
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toBeTruthy();
    const text = await res.text();
    expect(text === '' ? null : JSON.parse(text).resourceType).toBe(resourceType);
  });

  it('rejects a body whose resourceType differs from the URL with 400', async () => {
    const res = await baton.request('/fhir/Patient', { method: 'POST', json: { resourceType: 'Observation' } });
    expect(res.status).toBe(400);
    expect((await body(res)).issue[0].diagnostics).toContain('does not match');
  });

  it('rejects a resource that is not valid R4 with 400 naming the element', async () => {
    const res = await baton.request('/fhir/Patient', { method: 'POST', json: patient({ birthDate: 'yesterday', unknownThing: 1 }) });
    expect(res.status).toBe(400);
    const outcome = await body(res);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue.map((i: any) => i.expression?.[0])).toEqual(expect.arrayContaining(['Patient.birthDate', 'Patient.unknownThing']));
  });

  it('answers 404 for an unknown resource type', async () => {
    const res = await baton.request('/fhir/Spaceship', { method: 'POST', json: { resourceType: 'Spaceship' } });
    expect(res.status).toBe(404);
    expect((await body(res)).resourceType).toBe('OperationOutcome');
  });
});

describe('read and vread', () => {
  it('returns the stored resource with its ETag', async () => {
    const created = await createPatient();
    const res = await baton.request(`/fhir/Patient/${created.id}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe('W/"1"');
    expect(await body(res)).toEqual(created);
  });

  it('answers 404 for an id never stored and 400 for an invalid id', async () => {
    expect((await baton.request('/fhir/Patient/does-not-exist')).status).toBe(404);
    const bad = await baton.request(`/fhir/Patient/${'x'.repeat(65)}`);
    expect(bad.status).toBe(400);
    expect((await body(bad)).issue[0].diagnostics).toContain('Invalid id');
    expect((await baton.request('/fhir/Patient/a_b')).status).toBe(400);
  });

  it('reads each version by vread, and 404s for a version that does not exist', async () => {
    const created = await createPatient();
    await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: { ...created, gender: 'male' } });
    const v1 = await body(await baton.request(`/fhir/Patient/${created.id}/_history/1`));
    const v2 = await body(await baton.request(`/fhir/Patient/${created.id}/_history/2`));
    expect([v1.gender, v2.gender]).toEqual(['female', 'male']);
    expect((await baton.request(`/fhir/Patient/${created.id}/_history/3`)).status).toBe(404);
    expect((await baton.request(`/fhir/Patient/${created.id}/_history/abc`)).status).toBe(400);
  });

  it.each([
    ['_summary=true', (p: any) => p.communication === undefined && p.text === undefined && p.name[0].family === 'Rest' && p.meta.tag[0].code === 'SUBSETTED'],
    ['_summary=data', (p: any) => p.text === undefined && p.name !== undefined],
    ['_elements=gender', (p: any) => p.gender === 'female' && p.name === undefined && p.birthDate === undefined],
    ['_pretty=true', (p: any) => p.name[0].family === 'Rest'],
  ])('applies %s', async (query, check) => {
    const created = await createPatient({
      text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Tess</div>' },
      communication: [{ language: { text: 'English' } }],
    });
    const res = await baton.request(`/fhir/Patient/${created.id}?${query}`);
    expect(res.status).toBe(200);
    expect(check(await body(res))).toBe(true);
  });

  it('pretty-prints with _pretty=true', async () => {
    const created = await createPatient();
    expect(await (await baton.request(`/fhir/Patient/${created.id}?_pretty=true`)).text()).toContain('\n  "resourceType"');
  });
});

describe('update', () => {
  it('creates a new version with 200 and keeps the old one', async () => {
    const created = await createPatient();
    const res = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: { ...created, gender: 'other' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe('W/"2"');
    expect((await body(res)).meta.versionId).toBe('2');
  });

  it('creates the resource with the client id when it does not exist (201)', async () => {
    const res = await baton.request('/fhir/Patient/chosen-by-client', { method: 'PUT', json: patient({ id: 'chosen-by-client' }) });
    expect(res.status).toBe(201);
    expect((await body(await baton.request('/fhir/Patient/chosen-by-client'))).id).toBe('chosen-by-client');
  });

  it('does not make a new version when nothing changed', async () => {
    const created = await createPatient();
    const res = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: created });
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe('W/"1"');
  });

  it('checks If-Match: 200 on the current version, 412 on a stale one, 400 on garbage', async () => {
    const created = await createPatient();
    const ok = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: { ...created, gender: 'male' }, headers: { 'if-match': 'W/"1"' } });
    expect(ok.status).toBe(200);
    const stale = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: { ...created, gender: 'other' }, headers: { 'if-match': 'W/"1"' } });
    expect(stale.status).toBe(412);
    expect((await body(stale)).issue[0].diagnostics).toContain('version 2');
    const garbage = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: created, headers: { 'if-match': 'yesterday' } });
    expect(garbage.status).toBe(400);
  });

  it.each([
    ['no id', (p: any) => ({ ...p, id: undefined }), 'has no id'],
    ['another id', (p: any) => ({ ...p, id: 'someone-else' }), 'does not match'],
    ['another type', (p: any) => ({ ...p, resourceType: 'Group' }), 'does not match'],
  ])('rejects a body with %s with 400', async (_, change, message) => {
    const created = await createPatient();
    const res = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: change(created) });
    expect(res.status).toBe(400);
    expect((await body(res)).issue[0].diagnostics).toContain(message);
  });
});

describe('patch', () => {
  const jsonPatch = (ops: unknown, extra: Record<string, string> = {}) => ({
    method: 'PATCH',
    body: JSON.stringify(ops),
    headers: { 'content-type': 'application/json-patch+json', ...extra },
  });

  it('applies a JSON Patch as a new version', async () => {
    const created = await createPatient();
    const res = await baton.request(`/fhir/Patient/${created.id}`, jsonPatch([{ op: 'replace', path: '/gender', value: 'male' }]));
    expect(res.status).toBe(200);
    const patched = await body(res);
    expect([patched.gender, patched.meta.versionId]).toEqual(['male', '2']);
  });

  it('answers 409 when a test operation fails and 412 on a stale If-Match', async () => {
    const created = await createPatient();
    const failedTest = await baton.request(`/fhir/Patient/${created.id}`, jsonPatch([{ op: 'test', path: '/gender', value: 'male' }]));
    expect(failedTest.status).toBe(409);
    const stale = await baton.request(`/fhir/Patient/${created.id}`, jsonPatch([{ op: 'remove', path: '/gender' }], { 'if-match': 'W/"7"' }));
    expect(stale.status).toBe(412);
  });

  it.each([
    ['a patch making the resource invalid', [{ op: 'replace', path: '/birthDate', value: 'never' }], 400],
    ['a patch changing the id', [{ op: 'replace', path: '/id', value: 'other' }], 422],
    ['a path that does not exist', [{ op: 'replace', path: '/name/9/family', value: 'x' }], 422],
    ['a body that is not an array', { op: 'remove', path: '/gender' }, 400],
  ])('rejects %s', async (_, ops, status) => {
    const created = await createPatient();
    const res = await baton.request(`/fhir/Patient/${created.id}`, jsonPatch(ops));
    expect(res.status).toBe(status);
    expect((await body(res)).resourceType).toBe('OperationOutcome');
  });

  it('answers 415 for a FHIRPath Patch content type it does not take', async () => {
    const created = await createPatient();
    const res = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PATCH', body: '[]', headers: { 'content-type': 'application/xml' } });
    expect(res.status).toBe(415);
  });
});

describe('delete', () => {
  it('deletes logically: read answers 410, history keeps the versions, vread of the old version still works', async () => {
    const created = await createPatient();
    const del = await baton.request(`/fhir/Patient/${created.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(del.headers.get('etag')).toBe('W/"2"');
    const read = await baton.request(`/fhir/Patient/${created.id}`);
    expect(read.status).toBe(410);
    expect((await body(read)).issue[0].code).toBe('deleted');
    expect((await baton.request(`/fhir/Patient/${created.id}/_history/1`)).status).toBe(200);
    expect((await baton.request(`/fhir/Patient/${created.id}/_history/2`)).status).toBe(410);
    const history = await body(await baton.request(`/fhir/Patient/${created.id}/_history`));
    expect(history.entry.map((e: any) => e.request.method)).toEqual(['DELETE', 'POST']);
    expect(history.entry[0].resource).toBeUndefined();
  });

  it('checks If-Match on delete: 412 on a stale version, 204 on the current one', async () => {
    const created = await createPatient();
    await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: { ...created, gender: 'male' } });
    expect((await baton.request(`/fhir/Patient/${created.id}`, { method: 'DELETE', headers: { 'if-match': 'W/"1"' } })).status).toBe(412);
    expect((await baton.request(`/fhir/Patient/${created.id}`)).status).toBe(200);
    expect((await baton.request(`/fhir/Patient/${created.id}`, { method: 'DELETE', headers: { 'if-match': 'W/"2"' } })).status).toBe(204);
  });

  it('is idempotent on a deleted resource and 404s on one never stored', async () => {
    const created = await createPatient();
    await baton.request(`/fhir/Patient/${created.id}`, { method: 'DELETE' });
    expect((await baton.request(`/fhir/Patient/${created.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await baton.request('/fhir/Patient/never-stored', { method: 'DELETE' })).status).toBe(404);
  });

  it('brings a deleted resource back with an update (201, next version)', async () => {
    const created = await createPatient();
    await baton.request(`/fhir/Patient/${created.id}`, { method: 'DELETE' });
    const res = await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: { ...created, meta: undefined } });
    expect(res.status).toBe(201);
    expect(res.headers.get('etag')).toBe('W/"3"');
  });
});

describe('history', () => {
  it('lists an instance history newest first with request and response', async () => {
    const created = await createPatient();
    await baton.request(`/fhir/Patient/${created.id}`, { method: 'PUT', json: { ...created, gender: 'male' } });
    const bundle = await body(await baton.request(`/fhir/Patient/${created.id}/_history`));
    expect(bundle.type).toBe('history');
    expect(bundle.entry.map((e: any) => e.resource.meta.versionId)).toEqual(['2', '1']);
    expect(bundle.entry[1].request).toEqual({ method: 'POST', url: 'Patient' });
    expect(bundle.entry[0].response.etag).toBe('W/"2"');
    expect(bundle.entry[0].fullUrl).toBe(`${BASE_URL}/Patient/${created.id}`);
  });

  it('pages type history with _count and next links until the end, without repeats', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add((await baton.request('/fhir/Device', { method: 'POST', json: { resourceType: 'Device' } }).then(body)).id);
    const seen: string[] = [];
    let url: string | undefined = '/fhir/Device/_history?_count=2';
    while (url) {
      const page: any = await body(await baton.request(url));
      expect(page.entry.length).toBeLessThanOrEqual(2);
      seen.push(...page.entry.map((e: any) => e.resource.id));
      const next: string | undefined = page.link.find((l: any) => l.relation === 'next')?.url;
      url = next?.replace('http://baton.test', '');
    }
    expect(seen.sort()).toEqual([...ids].sort());
  });

  it('filters with _since and covers the whole system', async () => {
    const before = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    const created = await createPatient();
    const since = await body(await baton.request(`/fhir/_history?_since=${encodeURIComponent(before)}`));
    expect(since.entry.map((e: any) => e.resource?.id)).toContain(created.id);
    const future = await body(await baton.request('/fhir/Patient/_history?_since=2999-01-01T00:00:00Z'));
    expect(future.entry).toEqual([]);
  });

  it.each([
    ['_since=yesterday', '_since'],
    ['_count=-1', '_count'],
    ['_count=abc', '_count'],
    ['_cursor=xyz', '_cursor'],
  ])('rejects %s with 400', async (query, param) => {
    const res = await baton.request(`/fhir/_history?${query}`);
    expect(res.status).toBe(400);
    expect((await body(res)).issue[0].diagnostics).toContain(param);
  });

  it('answers 404 for the history of a resource never stored', async () => {
    expect((await baton.request('/fhir/Patient/nobody/_history')).status).toBe(404);
  });
});

describe('transaction over HTTP', () => {
  it('honours Prefer: return=minimal on every entry', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ fullUrl: 'urn:uuid:7f1c3b7e-0c4e-4f43-9d55-0d1b8f3c2a10', resource: patient(), request: { method: 'POST', url: 'Patient' } }],
    };
    const res = await baton.request('/fhir', { method: 'POST', json: bundle, headers: { prefer: 'return=minimal' } });
    expect(res.status).toBe(200);
    const answer = await body(res);
    expect(answer.type).toBe('transaction-response');
    expect(answer.entry[0].response.status).toMatch(/^201/);
    expect(answer.entry[0].response.location).toMatch(/^http:\/\/baton\.test\/fhir\/Patient\//);
    expect(answer.entry[0].resource).toBeUndefined();
  });
});
