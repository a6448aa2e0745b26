import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type AuthBaton, ORGANIZATION, clientKeys, startAuthBaton } from './harness.ts';

let auth: AuthBaton;
let closed: AuthBaton;
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

beforeAll(async () => {
  auth = await startAuthBaton();
  closed = await startAuthBaton({ adminApiClosed: true });
});
afterAll(async () => {
  await auth.close();
  await closed.close();
});

async function registration(): Promise<Record<string, unknown>> {
  const keys = await clientKeys('ES384');
  return { name: 'Partner Payer', kind: 'partner', organization: ORGANIZATION, jwks: { keys: [keys.publicJwk] }, scope: 'system/*.read' };
}

describe('admin API /admin/clients', () => {
  it('registers, lists and deletes a client', async () => {
    const body = await registration();
    const created = await auth.request('/admin/clients', { method: 'POST', headers: admin, json: body });
    expect(created.status).toBe(201);
    const client = (await created.json()) as Record<string, unknown>;
    expect(client).toMatchObject({ name: 'Partner Payer', kind: 'partner', organization: ORGANIZATION, jwks: body.jwks, scope: 'system/*.read', disabled: false });
    expect(typeof client.client_id).toBe('string');
    expect(Date.parse(client.created as string)).not.toBeNaN();

    const listed = (await (await auth.request('/admin/clients', { headers: admin })).json()) as { client_id: string }[];
    expect(listed.map((c) => c.client_id)).toContain(client.client_id);

    expect((await auth.request(`/admin/clients/${client.client_id as string}`, { method: 'DELETE', headers: admin })).status).toBe(204);
    const after = (await (await auth.request('/admin/clients', { headers: admin })).json()) as { client_id: string }[];
    expect(after.map((c) => c.client_id)).not.toContain(client.client_id);
    expect((await auth.request(`/admin/clients/${client.client_id as string}`, { method: 'DELETE', headers: admin })).status).toBe(404);
  });

  it('registers a client with a jwks_uri', async () => {
    const { jwks: _, ...rest } = await registration();
    const response = await auth.request('/admin/clients', { method: 'POST', headers: admin, json: { ...rest, kind: 'internal', jwks_uri: 'https://partner.example/jwks.json' } });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ kind: 'internal', jwks_uri: 'https://partner.example/jwks.json' });
  });

  it('answers 400 with an OperationOutcome naming the problem for an invalid body', async () => {
    const response = await auth.request('/admin/clients', { method: 'POST', headers: admin, json: { ...(await registration()), kind: 'vendor' } });
    expect(response.status).toBe(400);
    const outcome = (await response.json()) as { resourceType: string; issue: { diagnostics: string }[] };
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].diagnostics).toContain('kind must be');
  });

  it('answers 400 for a body that is not JSON', async () => {
    const response = await auth.request('/admin/clients', { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '{nope' });
    expect(response.status).toBe(400);
  });

  it.each([
    ['GET', '/admin/clients'],
    ['POST', '/admin/clients'],
    ['DELETE', '/admin/clients/some-id'],
  ])('answers 401 to %s %s without a token', async (method, path) => {
    const response = await auth.request(path, { method, json: method === 'POST' ? await registration() : undefined });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
  });

  it.each([
    ['a wrong token', 'Bearer not-the-admin-token'],
    ['a prefix of the token', `Bearer ${ADMIN_TOKEN.slice(0, 10)}`],
  ])('answers 403 to %s and registers nothing', async (_, authorization) => {
    const before = ((await (await auth.request('/admin/clients', { headers: admin })).json()) as unknown[]).length;
    const response = await auth.request('/admin/clients', { method: 'POST', headers: { authorization }, json: await registration() });
    expect(response.status).toBe(403);
    expect(((await (await auth.request('/admin/clients', { headers: admin })).json()) as unknown[]).length).toBe(before);
  });

  it('is closed (404) when BATON_ADMIN_TOKEN is not configured, whatever token is sent', async () => {
    expect((await closed.request('/admin/clients', { headers: admin })).status).toBe(404);
    expect((await closed.request('/admin/clients', { method: 'POST', headers: admin, json: await registration() })).status).toBe(404);
    expect((await closed.request('/admin/clients')).status).toBe(404);
  });
});
