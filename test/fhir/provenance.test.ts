import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/auth/clients.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/** Issue 4, "Provenance": X-Provenance on creates and updates, Provenance for partners' writes, and Provenance search. */

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(async () => {
  await baton?.close();
});

const TRANSMITTER = { system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type', code: 'transmitter' };
const header = (provenance: object) => ({ 'x-provenance': JSON.stringify(provenance) });
const provenancesOf = async (target: string) => (await body(await baton.request(`/fhir/Provenance?target=${target}`))).entry?.map((e: { resource: any }) => e.resource) ?? [];

describe('X-Provenance', () => {
  it('stores the client’s Provenance with the created version as its target, found by target and by _revinclude', async () => {
    const given = { resourceType: 'Provenance', recorded: '2024-05-01T10:00:00Z', agent: [{ type: { coding: [TRANSMITTER] }, who: { identifier: { system: 'http://www.naic.org', value: '11111' } } }] };
    const created = await baton.request('/fhir/Patient', { method: 'POST', headers: header(given), json: { resourceType: 'Patient', gender: 'male' } });
    expect(created.status).toBe(201);
    const { id } = await body(created);
    const [provenance, ...others] = await provenancesOf(`Patient/${id}`);
    expect(others).toEqual([]);
    expect(provenance.target).toEqual([{ reference: `Patient/${id}/_history/1` }]);
    expect(provenance.recorded).toBe('2024-05-01T10:00:00Z');
    expect(provenance.agent[0].type.coding[0].code).toBe('transmitter');
    expect(provenance.activity.coding[0].code).toBe('CREATE');
    const withProvenance = await body(await baton.request(`/fhir/Patient?_id=${id}&_revinclude=Provenance:target`));
    expect(withProvenance.entry.map((e: { resource: { resourceType: string } }) => e.resource.resourceType)).toEqual(['Patient', 'Provenance']);
    expect((await body(await baton.request(`/fhir/Provenance?patient=${id}&agent-type=transmitter`))).entry).toHaveLength(1);
  });

  it('names the client’s Organization as the agent when the client names none, and targets the updated version', async () => {
    await baton.request('/fhir/Patient/prov-upd', { method: 'PUT', json: { resourceType: 'Patient', id: 'prov-upd' } });
    const updated = await baton.request('/fhir/Patient/prov-upd', { method: 'PUT', headers: header({ resourceType: 'Provenance' }), json: { resourceType: 'Patient', id: 'prov-upd', active: true } });
    expect(updated.status).toBe(200);
    const [provenance] = await provenancesOf('Patient/prov-upd');
    expect(provenance.target).toEqual([{ reference: 'Patient/prov-upd/_history/2' }]);
    expect(provenance.activity.coding[0].code).toBe('UPDATE');
    expect(provenance.agent[0].who.identifier).toEqual({ system: 'urn:baton:test', value: 'harness' });
  });

  it.each([
    ['not JSON', '{not json'],
    ['not a Provenance', JSON.stringify({ resourceType: 'Patient' })],
    ['a target elsewhere', JSON.stringify({ resourceType: 'Provenance', target: [{ reference: 'Patient/someone-else' }] })],
    ['an invalid Provenance', JSON.stringify({ resourceType: 'Provenance', recorded: 'yesterday' })],
  ])('refuses %s with 400 and writes nothing', async (_what, value) => {
    const response = await baton.request('/fhir/Patient/prov-bad', { method: 'PUT', headers: { 'x-provenance': value }, json: { resourceType: 'Patient', id: 'prov-bad' } });
    expect(response.status).toBe(400);
    expect((await body(response)).resourceType).toBe('OperationOutcome');
    expect((await baton.request('/fhir/Patient/prov-bad')).status).toBe(404);
  });
});

describe("partners' writes", () => {
  it('always carry a Provenance naming the partner’s Organization', async () => {
    const partner = await createClient(baton.db, {
      name: 'Writer Partner',
      kind: 'partner',
      organizationIdentifiers: [{ system: 'http://www.naic.org', value: '22222' }],
      jwks: { keys: [{ kty: 'EC', kid: 'k' }] },
      jwksUri: undefined,
      scopes: ['system/Organization.cruds'],
    });
    const token = await baton.token({ clientId: partner.client_id, kind: 'partner', scopes: ['system/Organization.cruds'], organization: [{ system: 'http://www.naic.org', value: '22222' }] });
    const created = await body(await baton.request('/fhir/Organization', { method: 'POST', json: { resourceType: 'Organization', name: 'Partner Clinic' }, token }));
    const [provenance] = await provenancesOf(`Organization/${created.id}`);
    expect(provenance.agent[0].who).toEqual({ type: 'Organization', identifier: { system: 'http://www.naic.org', value: '22222' } });
    expect((await body(await baton.request('/fhir/Provenance?agent:identifier=http://www.naic.org|22222'))).entry).toHaveLength(1);
  });

  it('leave no Provenance for internal writes without X-Provenance', async () => {
    const { id } = await body(await baton.request('/fhir/Organization', { method: 'POST', json: { resourceType: 'Organization', name: 'Internal' } }));
    expect(await provenancesOf(`Organization/${id}`)).toEqual([]);
  });
});
