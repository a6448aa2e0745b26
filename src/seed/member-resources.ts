import type { Coverage, Identifier, Patient } from '@medplum/fhirtypes';
import { OWN_ORGANIZATION_ID } from '../fhir/own-organization.ts';
import type { SyntheticHousehold, SyntheticMember } from './households.ts';
import { MEMBER_ID_SYSTEM } from './identifiers.ts';

/*
 * A member as the payer's FHIR API shows them: a Patient shaped as US Core asks (identifier
 * with the member id, type MB; name; telecom; gender; birthDate; address) carrying the
 * member's history, and a Coverage shaped as CARIN Blue Button and PDex do.
 */

const MEMBER_ID_TYPE = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB', display: 'Member Number' }] };

const MARITAL_STATUS: Record<NonNullable<SyntheticMember['maritalStatus']>, string> = { M: 'Married', S: 'Never Married', D: 'Divorced', W: 'Widowed' };

const RELATIONSHIP: Record<SyntheticMember['role'], [string, string]> = { subscriber: ['self', 'Self'], spouse: ['spouse', 'Spouse'], child: ['child', 'Child'] };

export const coverageIdOf = (idPrefix: string, ordinal: number): string => `${idPrefix}-coverage-${ordinal}`;

export function memberPatient(member: SyntheticMember): Patient {
  const identifier: Identifier[] = [{ use: 'usual', type: MEMBER_ID_TYPE, system: MEMBER_ID_SYSTEM, value: member.memberId }];
  if (member.legacyMemberId) {
    identifier.push({ use: 'old', type: MEMBER_ID_TYPE, system: MEMBER_ID_SYSTEM, value: member.legacyMemberId.value, period: { end: member.legacyMemberId.end } });
  }
  const telecom: Patient['telecom'] = member.phones.map((p) => ({ system: 'phone', value: p.value, use: p.use }));
  if (member.email) telecom.push({ system: 'email', value: member.email, use: 'home' });
  return {
    resourceType: 'Patient',
    id: member.patientId,
    identifier,
    name: member.names.map(({ use, family, given, suffix, period }) => ({ use, family, given, ...(suffix ? { suffix: [suffix] } : {}), ...(period ? { period } : {}) })),
    ...(telecom.length ? { telecom } : {}),
    gender: member.gender,
    birthDate: member.birthDate,
    address: member.addresses.map(({ use, line, city, state, postalCode, period }) => ({ use, line, city, state, postalCode, ...(period ? { period } : {}) })),
    ...(member.maritalStatus
      ? { maritalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: member.maritalStatus, display: MARITAL_STATUS[member.maritalStatus] }] } }
      : {}),
  };
}

export function memberCoverage(household: SyntheticHousehold, member: SyntheticMember, idPrefix: string): Coverage {
  const [code, display] = RELATIONSHIP[member.role];
  const coverageClass = (kind: 'group' | 'plan', value: string, name: string) => ({
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/coverage-class', code: kind, display: kind === 'group' ? 'Group' : 'Plan' }] },
    value,
    name,
  });
  return {
    resourceType: 'Coverage',
    id: coverageIdOf(idPrefix, member.ordinal),
    identifier: [{ type: MEMBER_ID_TYPE, system: MEMBER_ID_SYSTEM, value: member.memberId }],
    status: 'active',
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'HIP', display: 'health insurance plan policy' }] },
    subscriber: { reference: `Patient/${household.members[0].patientId}` },
    subscriberId: household.subscriberId,
    beneficiary: { reference: `Patient/${member.patientId}` },
    dependent: member.personCode,
    relationship: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/subscriber-relationship', code, display }] },
    period: member.coverage,
    payor: [{ reference: `Organization/${OWN_ORGANIZATION_ID}` }],
    class: [coverageClass('group', household.group.value, household.group.name), coverageClass('plan', household.plan.value, household.plan.name)],
  };
}
