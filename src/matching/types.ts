import type { Period } from '@medplum/fhirtypes';

/**
 * What identity resolution reads: plain data built from FHIR resources (see from-fhir.ts) or
 * from any other source. Nothing here is normalized yet; normalize.ts does that.
 */

/** Where a value came from and when it held. Members keep old names, addresses and ids (identity drift). */
export interface Origin {
  /** e.g. `Patient/123/_history/2`, `Coverage/abc`: shown to operators, never compared. */
  source?: string;
  period?: Period;
  /** A former value (name use `old`/`maiden`, address use `old`, a closed period, an earlier version). */
  historical?: boolean;
}

export interface NameInput extends Origin {
  family?: string;
  given?: string[];
  prefix?: string[];
  suffix?: string[];
  use?: string;
}

export interface AddressInput extends Origin {
  line?: string[];
  city?: string;
  state?: string;
  postalCode?: string;
  use?: string;
}

export interface PhoneInput extends Origin {
  value: string;
}

export interface IdentifierInput extends Origin {
  value: string;
  system?: string;
  /** Dependent number printed beside the id (Coverage.dependent), when the value itself has none. */
  dependent?: string;
  /**
   * An identifier the requester put on MemberPatient rather than read from the card: often its
   * own member number, so it counts when it agrees and is ignored when it does not.
   */
  claimed?: boolean;
}

/** An identifier of a payer (NPI, NAIC code, payer id, EIN…), as on Coverage.payor. */
export interface PayerIdentifierInput {
  system?: string;
  value: string;
  /** v2-0203 identifier type code when present (NIIP, NPI, TAX…). */
  type?: string;
}

export interface IdentityAttributes {
  names: NameInput[];
  birthDate?: string;
  gender?: string;
  addresses: AddressInput[];
  phones: PhoneInput[];
  /** Identifiers of the person: member ids, with or without dependent suffixes. */
  memberIds: IdentifierInput[];
  /** Identifiers of the subscriber (policy holder) whose card covers the person. */
  subscriberIds: IdentifierInput[];
  payers: PayerIdentifierInput[];
}

/** The person a partner asks about ($member-match MemberPatient + CoverageToMatch). */
export type MatchQuery = IdentityAttributes;

/** A member of this payer, with current and historical attributes. */
export interface CandidateRecord extends IdentityAttributes {
  /** The member's Patient id. */
  id: string;
}
