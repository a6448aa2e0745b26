import { readFileSync } from 'node:fs';
import { validateResource } from '@medplum/core';
import type { CapabilityStatement, CapabilityStatementRestResource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capabilityStatement } from '../../src/fhir/capability-statement.ts';
import { getAllSearchParameters, getResourceTypes } from '../../src/fhir/definitions.ts';
import { BASE_URL, body, startBaton, type TestBaton } from '../support/baton.ts';
import { buildHrexPackages, HAS_HREX, HREX_COVERAGE, type HrexPackages } from '../support/hrex-package.ts';

const PACKAGE = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };

let baton: TestBaton;
let statement: CapabilityStatement;
let metadata: Response;
beforeAll(async () => {
  baton = await startBaton();
  metadata = await baton.request('/fhir/metadata');
  statement = await body<CapabilityStatement>(metadata.clone());
});
afterAll(() => baton.close());

const resourceOf = (type: string): CapabilityStatementRestResource => {
  const resource = statement.rest?.[0].resource?.find((r) => r.type === type);
  if (!resource) throw new Error(`${type} is not in the CapabilityStatement`);
  return resource;
};

describe('GET /fhir/metadata', () => {
  it('answers 200 with a CapabilityStatement as application/fhir+json', () => {
    expect(metadata.status).toBe(200);
    expect(metadata.headers.get('content-type')).toContain('application/fhir+json');
    expect(statement.resourceType).toBe('CapabilityStatement');
  });

  it('is a valid R4 CapabilityStatement', () => {
    const errors = validateResource(statement).filter((i) => i.severity === 'error');
    expect(errors).toEqual([]);
  });

  it('describes this instance: FHIR 4.0.1, JSON only, software and base URL', () => {
    expect(statement).toMatchObject({
      status: 'active',
      kind: 'instance',
      fhirVersion: '4.0.1',
      format: ['json', 'application/fhir+json'],
      patchFormat: ['application/json-patch+json'],
      software: { name: PACKAGE.name, version: PACKAGE.version },
      implementation: { url: BASE_URL },
    });
    expect(JSON.stringify([statement.format, statement.patchFormat])).not.toMatch(/xml/i);
  });

  it('claims Bulk Data export (system, Patient, Group) as the IG names it, $member-match, $everything and $verify, and no messaging or documents', () => {
    expect(statement.rest).toHaveLength(1);
    const rest = statement.rest?.[0];
    expect(rest?.mode).toBe('server');
    expect(statement.instantiates).toEqual(['http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data']);
    expect(rest?.operation).toEqual([{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' }]);
    expect(rest?.resource?.filter((r) => r.operation).map((r) => [r.type, r.operation])).toEqual([
      ['AuditEvent', [{ name: 'verify', definition: 'urn:baton:operation:audit-verify' }]],
      [
        'Group',
        [
          { name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export' },
          { name: 'bulk-member-match', definition: 'http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch' },
          { name: 'davinci-data-export', definition: 'http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export' },
        ],
      ],
      [
        'Patient',
        [
          { name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export' },
          { name: 'member-match', definition: 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match' },
          { name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' },
        ],
      ],
      [
        'Subscription',
        [
          { name: 'status', definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status' },
          { name: 'events', definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events' },
        ],
      ],
    ]);
    expect(statement.messaging).toBeUndefined();
    expect(statement.document).toBeUndefined();
  });

  it('declares SMART on FHIR security with the token endpoint (oauth-uris), and is served without a token', async () => {
    const security = statement.rest?.[0].security;
    expect(security?.cors).toBe(true);
    expect(security?.service?.[0].coding).toEqual([{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }]);
    const oauth = security?.extension?.find((e) => e.url === 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris');
    expect(oauth?.extension).toEqual([{ url: 'token', valueUri: `${new URL(BASE_URL).origin}/auth/token` }]);
    expect((await baton.request('/fhir/metadata', { token: null })).status).toBe(200);
  });

  it('offers transaction, batch and system history, and no system search', () => {
    expect(statement.rest?.[0].interaction?.map((i) => i.code).sort()).toEqual(['batch', 'history-system', 'transaction']);
  });

  it('lists every R4 resource type once, each with its base profile', () => {
    const resources = statement.rest?.[0].resource ?? [];
    expect(resources.map((r) => r.type)).toEqual([...getResourceTypes()]);
    expect(resources.every((r) => r.profile === `http://hl7.org/fhir/StructureDefinition/${r.type}`)).toBe(true);
  });

  it('gives Patient every interaction Baton implements, with its versioning and conditional behaviour', () => {
    const patient = resourceOf('Patient');
    expect(patient.interaction?.map((i) => i.code)).toEqual(['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type']);
    expect(patient).toMatchObject({
      versioning: 'versioned-update',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: true,
      conditionalRead: 'not-supported',
      conditionalUpdate: true,
      conditionalDelete: 'single',
      referencePolicy: ['literal', 'local'],
    });
  });

  it('lists Patient search parameters with their R4 definitions, identifier among them', () => {
    const params = resourceOf('Patient').searchParam ?? [];
    expect(params).toContainEqual({ name: 'identifier', definition: 'http://hl7.org/fhir/SearchParameter/Patient-identifier', type: 'token', documentation: 'A patient identifier' });
    expect(params).toContainEqual(expect.objectContaining({ name: '_lastUpdated', definition: 'http://hl7.org/fhir/SearchParameter/Resource-lastUpdated', type: 'date' }));
    // Shared parameters keep only the line of their multi-resource description that concerns Patient.
    expect(params.find((p) => p.name === 'birthdate')?.documentation).toBe("The patient's date of birth");
  });

  it('claims no search parameter that cannot be indexed (no FHIRPath expression, or special)', () => {
    const names = new Set(statement.rest?.[0].resource?.flatMap((r) => r.searchParam?.map((p) => p.name) ?? []));
    for (const name of ['_text', '_content', '_query', 'near']) expect(names.has(name)).toBe(false);
  });

  it('names, for every resource, only R4 SearchParameters, each once', () => {
    const urls = new Set(getAllSearchParameters().map((sp) => sp.url));
    for (const resource of statement.rest?.[0].resource ?? []) {
      const names = resource.searchParam?.map((p) => p.name) ?? [];
      expect(new Set(names).size, resource.type).toBe(names.length);
      expect(resource.searchParam?.filter((p) => !urls.has(p.definition as string)) ?? [], resource.type).toEqual([]);
    }
  });

  it('offers _include over Patient reference parameters and _revinclude from the resources that point at Patient', () => {
    const patient = resourceOf('Patient');
    expect(patient.searchInclude).toEqual(['Patient:general-practitioner', 'Patient:link', 'Patient:organization']);
    expect(patient.searchRevInclude).toEqual(expect.arrayContaining(['Observation:subject', 'Observation:patient', 'Coverage:beneficiary', 'Provenance:target']));
    expect(patient.searchRevInclude).not.toContain('Observation:performer:Device');
  });

  it('lists no supportedProfile when no profile package is loaded', () => {
    expect(statement.rest?.[0].resource?.filter((r) => r.supportedProfile)).toEqual([]);
  });

  it('is built once and served again as is', async () => {
    const again = await body<CapabilityStatement>(await baton.request('/fhir/metadata'));
    expect(again.date).toBe(statement.date);
    expect(capabilityStatement(BASE_URL, baton.validator.profiles)).toBe(capabilityStatement(BASE_URL, baton.validator.profiles));
  });

  it('honours _pretty', async () => {
    const pretty = await (await baton.request('/fhir/metadata?_pretty=true')).text();
    expect(pretty.startsWith('{\n  "resourceType": "CapabilityStatement"')).toBe(true);
  });
});

describe('every interaction the CapabilityStatement claims for Patient answers', () => {
  const patient = { resourceType: 'Patient', identifier: [{ system: 'urn:baton:capability', value: 'cap-1' }], name: [{ family: 'Claim' }] };
  const json = (value: unknown) => ({ json: value });
  const requests: Record<string, (id: string) => [string, RequestInit & { json?: unknown }]> = {
    read: (id) => [`/fhir/Patient/${id}`, {}],
    vread: (id) => [`/fhir/Patient/${id}/_history/1`, {}],
    update: (id) => [`/fhir/Patient/${id}`, { method: 'PUT', ...json({ ...patient, id, gender: 'other' }) }],
    patch: (id) => [`/fhir/Patient/${id}`, { method: 'PATCH', headers: { 'content-type': 'application/json-patch+json' }, body: JSON.stringify([{ op: 'add', path: '/active', value: true }]) }],
    'history-instance': (id) => [`/fhir/Patient/${id}/_history`, {}],
    'history-type': () => ['/fhir/Patient/_history', {}],
    create: () => ['/fhir/Patient', { method: 'POST', ...json(patient) }],
    'search-type': () => ['/fhir/Patient?identifier=urn:baton:capability|cap-1', {}],
    delete: (id) => [`/fhir/Patient/${id}`, { method: 'DELETE' }],
    transaction: () => ['/fhir', { method: 'POST', ...json({ resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'POST', url: 'Patient' }, resource: patient }] }) }],
    batch: () => ['/fhir', { method: 'POST', ...json({ resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Patient/_history' } }] }) }],
    'history-system': () => ['/fhir/_history', {}],
  };

  it('with a 2xx answer, in the order a client would use them', async () => {
    const created = await body(await baton.request('/fhir/Patient', { method: 'POST', json: patient }));
    const claimed = [...(resourceOf('Patient').interaction ?? []), ...(statement.rest?.[0].interaction ?? [])].map((i) => i.code as string);
    const order = Object.keys(requests);
    const answers: Record<string, number> = {};
    for (const code of [...claimed].sort((a, b) => order.indexOf(a) - order.indexOf(b))) {
      const request = requests[code];
      expect(request, `no check for the claimed interaction ${code}`).toBeDefined();
      const [path, init] = request(created.id);
      answers[code] = (await baton.request(path, init)).status;
    }
    expect(Object.entries(answers).filter(([, status]) => status < 200 || status > 299)).toEqual([]);
  });

  it('including the conditional create, update and single delete it claims', async () => {
    const condition = 'identifier=urn:baton:capability|cond-1';
    const conditional = { ...patient, identifier: [{ system: 'urn:baton:capability', value: 'cond-1' }] };
    const created = await baton.request('/fhir/Patient', { method: 'POST', json: conditional, headers: { 'if-none-exist': condition } });
    const again = await baton.request('/fhir/Patient', { method: 'POST', json: conditional, headers: { 'if-none-exist': condition } });
    const updated = await baton.request(`/fhir/Patient?${condition}`, { method: 'PUT', json: { ...conditional, active: false } });
    const deleted = await baton.request(`/fhir/Patient?${condition}`, { method: 'DELETE' });
    expect([created.status, again.status, updated.status, deleted.status]).toEqual([201, 200, 200, 204]);
  });
});

describe.skipIf(!HAS_HREX)('with the HRex package loaded (from ../shared/fixtures)', () => {
  let hrex: HrexPackages;
  let profiled: TestBaton;
  beforeAll(async () => {
    hrex = buildHrexPackages();
    profiled = await startBaton({ profilePackages: [hrex.tgz] });
  });
  afterAll(async () => {
    await profiled?.close();
    hrex?.remove();
  });

  it('lists the loaded profiles as supportedProfile of their resource types, and is still valid', async () => {
    const withProfiles = await body<CapabilityStatement>(await profiled.request('/fhir/metadata'));
    const supported = Object.fromEntries((withProfiles.rest?.[0].resource ?? []).filter((r) => r.supportedProfile).map((r) => [r.type, r.supportedProfile]));
    expect(supported).toEqual({
      Consent: ['http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-consent'],
      Coverage: [HREX_COVERAGE],
      Parameters: [
        'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-parameters-member-match-in',
        'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-parameters-member-match-out',
      ],
      Patient: ['http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-patient-demographics'],
    });
    expect(validateResource(withProfiles).filter((i) => i.severity === 'error')).toEqual([]);
  });
});
