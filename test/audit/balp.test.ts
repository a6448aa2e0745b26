import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { validateResource } from '@medplum/core';
import type { AuditEvent, AuditEventAgent } from '@medplum/fhirtypes';
import { beforeAll, describe, expect, it } from 'vitest';
import { toAuditEvent } from '../../src/audit/balp.ts';
import type { AuditAction, AuditInteraction, AuditRecord } from '../../src/audit/record.ts';
import { loadDefinitions } from '../../src/fhir/definitions.ts';

const FIXTURES = new URL('../../../shared/fixtures/audit/', import.meta.url);
const BALP = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition/';
const OAUTH_MINIMAL = `${BALP}IHE.BasicAudit.OAUTHaccessTokenUse.Minimal`;
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const SERVER = 'https://baton.example.org/fhir';

beforeAll(() => loadDefinitions());

const errorsOf = (event: AuditEvent) => validateResource(event).filter((i) => i.severity === 'error');

function record(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: '3f1c9a52-6a4e-4f0e-9d55-0b6f1d2a7c11',
    recorded: '2025-03-04T10:11:12.345Z',
    interaction: 'read',
    action: 'R',
    outcome: '0',
    httpStatus: 200,
    caller: { clientId: 'partner-payer-a', kind: 'partner', tokenId: '0b7e2f1c-43a1-4d2e-9a55-1c2d3e4f5a6b' },
    sourceAddress: '203.0.113.7',
    requestId: 'c0ffee00-1234-4abc-8def-0123456789ab',
    server: SERVER,
    resource: { type: 'Coverage', id: 'cov-1' },
    patient: 'pat-1',
    ...overrides,
  };
}

const codes = (agent: AuditEventAgent | undefined) => agent?.type?.coding?.map((c) => `${c.system}#${c.code}`);
const agentOfType = (event: AuditEvent, system: string, code: string) =>
  event.agent.find((a) => a.type?.coding?.some((c) => c.system === system && c.code === code));
const entityRoles = (event: AuditEvent) =>
  (event.entity ?? []).map((e) => `${e.type?.code ?? '-'}/${e.role?.code ?? '-'}`).sort();

/** Every action Baton's classifier gives each interaction (src/audit/classify.ts). */
const ACTIONS: Record<AuditInteraction, AuditAction> = {
  read: 'R',
  vread: 'R',
  'history-instance': 'R',
  'history-type': 'E',
  'history-system': 'E',
  'search-type': 'E',
  create: 'C',
  update: 'U',
  patch: 'U',
  delete: 'D',
  batch: 'E',
  transaction: 'E',
  capabilities: 'R',
  operation: 'E',
  token: 'E',
};

describe.skipIf(!existsSync(FIXTURES))('the BALP published examples (needs ../shared/fixtures/audit)', () => {
  const fixture = (name: string) => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as AuditEvent;

  /**
   * The server-side examples, as Baton's record of the same request. BALP's human user agent
   * (IRCP/AUT/INF) has no counterpart in a system-to-system exchange: there the requestor is the
   * access token's agent, so every record carries a token.
   */
  const CASES: Record<string, { interaction: AuditInteraction; resource: AuditRecord['resource']; patient?: string }> = {
    'balp-AuditEvent-ex-auditBasicCreateServer.json': { interaction: 'create', resource: { type: 'List', id: 'ex-list' }, patient: 'ex-patient' },
    'balp-AuditEvent-ex-auditBasicUpdate1.json': { interaction: 'update', resource: { type: 'List', id: 'ex-list' }, patient: 'ex-patient' },
    'balp-AuditEvent-ex-auditBasicDeleteServer.json': { interaction: 'delete', resource: { type: 'List', id: 'ex-list' }, patient: 'ex-patient' },
    'balp-AuditEvent-ex-auditBasicReadServer.json': { interaction: 'read', resource: { type: 'List', id: 'ex-list' }, patient: 'ex-patient' },
    'balp-AuditEvent-ex-auditBasicReadNoPatient.json': { interaction: 'read', resource: { type: 'MeasureReport', id: 'ex-measurereport' } },
    'balp-AuditEvent-ex-auditBasicReadOServerMin.json': { interaction: 'read', resource: { type: 'List', id: 'ex-list' }, patient: 'ex-patient' },
    'balp-AuditEvent-ex-auditBasicQueryGetServer.json': { interaction: 'search-type', resource: { type: 'Observation' }, patient: 'ex-patient' },
  };
  /** Examples of patterns Baton does not emit through toAuditEvent, and why. */
  const NOT_EMITTED: Record<string, string> = {
    'balp-AuditEvent-ex-auditAuthZconsent-deny.json': 'a consent decision by an authorization server (DCM 110113 Security Alert); Baton records the refused request itself',
  };

  it('covers every BALP example in the fixtures, or says why not', () => {
    const present = readdirSync(FIXTURES).filter((f) => f.startsWith('balp-AuditEvent-'));
    expect(present.sort()).toEqual([...Object.keys(CASES), ...Object.keys(NOT_EMITTED)].sort());
  });

  /** Baton's record of the request the example describes, with the values the example carries. */
  function recordFor(example: AuditEvent, c: (typeof CASES)[string]): AuditRecord {
    const clientNetwork = example.agent.find((a) => a.network?.type === '2')?.network;
    const serverNetwork = example.agent.find((a) => a.network?.type === '5')?.network;
    const oauth = agentOfType(example, 'https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes', 'UserOauthAgent');
    const query = example.entity?.find((e) => e.role?.code === '24')?.query;
    const requestId = example.entity?.find((e) => e.type?.code === 'XrequestId')?.what?.identifier?.value;
    return {
      id: example.id as string,
      recorded: example.recorded,
      interaction: c.interaction,
      action: ACTIONS[c.interaction],
      outcome: '0',
      httpStatus: c.interaction === 'create' ? 201 : 200,
      caller: { clientId: 'myMachine.example.org', kind: 'partner', tokenId: oauth?.policy?.[0] ?? 'C187CC480FAC40A0936902D8BC324F5F' },
      sourceAddress: clientNetwork?.address,
      requestId: requestId ?? '76d148b6-586d-11ec-bf63-0242ac130002',
      server: serverNetwork?.address as string,
      resource: c.resource,
      patient: c.patient,
      query: query === undefined ? undefined : Buffer.from(query, 'base64').toString('utf8'),
    };
  }

  /** restful-interaction is a hierarchy: BALP's examples use the parent `search`, Baton the precise `search-type`. */
  const sameInteraction = (ours: string | undefined, theirs: string | undefined) =>
    ours === theirs || (theirs === 'search' && ours === 'search-type');

  describe.each(Object.entries(CASES))('%s', (name, c) => {
    const example = fixture(name);
    const ours = toAuditEvent(recordFor(example, c));

    it('is a valid R4 AuditEvent', () => {
      expect(errorsOf(ours)).toEqual([]);
    });

    it('has the example type, subtype, action and outcome', () => {
      expect(ours.type).toMatchObject({ system: example.type.system, code: example.type.code });
      expect(ours.subtype?.map((s) => s.system)).toEqual(example.subtype?.map((s) => s.system));
      expect(sameInteraction(ours.subtype?.[0].code, example.subtype?.[0].code)).toBe(true);
      expect(ours.action).toBe(example.action);
      expect(ours.outcome).toBe(example.outcome);
    });

    it('claims at least the profiles the example claims', () => {
      expect(ours.meta?.profile).toEqual(expect.arrayContaining(example.meta?.profile ?? []));
    });

    it('gives the client and the server the example agent types and requestor flags', () => {
      for (const networkType of ['2', '5']) {
        const theirs = example.agent.find((a) => a.network?.type === networkType);
        const mine = ours.agent.find((a) => a.network?.type === networkType);
        expect(codes(mine)).toEqual(codes(theirs));
        expect(mine?.requestor).toBe(theirs?.requestor);
      }
      // Exactly one agent asked: the example's user, Baton's token agent.
      expect(ours.agent.filter((a) => a.requestor)).toHaveLength(example.agent.filter((a) => a.requestor).length);
      expect(codes(ours.agent.find((a) => a.requestor))).toEqual([`https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes#UserOauthAgent`]);
    });

    it('has the example entities (type and role), with the X-Request-Id', () => {
      const withoutRequestId = (roles: string[]) => roles.filter((r) => r !== 'XrequestId/-');
      expect(withoutRequestId(entityRoles(ours))).toEqual(withoutRequestId(entityRoles(example)));
      expect(entityRoles(ours)).toContain('XrequestId/-');
    });

    it('records a query exactly as the example does (the same base64)', () => {
      const theirs = example.entity?.find((e) => e.role?.code === '24')?.query;
      expect(ours.entity?.find((e) => e.role?.code === '24')?.query).toBe(theirs);
    });
  });

  it('puts the token id where ReadOServerMin does, prefixed as OAUTHaccessTokenUse.Minimal requires', () => {
    const example = fixture('balp-AuditEvent-ex-auditBasicReadOServerMin.json');
    const ours = toAuditEvent(recordFor(example, CASES['balp-AuditEvent-ex-auditBasicReadOServerMin.json']));
    const agent = agentOfType(ours, 'https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes', 'UserOauthAgent');
    expect(agent?.policy).toEqual([`urn:ietf:params:oauth:jti:${example.agent[0].policy?.[0]}`]);
    expect(agent?.network).toBeUndefined();
  });
});

describe('toAuditEvent', () => {
  describe.each(Object.entries(ACTIONS))('%s', (interaction, action) => {
    const base = record({
      interaction: interaction as AuditInteraction,
      action,
      operation: interaction === 'operation' ? 'http://hl7.org/fhir/OperationDefinition/Patient-everything' : undefined,
      query: `GET ${SERVER}/Coverage?patient=pat-1`,
    });

    it.each([
      ['succeeded', base],
      ['failed', { ...base, outcome: '4' as const, httpStatus: 403, outcomeDescription: 'Scope does not allow this interaction' }],
      ['had no caller (401)', { ...base, outcome: '4' as const, httpStatus: 401, caller: undefined, outcomeDescription: 'Bearer token required' }],
      ['came from an unknown address', { ...base, sourceAddress: undefined }],
    ])('is a valid R4 AuditEvent when it %s', (_, r) => {
      const event = toAuditEvent(r);
      expect(errorsOf(event)).toEqual([]);
      expect(event).not.toHaveProperty('text');
    });
  });

  it('uses audit-event-type rest and the restful-interaction subtype for FHIR interactions', () => {
    const event = toAuditEvent(record({ interaction: 'vread', resource: { type: 'Coverage', id: 'cov-1', versionId: 3 } }));
    expect(event.type).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' });
    expect(event.subtype).toEqual([{ system: 'http://hl7.org/fhir/restful-interaction', code: 'vread', display: 'vread' }]);
    expect(event.entity?.[0].what).toEqual({ reference: 'Coverage/cov-1/_history/3' });
  });

  it.each([
    ['read', 'R', 'Read'],
    ['vread', 'R', 'Read'],
    ['search-type', 'E', 'Query'],
    ['create', 'C', 'Create'],
    ['update', 'U', 'Update'],
    ['patch', 'U', 'Update'],
    ['delete', 'D', 'Delete'],
  ] as const)('claims the BALP profile of a successful %s, its Patient variant when a member is concerned', (interaction, action, profile) => {
    const query = `GET ${SERVER}/Coverage?beneficiary=pat-1`;
    const resource = interaction === 'search-type' ? { type: 'Coverage' } : { type: 'Coverage', id: 'cov-1' };
    const withPatient = toAuditEvent(record({ interaction, action, resource, query }));
    const without = toAuditEvent(record({ interaction, action, resource, query, patient: undefined }));
    expect(withPatient.meta?.profile).toEqual([`${BALP}IHE.BasicAudit.Patient${profile}`, OAUTH_MINIMAL]);
    expect(without.meta?.profile).toEqual([`${BALP}IHE.BasicAudit.${profile}`, OAUTH_MINIMAL]);
    expect(withPatient.entity?.filter((e) => e.type?.code === '1')).toEqual([
      { what: { reference: 'Patient/pat-1' }, type: expect.objectContaining({ code: '1' }), role: expect.objectContaining({ system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1' }) },
    ]);
    expect(without.entity?.some((e) => e.type?.code === '1')).toBe(false);
  });

  it.each(['history-instance', 'history-type', 'history-system', 'capabilities', 'batch', 'transaction', 'operation'] as const)(
    'claims no RESTful BALP profile for %s, which BALP does not cover',
    (interaction) => {
      expect(toAuditEvent(record({ interaction, action: ACTIONS[interaction] })).meta?.profile).toEqual([OAUTH_MINIMAL]);
    },
  );

  it('claims a RESTful profile only for what conforms to it: a success, from a known client at a known address', () => {
    const claims = (r: AuditRecord) => toAuditEvent(r).meta?.profile ?? [];
    expect(claims(record({ outcome: '4', outcomeDescription: 'Not found' }))).toEqual([OAUTH_MINIMAL]);
    expect(claims(record({ sourceAddress: undefined }))).toEqual([OAUTH_MINIMAL]);
    expect(claims(record({ interaction: 'search-type', action: 'E', resource: { type: 'Coverage' } }))).toEqual([OAUTH_MINIMAL]);
    expect(claims(record({ caller: { clientId: 'operator', kind: 'operator' } }))).toEqual([`${BALP}IHE.BasicAudit.PatientRead`]);
    expect(toAuditEvent(record({ caller: undefined, outcome: '4' }))).not.toHaveProperty('meta');
  });

  it('records the access token as OAUTHaccessTokenUse.Minimal: the jti as policy, on the requesting agent', () => {
    const event = toAuditEvent(record());
    const oauth = agentOfType(event, 'https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes', 'UserOauthAgent');
    expect(oauth).toEqual({
      type: { coding: [expect.objectContaining({ code: 'UserOauthAgent' })] },
      who: { identifier: { system: 'https://baton.example.org', value: 'partner-payer-a' } },
      requestor: true,
      policy: ['urn:ietf:params:oauth:jti:0b7e2f1c-43a1-4d2e-9a55-1c2d3e4f5a6b'],
    });
    const client = agentOfType(event, DCM, '110152');
    expect(client).toEqual({
      type: { coding: [expect.objectContaining({ code: '110152' })] },
      who: { identifier: { system: 'https://baton.example.org', value: 'partner-payer-a' } },
      requestor: false,
      network: { address: '203.0.113.7', type: '2' },
    });
  });

  it('makes the client the requestor when no token is involved', () => {
    const event = toAuditEvent(record({ caller: { clientId: 'operator', kind: 'operator' } }));
    expect(event.agent.filter((a) => a.requestor)).toEqual([expect.objectContaining({ who: { identifier: { system: 'https://baton.example.org', value: 'operator' } } })]);
    expect(event.agent.some((a) => a.policy)).toBe(false);
  });

  it('identifies the server by its base URL, as agent, observer and site', () => {
    const event = toAuditEvent(record());
    const server = agentOfType(event, DCM, '110153');
    expect(server).toMatchObject({ who: { identifier: { system: 'urn:ietf:rfc:3986', value: SERVER } }, requestor: false, network: { address: SERVER, type: '5' } });
    expect(event.source).toEqual({
      site: 'baton.example.org',
      observer: { identifier: { system: 'urn:ietf:rfc:3986', value: SERVER } },
      type: [expect.objectContaining({ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4' })],
    });
  });

  it('records a failure with its outcome and description, a success without one', () => {
    const failed = toAuditEvent(record({ outcome: '8', httpStatus: 500, outcomeDescription: 'Database unavailable' }));
    expect(failed).toMatchObject({ outcome: '8', outcomeDesc: 'Database unavailable' });
    expect(toAuditEvent(record({ outcomeDescription: 'ignored' }))).not.toHaveProperty('outcomeDesc');
  });

  it('records a 401 with an anonymous client known only by its address', () => {
    const event = toAuditEvent(record({ caller: undefined, outcome: '4', httpStatus: 401, outcomeDescription: 'Bearer token required', sourceAddress: '2001:db8::7' }));
    expect(event.agent).toHaveLength(2);
    expect(event.agent[0]).toEqual({ type: { coding: [expect.objectContaining({ code: '110152' })] }, requestor: true, network: { address: '2001:db8::7', type: '2' } });
    expect(event.outcomeDesc).toBe('Bearer token required');
  });

  it('names a client known by host name with network type 1', () => {
    expect(toAuditEvent(record({ sourceAddress: 'gateway.partner.example' })).agent[0].network).toEqual({ address: 'gateway.partner.example', type: '1' });
  });

  it('gives an operation the operation subtype and its OperationDefinition canonical', () => {
    const canonical = 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match';
    const event = toAuditEvent(record({ interaction: 'operation', action: 'E', operation: canonical, resource: { type: 'Patient' }, patient: undefined, query: `POST ${SERVER}/Patient/$member-match` }));
    expect(event.subtype).toEqual([
      { system: 'http://hl7.org/fhir/restful-interaction', code: 'operation', display: 'operation' },
      { system: 'urn:ietf:rfc:3986', code: canonical },
    ]);
    expect(codes(event.agent[0])).toEqual([`${DCM}#110153`]);
    expect(codes(event.agent[1])).toEqual([`${DCM}#110152`]);
    expect(entityRoles(event)).toEqual(['2/24', 'XrequestId/-']);
  });

  it('records a token request as DICOM User Authentication / Login by the client application', () => {
    const event = toAuditEvent(record({
      interaction: 'token',
      action: 'E',
      caller: { clientId: 'partner-payer-a', kind: 'partner' },
      resource: undefined,
      patient: undefined,
      query: 'POST https://baton.example.org/auth/token\ngrant_type=client_credentials&scope=system%2FPatient.rs',
    }));
    expect(errorsOf(event)).toEqual([]);
    expect(event.type).toEqual({ system: DCM, code: '110114', display: 'User Authentication' });
    expect(event.subtype).toEqual([{ system: DCM, code: '110122', display: 'Login' }]);
    expect(event.action).toBe('E');
    expect(codes(event.agent[0])).toEqual([`${DCM}#110150`]);
    expect(event.agent[0]).toMatchObject({ who: { identifier: { value: 'partner-payer-a' } }, requestor: true });
    expect(codes(event.agent[1])).toEqual(['https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes#AuthzOauthService']);
    expect(event.source.type?.[0].code).toBe('6');
    expect(entityRoles(event)).toEqual(['2/24', 'XrequestId/-']);
    expect(event).not.toHaveProperty('meta');
  });

  it('names the delete client Application and the server custodian (BALP Delete)', () => {
    const event = toAuditEvent(record({ interaction: 'delete', action: 'D' }));
    expect(codes(event.agent[0])).toEqual([`${DCM}#110150`]);
    expect(codes(event.agent[1])).toEqual(['http://terminology.hl7.org/CodeSystem/provenance-participant-type#custodian']);
  });

  it('carries the X-Request-Id as BALP XrequestId entity', () => {
    expect(toAuditEvent(record()).entity?.at(-1)).toEqual({
      what: { identifier: { value: 'c0ffee00-1234-4abc-8def-0123456789ab' } },
      type: { system: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType', code: 'XrequestId' },
    });
  });

  it('keeps a query only base64-encoded: demographics in it appear nowhere else', () => {
    const query = `GET ${SERVER}/Patient?family=Okonkwo-Lindqvist&birthdate=1961-04-12&address-postalcode=02139`;
    const event = toAuditEvent(record({ interaction: 'search-type', action: 'E', resource: { type: 'Patient' }, query }));
    const json = JSON.stringify(event);
    for (const phi of ['Okonkwo', 'Lindqvist', '1961-04-12', '02139', 'family=']) expect(json).not.toContain(phi);
    const queries = (event.entity ?? []).filter((e) => e.query !== undefined);
    expect(queries).toHaveLength(1);
    expect(Buffer.from(queries[0].query as string, 'base64').toString('utf8')).toBe(query);
    expect(queries[0]).not.toHaveProperty('description');
  });

  it('carries no free text: no narrative, names, alternative ids or descriptions', () => {
    const keys = new Set<string>();
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value && typeof value === 'object') {
        for (const [k, v] of Object.entries(value)) {
          keys.add(k);
          walk(v);
        }
      }
    };
    for (const interaction of Object.keys(ACTIONS) as AuditInteraction[]) {
      walk(toAuditEvent(record({ interaction, action: ACTIONS[interaction], query: 'GET x', outcome: '4', outcomeDescription: 'refused' })));
    }
    for (const key of ['text', 'name', 'altId', 'description', 'detail']) expect(keys).not.toContain(key);
    // Displays appear only on codings, never on a reference (who, observer, what).
    const references = (event: AuditEvent) => [...event.agent.map((a) => a.who), event.source.observer, ...(event.entity ?? []).map((e) => e.what)];
    expect(references(toAuditEvent(record())).every((r) => r === undefined || !('display' in r))).toBe(true);
  });

  it('leaves a query out of interactions whose BALP pattern has no query entity', () => {
    for (const interaction of ['read', 'vread', 'create', 'update', 'patch', 'delete', 'capabilities', 'batch', 'transaction'] as const) {
      const event = toAuditEvent(record({ interaction, action: ACTIONS[interaction], query: `GET ${SERVER}/Coverage/cov-1` }));
      expect(event.entity?.some((e) => e.query !== undefined)).toBe(false);
    }
  });
});
