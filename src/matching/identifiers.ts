import type { PayerIdentifierInput } from './types.ts';

/**
 * A member or subscriber identifier as printed on cards and typed into forms:
 * "0012-345-678 *01", "12345678-01", "W12345678 02". Compared without separators, case or
 * leading zeros, with the dependent suffix (the person's number on a family card) set apart.
 */
export interface NormalizedMemberId {
  /** Every letter and digit of the value, upper-case, leading zeros removed: 1234567801. */
  compact: string;
  /** The identifier without its dependent suffix: 12345678. */
  base: string;
  /** Dependent number without leading zeros ("01" → "1"). */
  dependent?: string;
}

/**
 * A dependent suffix: `*` and 1–2 digits, or a space, dash or slash and exactly 2 digits, after
 * a base of 5 or more characters. A single digit after a dash is more often a check digit.
 */
const DEPENDENT_SUFFIX = /^(.*[a-z0-9].*?)(?:\s*\*\s*(\d{1,2})|[\s/-](\d{2}))$/i;
/** Some senders put the system URL in the value: https://plan.example/member#1234-5678. */
const URL_WITH_FRAGMENT = /^[a-z][a-z0-9+.-]*:\/\/[^#]*#(.+)$/i;

export function normalizeMemberId(value: string, dependent?: string): NormalizedMemberId | undefined {
  const text = (URL_WITH_FRAGMENT.exec(value.trim())?.[1] ?? value).trim();
  const compact = alphanumeric(text);
  if (compact.length === 0) return undefined;
  const suffix = DEPENDENT_SUFFIX.exec(text);
  const suffixBase = suffix ? alphanumeric(suffix[1]) : '';
  if (suffix && suffixBase.length >= 5) return { compact, base: suffixBase, dependent: String(Number(suffix[2] ?? suffix[3])) };
  const dependentDigits = dependent?.replace(/\D/g, '');
  return { compact, base: compact, ...(dependentDigits ? { dependent: String(Number(dependentDigits)) } : {}) };
}

function alphanumeric(text: string): string {
  return text.toUpperCase().replace(/[^A-Z0-9]/g, '').replace(/^0+(?=.)/, '');
}

export type MemberIdAgreement = 'exact' | 'base' | 'dependent-conflict' | 'different';

/**
 * How two member ids relate: the same id (`exact`), the same card with the dependent number on
 * one side only (`base`), the same card with different dependent numbers — another person of
 * the household (`dependent-conflict`), or not the same card (`different`).
 */
export function compareMemberIds(a: NormalizedMemberId, b: NormalizedMemberId): MemberIdAgreement {
  if (a.base === b.base) {
    if (a.dependent === b.dependent) return 'exact';
    return a.dependent === undefined || b.dependent === undefined ? 'base' : 'dependent-conflict';
  }
  return a.compact === b.compact ? 'exact' : 'different';
}

/** Payer identifier systems (and OIDs) by the kind of identifier they issue. */
const PAYER_SYSTEMS: Record<string, string> = {
  'hl7.org/fhir/sid/us-npi': 'npi',
  'urn:oid:2.16.840.1.113883.4.6': 'npi',
  'www.naic.org': 'naic',
  'naic.org': 'naic',
  'urn:oid:2.16.840.1.113883.6.300': 'naic',
  'hl7.org/fhir/sid/us-ein': 'ein',
  'urn:oid:2.16.840.1.113883.4.4': 'ein',
  'terminology.hl7.org/NamingSystem/CMSCertificationNumber': 'ccn',
};
/** v2-0203 identifier types that say what the identifier is whatever its system. */
const PAYER_TYPES: Record<string, string> = { NPI: 'npi', NIIP: 'niip', TAX: 'ein', EN: 'ein', NAIC: 'naic' };

/**
 * A payer identifier as `<kind>|<value>`: the kind from the type code, else the system (NPI
 * by its URL or OID, NAIC code by its URL or OID…), else the system itself with scheme and
 * trailing slash dropped. Two payer identifiers are the same when their keys are equal, so an
 * NPI sent under its OID equals the one sent under the HL7 URL.
 */
export function payerKey(identifier: PayerIdentifierInput): string | undefined {
  const value = identifier.value.toUpperCase().replace(/[^A-Z0-9]/g, '');
  if (value.length === 0) return undefined;
  const system = (identifier.system ?? '').trim().replace(/^https?:\/\//, '').replace(/\/+$/, '');
  const kind = PAYER_TYPES[identifier.type ?? ''] ?? PAYER_SYSTEMS[system] ?? (system ? `system:${system}` : 'unknown');
  return `${kind}|${value}`;
}

/** True when the two lists share a payer identifier (same kind and value). */
export function samePayer(a: readonly PayerIdentifierInput[], b: readonly PayerIdentifierInput[]): boolean {
  const keys = new Set(a.map(payerKey).filter((key) => key !== undefined));
  return b.some((identifier) => {
    const key = payerKey(identifier);
    return key !== undefined && keys.has(key);
  });
}
