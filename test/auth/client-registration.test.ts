import { describe, expect, it } from 'vitest';
import { parseRegistration } from '../../src/auth/client-registration.ts';

const key = { kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'k1' };
const valid = {
  name: 'Partner Payer',
  kind: 'partner',
  organization: { identifier: [{ system: 'http://www.naic.org', value: '12345' }] },
  jwks: { keys: [key] },
  scope: 'system/*.read',
};

describe('parseRegistration', () => {
  it('accepts a complete registration', () => {
    expect(parseRegistration(valid)).toEqual({
      registration: { name: 'Partner Payer', kind: 'partner', organizationIdentifiers: valid.organization.identifier, jwks: valid.jwks, jwksUri: undefined, scopes: ['system/*.read'] },
    });
  });

  it('accepts v2 constraints that are searches Baton can run, and refuses the others', () => {
    expect(parseRegistration({ ...valid, scope: 'system/Observation.rs?category=laboratory' })).toHaveProperty('registration');
    for (const scope of ['system/Observation.rs?no-such-param=1', 'system/*.rs?category=laboratory', 'system/Observation.rs?date=yesterday']) {
      const parsed = parseRegistration({ ...valid, scope });
      expect(parsed, scope).toHaveProperty('problems');
      expect((parsed as { problems: string[] }).problems.join(' ')).toContain(scope);
    }
  });

  it('accepts a jwks_uri instead of an inline JWKS', () => {
    const { jwks: _, ...rest } = valid;
    expect(parseRegistration({ ...rest, jwks_uri: 'https://partner.example/jwks.json' })).toHaveProperty('registration.jwksUri', 'https://partner.example/jwks.json');
  });

  it.each([['http://127.0.0.1:8081/jwks.json'], ['http://localhost/jwks.json'], ['http://[::1]:9000/jwks.json']])('accepts a plain http jwks_uri on the loopback host %s', (uri) => {
    const { jwks: _, ...rest } = valid;
    expect(parseRegistration({ ...rest, jwks_uri: uri })).toHaveProperty('registration.jwksUri', uri);
  });

  it.each([
    ['not an object', [], 'the body must be a JSON object'],
    ['no name', { ...valid, name: ' ' }, 'name must be a non-empty string'],
    ['an unknown kind', { ...valid, kind: 'vendor' }, 'kind must be "partner" or "internal"'],
    ['no organization identifier', { ...valid, organization: { identifier: [] } }, 'organization.identifier must be a non-empty array of {system, value} strings'],
    ['an identifier without value', { ...valid, organization: { identifier: [{ system: 's' }] } }, 'organization.identifier must be a non-empty array of {system, value} strings'],
    ['both jwks and jwks_uri', { ...valid, jwks_uri: 'https://partner.example/jwks.json' }, 'exactly one of jwks and jwks_uri is required'],
    ['neither jwks nor jwks_uri', { ...valid, jwks: undefined }, 'exactly one of jwks and jwks_uri is required'],
    ['an empty JWKS', { ...valid, jwks: { keys: [] } }, 'jwks must be a JWK Set with a non-empty keys array'],
    ['a symmetric key', { ...valid, jwks: { keys: [{ kty: 'oct', k: 'secret', kid: 'k' }] } }, 'jwks.keys[0] must be an RSA or EC public key'],
    ['a key without kid', { ...valid, jwks: { keys: [{ ...key, kid: undefined }] } }, 'jwks.keys[0] needs a kid: assertions select their key by kid'],
    ['a private key', { ...valid, jwks: { keys: [{ ...key, d: 'secret' }] } }, 'jwks.keys[0] contains private key material; register the public key only'],
    ['a relative jwks_uri', { ...valid, jwks: undefined, jwks_uri: '/jwks.json' }, 'jwks_uri must be an absolute https URL'],
    ['a jwks_uri that is not a string', { ...valid, jwks: undefined, jwks_uri: 42 }, 'jwks_uri must be an absolute https URL'],
    ['a plain http jwks_uri', { ...valid, jwks: undefined, jwks_uri: 'http://partner.example/jwks.json' }, 'jwks_uri must be an https URL (plain http only for a loopback host such as 127.0.0.1)'],
    ['an http jwks_uri on a name merely starting with 127', { ...valid, jwks: undefined, jwks_uri: 'http://127.0.0.1.partner.example/jwks.json' }, 'jwks_uri must be an https URL (plain http only for a loopback host such as 127.0.0.1)'],
    ['a jwks_uri of another scheme', { ...valid, jwks: undefined, jwks_uri: 'file:///etc/jwks.json' }, 'jwks_uri must be an https URL (plain http only for a loopback host such as 127.0.0.1)'],
    ['a jwks_uri with credentials', { ...valid, jwks: undefined, jwks_uri: 'https://user:secret@partner.example/jwks.json' }, 'jwks_uri must not carry credentials'],
    ['no scope', { ...valid, scope: '' }, 'scope must be a non-empty space-separated list of scopes'],
    ['an unknown scope', { ...valid, scope: 'system/*.read user/*.*' }, 'unrecognized scopes: user/*.*'],
  ])('rejects %s', (_, body, problem) => {
    const result = parseRegistration(body);
    expect(result).toHaveProperty('problems');
    expect((result as { problems: string[] }).problems).toContain(problem);
  });
});
