import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthBaton, startAuthBaton } from './harness.ts';

let auth: AuthBaton;

beforeAll(async () => {
  auth = await startAuthBaton();
});
afterAll(() => auth.close());

describe('GET .well-known/smart-configuration', () => {
  it.each([
    ['/fhir/.well-known/smart-configuration', 'application/fhir+json'],
    ['/fhir/.well-known/smart-configuration', 'text/html'],
    ['/.well-known/smart-configuration', 'application/xml'],
  ])('%s answers JSON with CORS whatever the Accept (%s)', async (path, accept) => {
    const response = await auth.request(path, { headers: { accept } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    const config = (await response.json()) as Record<string, unknown>;
    expect(config).toMatchObject({
      token_endpoint: 'http://baton.test/auth/token',
      jwks_uri: 'http://baton.test/auth/jwks',
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      code_challenge_methods_supported: ['S256'],
    });
    expect(config.grant_types_supported).toContain('client_credentials');
    expect(config.capabilities).toEqual(expect.arrayContaining(['client-confidential-asymmetric', 'permission-v1', 'permission-v2']));
    expect(config.scopes_supported).toEqual(expect.arrayContaining(['system/*.read', 'system/*.rs']));
    expect(String(config.authorization_endpoint)).toMatch(/^http:\/\/baton\.test\//);
  });

  it('publishes Baton public keys with kid and no private members at /auth/jwks', async () => {
    const response = await auth.request('/auth/jwks');
    expect(response.status).toBe(200);
    const { keys } = (await response.json()) as { keys: Record<string, unknown>[] };
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(key).toMatchObject({ kty: 'EC', alg: 'ES384', use: 'sig' });
      expect(typeof key.kid).toBe('string');
      expect(key).not.toHaveProperty('d');
    }
  });
});
