import { describe, expect, it } from 'vitest';
import { parseEntry } from '../../src/fhir/bundle-entry.ts';
import { FhirError } from '../../src/fhir/errors.ts';

const BASE = 'https://payer.example.org/fhir';
const patient = { resourceType: 'Patient', id: '1' };
const patchBinary = (operations: unknown) => ({
  resourceType: 'Binary',
  contentType: 'application/json-patch+json',
  data: Buffer.from(JSON.stringify(operations)).toString('base64'),
});

describe('parseEntry', () => {
  it.each([
    ['GET', 'Patient/1', undefined, { interaction: 'read', type: 'Patient', id: '1' }],
    ['HEAD', 'Patient/1', undefined, { interaction: 'read', type: 'Patient', id: '1' }],
    ['GET', 'Patient/1/_history/2', undefined, { interaction: 'vread', type: 'Patient', id: '1', versionId: '2' }],
    ['GET', 'Patient?identifier=x', undefined, { interaction: 'search', type: 'Patient' }],
    ['GET', '_history', undefined, { interaction: 'history' }],
    ['GET', 'Patient/_history', undefined, { interaction: 'history', type: 'Patient' }],
    ['GET', 'Patient/1/_history', undefined, { interaction: 'history', type: 'Patient', id: '1' }],
    ['POST', 'Patient', patient, { interaction: 'create', type: 'Patient', resource: patient }],
    ['PUT', 'Patient/1', patient, { interaction: 'update', type: 'Patient', id: '1', resource: patient }],
    ['PUT', 'Patient?identifier=a|b', patient, { interaction: 'conditional-update', type: 'Patient', condition: 'identifier=a|b' }],
    ['PATCH', 'Patient/1', patchBinary([{ op: 'remove', path: '/active' }]), { interaction: 'patch', operations: [{ op: 'remove', path: '/active' }] }],
    ['DELETE', 'Patient/1', undefined, { interaction: 'delete', type: 'Patient', id: '1' }],
    ['DELETE', 'Patient?identifier=a|b', undefined, { interaction: 'conditional-delete', type: 'Patient', condition: 'identifier=a|b' }],
    ['GET', `${BASE}/Patient/1`, undefined, { interaction: 'read', type: 'Patient', id: '1' }],
    ['GET', '/Patient/1', undefined, { interaction: 'read', type: 'Patient', id: '1' }],
  ])('%s %s is %o', (method, url, resource, expected) => {
    expect(parseEntry({ resource, request: { method, url } }, 0, BASE).request).toMatchObject(expected);
  });

  it('keeps the url relative to the base for links, and the request options', () => {
    const entry = parseEntry({ fullUrl: 'urn:uuid:x', resource: patient, request: { method: 'POST', url: `${BASE}/Patient`, ifNoneExist: 'identifier=a|b' } }, 3, BASE);
    expect(entry).toMatchObject({ index: 3, method: 'POST', url: 'Patient', fullUrl: 'urn:uuid:x', request: { ifNoneExist: 'identifier=a|b' } });
    const read = parseEntry({ request: { method: 'GET', url: 'Patient/1?_elements=name', ifNoneMatch: 'W/"2"' } }, 0, BASE);
    expect(read).toMatchObject({ url: 'Patient/1?_elements=name', ifNoneMatch: 'W/"2"' });
  });

  it.each([
    ['an absolute url of another server', { request: { method: 'GET', url: 'https://other.example.org/fhir/Patient/1' } }, 'Bundle.entry[4].request.url'],
    ['a relative url of an unknown type', { request: { method: 'GET', url: 'patient/1' } }, 'Bundle.entry[4].request.url'],
    ['a trailing slash', { request: { method: 'GET', url: 'Patient/' } }, undefined],
    ['a version that is not a number', { request: { method: 'GET', url: 'Patient/1/_history/latest' } }, 'Bundle.entry[4].request.url'],
    ['a system search', { request: { method: 'GET', url: '?_id=1' } }, 'Bundle.entry[4].request.url'],
    ['a path below _history', { request: { method: 'GET', url: '_history/1' } }, 'Bundle.entry[4].request.url'],
    ['DELETE of a whole type', { request: { method: 'DELETE', url: 'Patient' } }, 'Bundle.entry[4].request.url'],
    ['PATCH of a type', { resource: patchBinary([]), request: { method: 'PATCH', url: 'Patient?identifier=x' } }, 'Bundle.entry[4].request.url'],
    ['a PATCH whose Binary is FHIRPath Patch', { resource: { ...patchBinary([]), contentType: 'application/fhir+json' }, request: { method: 'PATCH', url: 'Patient/1' } }, 'Bundle.entry[4].resource.contentType'],
    ['a method in lower case', { request: { method: 'get', url: 'Patient/1' } }, 'Bundle.entry[4].request.method'],
    ['a numeric fullUrl', { fullUrl: 7, request: { method: 'GET', url: 'Patient/1' } }, 'Bundle.entry[4].fullUrl'],
    ['a PUT body of another type', { resource: { resourceType: 'Observation' }, request: { method: 'PUT', url: 'Patient/1' } }, 'Bundle.entry[4].resource.resourceType'],
  ])('rejects %s with a 400 naming the element', (_case, entry, expression) => {
    let error: unknown;
    try {
      parseEntry(entry, 4, BASE);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(FhirError);
    expect((error as FhirError).status).toBe(400);
    if (expression) expect((error as FhirError).outcome.issue?.[0].expression).toContain(expression);
  });
});
