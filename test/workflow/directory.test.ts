import type { Endpoint } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { DirectoryError, ENDPOINT_EXTENSION, endpointResource, partnerOf } from '../../src/workflow/directory.ts';
import { DEFAULT_RETRY_POLICY } from '../../src/workflow/retry-policy.ts';

const SETTINGS = { id: 'acme', baseUrl: 'https://acme.example/fhir/', tokenUrl: 'https://acme.example/token', clientId: 'baton' };

describe('partner directory entries', () => {
  it('reads back what endpointResource wrote, with defaults for what it left out', () => {
    const partner = partnerOf(endpointResource({ ...SETTINGS, capabilities: ['bulk'], retryPolicy: { maxAttempts: 4 }, organization: 'Organization/acme', adapter: 'lenient', timeoutMs: 5000 }));
    expect(partner.endpoint).toEqual({ id: 'acme', baseUrl: 'https://acme.example/fhir', tokenUrl: SETTINGS.tokenUrl, clientId: 'baton', scope: 'system/*.rs', keyId: 'default', adapter: 'lenient', timeoutMs: 5000 });
    expect(partner.capabilities).toEqual(['bulk']);
    expect(partner.organization).toBe('Organization/acme');
    expect(partner.retry.maxAttempts).toBe(4);
    const plain = partnerOf(endpointResource(SETTINGS));
    expect(plain.capabilities).toEqual(['single-member']);
    expect(plain.retry).toEqual(DEFAULT_RETRY_POLICY);
  });

  const broken = (change: (e: Endpoint) => Endpoint): Endpoint => change(endpointResource(SETTINGS));
  it.each([
    ['an inactive endpoint', broken((e) => ({ ...e, status: 'off' })), 'not active'],
    ['no token URL', broken((e) => ({ ...e, extension: e.extension!.filter((x) => x.url !== ENDPOINT_EXTENSION.tokenUrl) })), ENDPOINT_EXTENSION.tokenUrl],
    ['an unknown capability', broken((e) => ({ ...e, extension: [...e.extension!, { url: ENDPOINT_EXTENSION.capability, valueCode: 'fax' }] })), 'capabilities'],
    ['an invalid retry policy', broken((e) => ({ ...e, extension: [...e.extension!, { url: ENDPOINT_EXTENSION.retryPolicy, valueString: '{"maxAttempts": -1}' }] })), 'retry policy'],
    ['a retry policy that is not JSON', broken((e) => ({ ...e, extension: [...e.extension!, { url: ENDPOINT_EXTENSION.retryPolicy, valueString: '{' }] })), 'retry policy'],
  ])('refuses %s, saying what', (_case, endpoint, message) => {
    expect(() => partnerOf(endpoint)).toThrow(DirectoryError);
    expect(() => partnerOf(endpoint)).toThrow(message);
  });
});
