import type { Address, ContactPoint, Coverage, HumanName, Identifier, Patient, Reference } from '@medplum/fhirtypes';
import type { AddressInput, CandidateRecord, IdentifierInput, MatchQuery, NameInput, Origin, PayerIdentifierInput, PhoneInput } from './types.ts';

/**
 * FHIR resources → identity attributes. HRex $member-match gives MemberPatient (demographics)
 * and CoverageToMatch (the old card); a member is its Patient, the Coverages where it is the
 * beneficiary and, for identity drift, earlier versions of its Patient.
 */

/** v2-0203 and HRex codes of identifiers that number a member of a plan. */
const MEMBER_TYPES = new Set(['MB', 'MA', 'MC', 'UMB']);
const SUBSCRIBER_TYPE = 'SN';
/** Untyped identifiers count as member numbers unless their system says otherwise. */
const NON_MEMBER_SYSTEMS = new Set(['http://hl7.org/fhir/sid/us-ssn', 'urn:oid:2.16.840.1.113883.4.1']);

type IdentifierRole = 'member' | 'subscriber';

function identifierRole(identifier: Identifier): IdentifierRole | undefined {
  const codes = (identifier.type?.coding ?? []).map((coding) => coding.code).filter((code) => code !== undefined);
  if (codes.includes(SUBSCRIBER_TYPE)) return 'subscriber';
  if (codes.some((code) => MEMBER_TYPES.has(code))) return 'member';
  if (codes.length > 0) return undefined; // MR, PT, SS, DL…: not a plan's member number
  return identifier.system !== undefined && NON_MEMBER_SYSTEMS.has(identifier.system) ? undefined : 'member';
}

export function queryFromMemberMatch(memberPatient: Patient, coverageToMatch: Coverage): MatchQuery {
  const patientIds = classifyIdentifiers(memberPatient.identifier ?? [], { claimed: true });
  const cardIds = classifyIdentifiers(coverageToMatch.identifier ?? [], {}, coverageToMatch.dependent);
  return {
    names: (memberPatient.name ?? []).map((name) => nameInput(name, {})),
    ...(memberPatient.birthDate ? { birthDate: memberPatient.birthDate } : {}),
    ...(memberPatient.gender ? { gender: memberPatient.gender } : {}),
    addresses: (memberPatient.address ?? []).map((address) => addressInput(address, {})),
    phones: phoneInputs(memberPatient.telecom ?? [], {}),
    memberIds: [...cardIds.member, ...subscriberAsMember(coverageToMatch, {}), ...patientIds.member],
    subscriberIds: [...(coverageToMatch.subscriberId ? [{ value: coverageToMatch.subscriberId }] : []), ...cardIds.subscriber, ...patientIds.subscriber],
    payers: payerInputs(coverageToMatch.payor ?? []),
  };
}

export interface CandidateSources {
  /** Earlier versions of the Patient: their names, addresses, phones and ids are kept as historical. */
  history?: Patient[];
}

/** A member as a candidate: `coverages` are those whose beneficiary is `patient`. */
export function candidateFromMember(patient: Patient, coverages: Coverage[], sources: CandidateSources = {}): CandidateRecord {
  if (!patient.id) throw new TypeError('candidateFromMember: a member is a stored Patient, with an id');
  const versions = [
    { resource: patient, origin: { source: `Patient/${patient.id}` } as Origin },
    ...(sources.history ?? []).map((version) => ({
      resource: version,
      origin: { source: `Patient/${patient.id}/_history/${version.meta?.versionId ?? ''}`, historical: true } as Origin,
    })),
  ];
  const names: NameInput[] = [];
  const addresses: AddressInput[] = [];
  const phones: PhoneInput[] = [];
  const memberIds: IdentifierInput[] = [];
  const subscriberIds: IdentifierInput[] = [];
  for (const { resource, origin } of versions) {
    names.push(...(resource.name ?? []).map((name) => nameInput(name, origin)));
    addresses.push(...(resource.address ?? []).map((address) => addressInput(address, origin)));
    phones.push(...phoneInputs(resource.telecom ?? [], origin));
    const ids = classifyIdentifiers(resource.identifier ?? [], origin);
    memberIds.push(...ids.member);
    subscriberIds.push(...ids.subscriber);
  }
  const payers: PayerIdentifierInput[] = [];
  for (const coverage of coverages) {
    const origin: Origin = {
      source: `Coverage/${coverage.id}`,
      ...(coverage.period ? { period: coverage.period } : {}),
      ...(coverage.status === 'cancelled' ? { historical: true } : {}),
    };
    const ids = classifyIdentifiers(coverage.identifier ?? [], origin, coverage.dependent);
    memberIds.push(...ids.member);
    subscriberIds.push(...ids.subscriber);
    if (coverage.subscriberId) subscriberIds.push({ value: coverage.subscriberId, ...origin });
    memberIds.push(...subscriberAsMember(coverage, origin));
    payers.push(...payerInputs(coverage.payor ?? []));
  }
  return {
    id: patient.id,
    names,
    ...(patient.birthDate ? { birthDate: patient.birthDate } : {}),
    ...(patient.gender ? { gender: patient.gender } : {}),
    addresses,
    phones,
    memberIds,
    subscriberIds,
    payers,
  };
}

/** When the beneficiary is the subscriber (relationship `self`), the subscriber id is the person's own id. */
function subscriberAsMember(coverage: Coverage, origin: Origin): IdentifierInput[] {
  const self = coverage.relationship?.coding?.some((coding) => coding.code === 'self') ?? false;
  return self && coverage.subscriberId ? [{ ...origin, value: coverage.subscriberId }] : [];
}

/** Member and subscriber identifiers; the card's dependent number belongs to the member ids only. */
function classifyIdentifiers(identifiers: Identifier[], common: Omit<IdentifierInput, 'value' | 'dependent'>, dependent?: string): Record<IdentifierRole, IdentifierInput[]> {
  const classified: Record<IdentifierRole, IdentifierInput[]> = { member: [], subscriber: [] };
  for (const identifier of identifiers) {
    const role = identifierRole(identifier);
    if (role === undefined || !identifier.value) continue;
    classified[role].push({
      ...common,
      value: identifier.value,
      ...(identifier.system ? { system: identifier.system } : {}),
      ...(identifier.period ? { period: identifier.period } : {}),
      ...(role === 'member' && dependent ? { dependent } : {}),
    });
  }
  return classified;
}

function isHistorical(use: string | undefined, period: { end?: string } | undefined): boolean {
  return use === 'old' || use === 'maiden' || period?.end !== undefined;
}

function nameInput(name: HumanName, origin: Origin): NameInput {
  return {
    ...origin,
    ...withoutUndefined({ family: name.family, given: name.given, prefix: name.prefix, suffix: name.suffix, use: name.use, period: name.period }),
    ...(origin.historical || isHistorical(name.use, name.period) ? { historical: true } : {}),
  };
}

function addressInput(address: Address, origin: Origin): AddressInput {
  return {
    ...origin,
    ...withoutUndefined({ line: address.line, city: address.city, state: address.state, postalCode: address.postalCode, use: address.use, period: address.period }),
    ...(origin.historical || isHistorical(address.use, address.period) ? { historical: true } : {}),
  };
}

function phoneInputs(telecom: ContactPoint[], origin: Origin): PhoneInput[] {
  return telecom
    .filter((contact) => (contact.system === 'phone' || contact.system === 'sms') && contact.value)
    .map((contact) => ({
      ...origin,
      value: contact.value as string,
      ...(contact.period ? { period: contact.period } : {}),
      ...(origin.historical || isHistorical(contact.use, contact.period) ? { historical: true } : {}),
    }));
}

function payerInputs(payors: Reference[]): PayerIdentifierInput[] {
  return payors.flatMap((payor) => {
    const identifier = payor.identifier;
    if (!identifier?.value) return [];
    const type = identifier.type?.coding?.find((coding) => coding.code)?.code;
    return [{ value: identifier.value, ...(identifier.system ? { system: identifier.system } : {}), ...(type ? { type } : {}) }];
  });
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
