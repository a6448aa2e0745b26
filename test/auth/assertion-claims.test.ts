import { describe, expect, it } from 'vitest';
import { assertionClaimProblem } from '../../src/auth/assertion-claims.ts';

const now = 1_800_000_000;
const tokenUrl = 'https://baton.example/auth/token';
const valid = { iss: 'client-1', sub: 'client-1', aud: tokenUrl, exp: now + 240, jti: 'a' };

describe('assertionClaimProblem', () => {
  it.each([
    ['valid claims', {}, undefined],
    ['aud as an array holding the token URL', { aud: ['other', tokenUrl] }, undefined],
    ['exp exactly 5 minutes ahead', { exp: now + 300 }, undefined],
    ['iss of another client', { iss: 'client-2' }, 'iss and sub must both be the client_id'],
    ['sub of another client', { sub: 'client-2' }, 'iss and sub must both be the client_id'],
    ['wrong aud', { aud: 'https://baton.example/fhir' }, `aud must be the token endpoint ${tokenUrl}`],
    ['no exp', { exp: undefined }, 'exp is required'],
    ['exp now', { exp: now }, 'the assertion has expired'],
    ['exp 10 minutes ahead', { exp: now + 600 }, 'exp must be at most 5 minutes in the future'],
    ['no jti', { jti: undefined }, 'jti is required'],
    ['empty jti', { jti: '' }, 'jti is required'],
  ])('%s → %s', (_, override, expected) => {
    expect(assertionClaimProblem({ ...valid, ...override }, { clientId: 'client-1', tokenUrl, now })).toBe(expected);
  });
});
