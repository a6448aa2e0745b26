import { isIP } from 'node:net';
import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding } from '@medplum/fhirtypes';
import { authUrls } from '../auth/smart-configuration.ts';
import type { AuditInteraction, AuditRecord } from './record.ts';

/**
 * Baton's audit record as an IHE BALP AuditEvent (https://profiles.ihe.net/ITI/BALP/): the
 * minimal pattern, so references, identifiers and codes only, never a name, a payload or a
 * narrative; the request itself appears only base64-encoded, as BALP records a query.
 */

const BALP = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition/';
const OAUTH_MINIMAL = `${BALP}IHE.BasicAudit.OAUTHaccessTokenUse.Minimal`;

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const RESTFUL_INTERACTION = 'http://hl7.org/fhir/restful-interaction';
const USER_AGENT_TYPES = 'https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes';
/** RFC 3986 URIs as codes and identifier values: the system FHIR uses for "this value is a URI". */
const URI = 'urn:ietf:rfc:3986';

const REST: Coding = { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' };
const USER_AUTHENTICATION: Coding = { system: DCM, code: '110114', display: 'User Authentication' };
const LOGIN: Coding = { system: DCM, code: '110122', display: 'Login' };

const SOURCE_ROLE: Coding = { system: DCM, code: '110153', display: 'Source Role ID' };
const DESTINATION_ROLE: Coding = { system: DCM, code: '110152', display: 'Destination Role ID' };
const APPLICATION: Coding = { system: DCM, code: '110150', display: 'Application' };
const CUSTODIAN: Coding = { system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'custodian', display: 'Custodian' };
const AUTHZ_SERVICE: Coding = { system: USER_AGENT_TYPES, code: 'AuthzOauthService', display: 'OAuth Authorization Server' };
const OAUTH_USER: Coding = { system: USER_AGENT_TYPES, code: 'UserOauthAgent', display: 'User OAuth Agent participant' };

const SECURITY_SOURCE = 'http://terminology.hl7.org/CodeSystem/security-source-type';
const APPLICATION_SERVER: Coding = { system: SECURITY_SOURCE, code: '4', display: 'Application Server' };
const SECURITY_SERVER: Coding = { system: SECURITY_SOURCE, code: '6', display: 'Security Server' };

const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const PERSON: Coding = { system: ENTITY_TYPE, code: '1', display: 'Person' };
const SYSTEM_OBJECT: Coding = { system: ENTITY_TYPE, code: '2', display: 'System Object' };
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const PATIENT_ROLE: Coding = { system: OBJECT_ROLE, code: '1', display: 'Patient' };
const DOMAIN_RESOURCE: Coding = { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' };
const QUERY_ROLE: Coding = { system: OBJECT_ROLE, code: '24', display: 'Query' };
const X_REQUEST_ID: Coding = { system: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType', code: 'XrequestId' };

/**
 * Which way the request goes, as DICOM/BALP name the two ends: a read sends data from the server
 * (Source) to the client (Destination); a query, a write or an operation sends the client's
 * request (Source) to the server (Destination) — BALP Query keeps this DICOM convention although
 * the results flow back; a delete names the client Application and the server the custodian
 * (BALP Delete); a token request names the client Application and the server the OAuth
 * authorization service (BALP IHE.IUA.71).
 */
type Flow = 'retrieve' | 'submit' | 'delete' | 'token';

const AGENT_TYPES: Record<Flow, { client: Coding; server: Coding }> = {
  retrieve: { client: DESTINATION_ROLE, server: SOURCE_ROLE },
  submit: { client: SOURCE_ROLE, server: DESTINATION_ROLE },
  delete: { client: APPLICATION, server: CUSTODIAN },
  token: { client: APPLICATION, server: AUTHZ_SERVICE },
};

interface InteractionShape {
  flow: Flow;
  /** The request is recorded as BALP's query entity (base64), for interactions whose parameters say what was asked. */
  query: boolean;
  /** The BALP profile a successful event conforms to, with the action it fixes; its Patient* variant when a member is concerned. */
  profile?: { name: 'Read' | 'Query' | 'Create' | 'Update' | 'Delete'; action: AuditRecord['action'] };
}

/**
 * BALP profiles cover read/vread (AllReadVS), search (AllSearchVS), create, update/patch
 * (AllUpdateVS) and delete; history, capabilities, batch, transaction and operations have none.
 * History carries _since/_at/_count like a search, so it is shaped as one.
 */
const SHAPES: Record<AuditInteraction, InteractionShape> = {
  read: { flow: 'retrieve', query: false, profile: { name: 'Read', action: 'R' } },
  vread: { flow: 'retrieve', query: false, profile: { name: 'Read', action: 'R' } },
  capabilities: { flow: 'retrieve', query: false },
  'search-type': { flow: 'submit', query: true, profile: { name: 'Query', action: 'E' } },
  'history-instance': { flow: 'submit', query: true },
  'history-type': { flow: 'submit', query: true },
  'history-system': { flow: 'submit', query: true },
  operation: { flow: 'submit', query: true },
  create: { flow: 'submit', query: false, profile: { name: 'Create', action: 'C' } },
  update: { flow: 'submit', query: false, profile: { name: 'Update', action: 'U' } },
  patch: { flow: 'submit', query: false, profile: { name: 'Update', action: 'U' } },
  batch: { flow: 'submit', query: false },
  transaction: { flow: 'submit', query: false },
  delete: { flow: 'delete', query: false, profile: { name: 'Delete', action: 'D' } },
  // IHE.IUA.71 records the token request itself as a Query-role entity.
  token: { flow: 'token', query: true },
};

export function toAuditEvent(record: AuditRecord): AuditEvent {
  const shape = SHAPES[record.interaction];
  const profiles = claimedProfiles(record, shape);
  return {
    resourceType: 'AuditEvent',
    id: record.id,
    ...(profiles.length > 0 ? { meta: { profile: profiles } } : {}),
    type: record.interaction === 'token' ? USER_AUTHENTICATION : REST,
    subtype: subtypes(record),
    action: record.action,
    recorded: record.recorded,
    outcome: record.outcome,
    ...(record.outcome !== '0' && record.outcomeDescription ? { outcomeDesc: record.outcomeDescription } : {}),
    agent: agents(record, shape.flow),
    source: {
      site: new URL(record.server).host,
      observer: serverIdentity(record),
      // The token endpoint is Baton acting as its own authorization server.
      type: [record.interaction === 'token' ? SECURITY_SERVER : APPLICATION_SERVER],
    },
    entity: entities(record, shape),
  };
}

/**
 * The profiles the event conforms to, and only those: every BALP RESTful profile fixes outcome 0
 * ("a failure AuditEvent may follow this pattern, but would not be a successful outcome") and
 * requires the client's identity and network address, the data entity (Read, Create, Update,
 * Delete) or the query entity (Query). OAUTHaccessTokenUse.Minimal asks only for the jti.
 */
function claimedProfiles(record: AuditRecord, shape: InteractionShape): string[] {
  const claimed: string[] = [];
  const profile = shape.profile;
  if (
    profile &&
    record.outcome === '0' &&
    record.action === profile.action &&
    record.caller !== undefined &&
    record.sourceAddress !== undefined &&
    (profile.name === 'Query' ? record.query !== undefined : record.resource?.id !== undefined)
  ) {
    claimed.push(`${BALP}IHE.BasicAudit.${record.patient === undefined ? '' : 'Patient'}${profile.name}`);
  }
  if (record.caller?.tokenId !== undefined) claimed.push(OAUTH_MINIMAL);
  return claimed;
}

function subtypes(record: AuditRecord): Coding[] {
  if (record.interaction === 'token') return [LOGIN];
  const interaction: Coding = { system: RESTFUL_INTERACTION, code: record.interaction, display: record.interaction };
  if (record.interaction !== 'operation' || record.operation === undefined) return [interaction];
  // No code system lists OperationDefinitions; their canonical is a URI, and RFC 3986 is the
  // system FHIR terminology gives a code that is a URI (as IHE profiles add a second subtype for
  // the transaction, e.g. urn:ihe:event-type-code#ITI-83, beside restful-interaction).
  return [interaction, { system: URI, code: record.operation }];
}

function agents(record: AuditRecord, flow: Flow): AuditEventAgent[] {
  const types = AGENT_TYPES[flow];
  const caller = record.caller;
  const tokenId = caller?.tokenId;
  const client: AuditEventAgent = {
    type: { coding: [types.client] },
    // A 401 has no verified caller: the client is known only by its address.
    ...(caller ? { who: clientIdentity(record.server, caller.clientId) } : {}),
    // The token's agent is the requestor when there is one (BALP OAUTHaccessTokenUse); otherwise the client app.
    requestor: tokenId === undefined,
    ...(record.sourceAddress ? { network: { address: record.sourceAddress, type: isIP(record.sourceAddress) ? '2' : '1' } } : {}),
  };
  const server: AuditEventAgent = {
    type: { coding: [types.server] },
    who: serverIdentity(record),
    requestor: false,
    network: { address: record.server, type: '5' },
  };
  const result = [client, server];
  if (caller && tokenId !== undefined) {
    // BALP OAUTHaccessTokenUse.Minimal: the jti, prefixed per RFC 3553; a client_credentials
    // token's subject is the client itself, so the client id identifies who the token speaks for.
    result.push({
      type: { coding: [OAUTH_USER] },
      who: clientIdentity(record.server, caller.clientId),
      requestor: true,
      policy: [`urn:ietf:params:oauth:jti:${tokenId}`],
    });
  }
  return result;
}

type Who = NonNullable<AuditEventAgent['who']>;

/** OAuth client ids are unique per authorization server, so the token issuer is their namespace (BALP: "Token Issuer"). */
function clientIdentity(server: string, clientId: string): Who {
  return { identifier: { system: authUrls(server).issuer, value: clientId } };
}

function serverIdentity(record: AuditRecord): Who {
  return { identifier: { system: URI, value: record.server } };
}

function entities(record: AuditRecord, shape: InteractionShape): AuditEventEntity[] {
  const result: AuditEventEntity[] = [];
  const resource = record.resource;
  if (resource?.id !== undefined) {
    const version = resource.versionId === undefined ? '' : `/_history/${resource.versionId}`;
    result.push({ what: { reference: `${resource.type}/${resource.id}${version}` }, type: SYSTEM_OBJECT, role: DOMAIN_RESOURCE });
  }
  if (record.patient !== undefined) {
    result.push({ what: { reference: `Patient/${record.patient}` }, type: PERSON, role: PATIENT_ROLE });
  }
  // BALP keeps only the base64 of the raw request, no cleaned copy in .description: a query
  // string can carry demographics (name=, birthdate=).
  if (shape.query && record.query !== undefined) {
    result.push({ type: SYSTEM_OBJECT, role: QUERY_ROLE, query: Buffer.from(record.query, 'utf8').toString('base64') });
  }
  result.push({ what: { identifier: { value: record.requestId } }, type: X_REQUEST_ID });
  return result;
}
