import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBaton, type TestBaton } from '../../support/baton.ts';

let baton: TestBaton;
let server: ServerType;
let port: number;
let token: string;

beforeAll(async () => {
  baton = await startBaton();
  server = serve({ fetch: baton.app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise((resolve) => server.once('listening', resolve));
  port = (server.address() as AddressInfo).port;
  token = await baton.token();
});
afterAll(async () => {
  server.close();
  await baton.close();
});

/** Every error answer is an OperationOutcome with no stack trace or internals. */
async function expectOutcome(res: Response, status: number): Promise<any> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/fhir+json');
  const text = await res.text();
  expect(text).not.toMatch(/at .*\.ts:\d+|node_modules|Error:/);
  const outcome = JSON.parse(text);
  expect(outcome.resourceType).toBe('OperationOutcome');
  expect(outcome.issue[0].diagnostics ?? outcome.issue[0].details?.text).toBeTruthy();
  return outcome;
}

const post = (path: string, text: string, contentType = 'application/fhir+json') =>
  baton.request(path, { method: 'POST', body: text, headers: { 'content-type': contentType } });

describe('bad bodies', () => {
  it.each([
    ['malformed JSON', '{"resourceType": "Patient",', 'not valid JSON'],
    ['an empty body', '', 'empty'],
    ['a JSON array', '[]', 'FHIR resource'],
    ['a JSON string', '"Patient"', 'FHIR resource'],
    ['a __proto__ key', '{"resourceType":"Patient","__proto__":{"admin":true}}', '__proto__'],
    ['a nested constructor key', '{"resourceType":"Patient","name":[{"constructor":{"prototype":1}}]}', 'constructor'],
  ])('answers 400 to %s', async (_, text, message) => {
    const outcome = await expectOutcome(await post('/fhir/Patient', text), 400);
    expect(outcome.issue[0].diagnostics).toContain(message);
  });

  it('answers 400 to 10,000-deep nesting without overflowing the stack', async () => {
    const deep = `{"resourceType":"Patient","extension":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const outcome = await expectOutcome(await post('/fhir/Patient', deep), 400);
    expect(outcome.issue[0].diagnostics).toContain('nests deeper');
    const deepObjects = `{"resourceType":"Patient","a":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
    await expectOutcome(await post('/fhir/Patient', deepObjects), 400);
  });

  it('leaves Object.prototype untouched after a __proto__ attack', async () => {
    await post('/fhir/Patient', '{"resourceType":"Patient","__proto__":{"polluted":true}}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it.each([
    ['XML', 'application/fhir+xml'],
    ['text', 'text/plain'],
    ['no content type', ''],
  ])('answers 415 to a %s body', async (_, contentType) => {
    const res = await baton.request('/fhir/Patient', { method: 'POST', body: '<Patient/>', headers: contentType ? { 'content-type': contentType } : {} });
    await expectOutcome(res, 415);
  });

  it('accepts application/json as well as application/fhir+json', async () => {
    const res = await post('/fhir/Patient', '{"resourceType":"Patient"}', 'application/json; charset=utf-8');
    expect(res.status).toBe(201);
  });
});

describe('formats', () => {
  it.each([
    ['_format=xml', {}],
    ['_format=application/fhir%2Bxml', {}],
    ['_format=turtle', {}],
    ['', { accept: 'application/fhir+xml' }],
    ['', { accept: 'text/html' }],
  ])('answers 406 to %s %j', async (query, headers) => {
    await expectOutcome(await baton.request(`/fhir/metadata?${query}`, { headers }), 406);
  });

  it.each([
    ['_format=json', {}],
    ['_format=application/fhir%2Bjson', {}],
    ['', { accept: 'application/fhir+json;fhirVersion=4.0' }],
    ['', { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }],
    ['', { accept: 'application/json' }],
  ])('serves JSON to %s %j', async (query, headers) => {
    expect((await baton.request(`/fhir/metadata?${query}`, { headers })).status).toBe(200);
  });

  it('serves /metadata with CORS so browser clients can discover the server', async () => {
    const res = await baton.request('/fhir/metadata', { headers: { origin: 'https://app.example.org' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('rejects a _pretty that is not a boolean and a _summary it does not know', async () => {
    await expectOutcome(await baton.request('/fhir/Patient/x?_pretty=yes'), 400);
    await expectOutcome(await baton.request('/fhir/Patient/x?_summary=most'), 400);
  });
});

describe('routes', () => {
  it.each([
    ['GET', '/nothing-here', 404],
    ['GET', '/fhir/Patient/a/b/c/d', 404],
    ['GET', '/fhir/Patient/$no-such-operation', 404],
    ['POST', '/fhir/Patient/$no-such-operation', 404],
    ['GET', '/fhir/Patient/x/_history/1/extra', 404],
  ])('%s %s answers %i with an OperationOutcome', async (method, path, status) => {
    await expectOutcome(await baton.request(path, { method }), status);
  });

  it.each([
    ['PATCH', '/fhir/Patient', 'GET, POST, PUT, DELETE'],
    ['POST', '/fhir/Patient/123', 'GET, PUT, PATCH, DELETE'],
    ['DELETE', '/fhir/metadata', 'GET'],
    ['PUT', '/fhir/Patient/1/_history', 'GET'],
  ])('%s %s answers 405 with Allow', async (method, path, allow) => {
    const res = await baton.request(path, { method, body: method === 'GET' ? undefined : '{}', headers: { 'content-type': 'application/fhir+json' } });
    await expectOutcome(res, 405);
    expect(res.headers.get('allow')).toBe(allow);
  });

  it('echoes a sane X-Request-Id and replaces an unsafe one', async () => {
    expect((await baton.request('/livez', { headers: { 'x-request-id': 'abc-123' } })).headers.get('x-request-id')).toBe('abc-123');
    const replaced = (await baton.request('/livez', { headers: { 'x-request-id': 'a b<script>' } })).headers.get('x-request-id');
    expect(replaced).toMatch(/^[0-9a-f-]{36}$/);
  });
});

/** Sends a body over a real socket and reports the status, without waiting for the body to finish. */
function sendLargeBody(bytes: number, withLength: boolean): Promise<{ status: number; body: string; sent: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/fhir/Patient',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', ...(withLength ? { 'content-length': String(bytes) } : { 'transfer-encoding': 'chunked' }) },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, sent }));
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' || error.code === 'ECONNRESET' ? undefined : reject(error)));
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const pump = (): void => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

describe('large bodies', () => {
  it('answers 413 to a 50 MB body declared by Content-Length', async () => {
    const res = await sendLargeBody(50 * 1024 * 1024, true);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).issue[0].code).toBe('too-costly');
  });

  it('answers 413 to a 50 MB chunked body', async () => {
    const res = await sendLargeBody(50 * 1024 * 1024, false);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).resourceType).toBe('OperationOutcome');
  });
});
