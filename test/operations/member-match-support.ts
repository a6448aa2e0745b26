import { existsSync, readFileSync } from 'node:fs';
import type { Consent, Coverage, Parameters, Patient } from '@medplum/fhirtypes';
import { createClient } from '../../src/auth/clients.ts';
import { MEMBER_MATCH } from '../../src/operations/member-match.ts';
import type { TestBaton } from '../support/baton.ts';

/** Published $member-match requests (Inferno PDex kit), read from ../shared when it is there. */
export const INFERNO_DIR = new URL('../../../shared/fixtures/davinci/inferno/', import.meta.url);
export const HAVE_FIXTURES = existsSync(INFERNO_DIR);
export const fixture = (name: string): Parameters => JSON.parse(readFileSync(new URL(name, INFERNO_DIR), 'utf8')) as Parameters;

/** This payer's NPI in tests (startBaton's default BATON_PAYER_IDENTIFIER) and the new payer's. */
export const OUR_NPI = { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' };
export const NEW_PAYER_NPI = { system: 'http://hl7.org/fhir/sid/us-npi', value: '0123456789' };
const MB = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] };

export async function registerPartner(baton: TestBaton, name = 'New Health Plan'): Promise<{ clientId: string; token: () => Promise<string> }> {
  const jwks = { keys: [{ kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'k' }] };
  const { client_id: clientId } = await createClient(baton.db, { name, kind: 'partner', organizationIdentifiers: [NEW_PAYER_NPI], jwks, jwksUri: undefined, scopes: ['system/*.rs', MEMBER_MATCH] });
  return { clientId, token: () => baton.token({ clientId, kind: 'partner', scopes: ['system/*.rs', MEMBER_MATCH], organization: [NEW_PAYER_NPI] }) };
}

export interface MemberSpec {
  id: string;
  family: string;
  given: string[];
  birthDate: string;
  gender: 'male' | 'female';
  memberId: string;
  subscriberId: string;
  relationship?: 'self' | 'spouse' | 'child';
  line?: string;
  city?: string;
  postalCode?: string;
  phone?: string;
}

/** A member as this payer stores it: Patient and Coverage. */
export async function putMember(baton: TestBaton, m: MemberSpec): Promise<void> {
  const patient: Patient = {
    resourceType: 'Patient',
    id: m.id,
    identifier: [{ type: MB, system: 'urn:baton:test:member-id', value: m.memberId }],
    name: [{ family: m.family, given: m.given }],
    gender: m.gender,
    birthDate: m.birthDate,
    ...(m.line ? { address: [{ line: [m.line], city: m.city ?? 'Pittsburgh', state: 'PA', postalCode: m.postalCode ?? '15213' }] } : {}),
    ...(m.phone ? { telecom: [{ system: 'phone', value: m.phone }] } : {}),
  };
  const coverage: Coverage = {
    resourceType: 'Coverage',
    id: `cov-${m.id}`,
    status: 'active',
    identifier: [{ type: MB, system: 'urn:baton:test:member-id', value: m.memberId }],
    subscriberId: m.subscriberId,
    beneficiary: { reference: `Patient/${m.id}` },
    relationship: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/subscriber-relationship', code: m.relationship ?? 'self' }] },
    payor: [{ identifier: OUR_NPI }],
  };
  for (const resource of [patient, coverage]) {
    const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
    if (response.status !== 201 && response.status !== 200) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${response.status} ${await response.text()}`);
  }
}

/** An HRex Consent from this payer (source) to the new payer (recipient), valid now unless told otherwise. */
export function consentFor(patientReference: string, overrides: Partial<Consent> & { policy?: 'sensitive' | 'regular'; period?: { start: string; end: string } } = {}): Consent {
  const { policy = 'sensitive', period, ...rest } = overrides;
  const year = new Date().getUTCFullYear();
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IDSCL' }] }],
    patient: { reference: patientReference },
    performer: [{ reference: patientReference }],
    sourceReference: { reference: 'http://example.org/DocumentReference/consent-form-1' },
    policy: [{ uri: `http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#${policy}` }],
    provision: {
      type: 'permit',
      period: period ?? { start: `${year - 1}-01-01`, end: `${year + 1}-12-31` },
      actor: [
        { role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'performer' }] }, reference: { identifier: OUR_NPI, display: 'Old Health Plan' } },
        { role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { identifier: NEW_PAYER_NPI, display: 'New Health Plan' } },
      ],
      action: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentaction', code: 'disclose' }] }],
    },
    ...rest,
  };
}

/** A $member-match request for a person as the new payer knows them. */
export function matchRequest(person: { family: string; given: string[]; birthDate: string; gender?: 'male' | 'female'; cardId?: string; subscriberId?: string; line?: string; postalCode?: string }, options: { consent?: Consent | false; coverageToLink?: boolean } = {}): Parameters {
  const patient: Patient = {
    resourceType: 'Patient',
    id: 'req-1',
    name: [{ family: person.family, given: person.given }],
    birthDate: person.birthDate,
    gender: person.gender ?? 'female',
    ...(person.line ? { address: [{ line: [person.line], city: 'Pittsburgh', state: 'PA', postalCode: person.postalCode ?? '15213' }] } : {}),
  };
  const card: Coverage = {
    resourceType: 'Coverage',
    id: 'card-1',
    status: 'active',
    ...(person.cardId ? { identifier: [{ type: MB, value: person.cardId }] } : {}),
    ...(person.subscriberId ? { subscriberId: person.subscriberId } : {}),
    beneficiary: { reference: 'Patient/req-1' },
    payor: [{ identifier: OUR_NPI }],
  };
  const parameter: NonNullable<Parameters['parameter']> = [
    { name: 'MemberPatient', resource: patient },
    { name: 'CoverageToMatch', resource: card },
  ];
  if (options.coverageToLink) {
    parameter.push({
      name: 'CoverageToLink',
      resource: { resourceType: 'Coverage', id: 'new-card', status: 'active', subscriberId: 'NEW-778899', beneficiary: { reference: 'Patient/req-1' }, payor: [{ identifier: NEW_PAYER_NPI }] },
    });
  }
  if (options.consent !== false) parameter.push({ name: 'Consent', resource: options.consent ?? consentFor('Patient/req-1') });
  return { resourceType: 'Parameters', parameter };
}
