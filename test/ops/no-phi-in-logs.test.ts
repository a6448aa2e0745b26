import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoMembers, seedDemoData } from '../../src/seed/demo.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';
import { createClient } from '../../src/auth/clients.ts';
import { assertionFields, clientKeys, signAssertion } from '../auth/harness.ts';

/**
 * Issue 4, "Logs without PHI": a realistic flow over the demo members (searches by name and
 * birth date, reads, writes, failures that echo nothing, token requests), with everything the
 * app logs at debug level captured and scanned for the members' names, birth dates and ids.
 */

const [first, second, third] = demoMembers();
const DEMO_PHI = [
  ...[first, second, third].flatMap((m) => [m.names[0].family, m.names[0].given[0], m.birthDate, m.memberId]),
  'demo-patient-',
];

const lines: string[] = [];
const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
let baton: TestBaton;

beforeAll(async () => {
  baton = await startBaton({ logger });
  await seedDemoData(baton.ctx);
});
afterAll(async () => {
  await baton?.close();
});

describe('logs', () => {
  it('carry no names, birth dates or member ids through a realistic flow', async () => {
    const flow: [string, RequestInit & { json?: unknown; token?: string | null }][] = [
      [`/fhir/Patient?family=${first.names[0].family}&birthdate=${first.birthDate}`, {}],
      [`/fhir/Patient?identifier=${second.memberId}`, {}],
      ['/fhir/Patient/demo-patient-1', {}],
      ['/fhir/Patient/demo-patient-3/_history', {}],
      ['/fhir/ExplanationOfBenefit?patient=demo-patient-2&_include=ExplanationOfBenefit:patient', {}],
      ['/fhir/Patient/demo-patient-2', { method: 'PUT', json: { resourceType: 'Patient', id: 'demo-patient-2', name: [{ family: second.names[0].family }], birthDate: second.birthDate } }],
      ['/fhir/Patient', { method: 'POST', json: { resourceType: 'Patient', name: [{ family: third.names[0].family }], birthDate: `not ${third.birthDate}` } }],
      ['/fhir/Patient/demo-patient-1', { token: null }],
      ['/fhir/Patient/demo-patient-1', { token: await baton.token({ scopes: ['system/Organization.rs'] }) }],
      [`/fhir/Patient?family:exact=${third.names[0].given[0]}&unknown-param=${first.names[0].given[0]}`, { headers: { prefer: 'handling=strict' } }],
      ['/fhir', { method: 'POST', json: { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient', name: [{ family: first.names[0].family }], gender: first.memberId } }] } }],
    ];
    for (const [path, init] of flow) {
      const response = await baton.request(path, init);
      expect(response.status).toBeLessThan(500);
      await response.text();
    }
    const keys = await clientKeys();
    const { client_id: clientId } = await createClient(baton.db, {
      name: 'Logged Partner',
      kind: 'partner',
      organizationIdentifiers: [{ system: 'http://www.naic.org', value: '33333' }],
      jwks: { keys: [keys.publicJwk as Record<string, unknown>] },
      jwksUri: undefined,
      scopes: ['system/Patient.rs'],
    });
    const form = (assertion: string) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(assertionFields(assertion, 'system/Patient.rs')).toString() });
    const issued = await body(await baton.request('/auth/token', form(await signAssertion({ clientId, keys }))));
    expect(typeof issued.access_token).toBe('string');
    expect((await baton.request('/auth/token', form(`${first.names[0].family}.${first.birthDate}.${first.memberId}`))).status).toBe(401);
    expect(lines.length).toBeGreaterThan(10);
    const logged = lines.join('\n');
    for (const phi of DEMO_PHI) expect(logged, phi).not.toContain(phi);
  });
});
