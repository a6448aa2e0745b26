import type { Period } from '@medplum/fhirtypes';
import { normalizeAddress, type NormalizedAddress } from './addresses.ts';
import { type FhirDate, parseFhirDate } from './dates.ts';
import { normalizeMemberId, type NormalizedMemberId, payerKey } from './identifiers.ts';
import { normalizeName, type NormalizedName } from './names.ts';
import { normalizePhone } from './phones.ts';
import type { CandidateRecord, IdentityAttributes, IdentifierInput, Origin } from './types.ts';

/**
 * A query or candidate with every attribute normalized (names, dates, addresses, phones,
 * identifiers: see the modules named after each), duplicates dropped, current values first.
 * Each value remembers which input entry it came from, so a decision can say "matched on the
 * member's former name from Patient/123/_history/2" without repeating the name.
 */
export interface EntryRef {
  /** Position in the input list (names, addresses, phones, memberIds or subscriberIds). */
  index: number;
  historical: boolean;
  source?: string;
  period?: Period;
}

export interface Entry {
  entry: EntryRef;
}

export type Gender = 'male' | 'female';

export interface NormalizedMemberIdEntry extends NormalizedMemberId, Entry {
  claimed: boolean;
}

export interface NormalizedRecord {
  names: (NormalizedName & Entry)[];
  birthDate?: FhirDate;
  /** Only male and female can conflict; other and unknown say nothing. */
  gender?: Gender;
  addresses: (NormalizedAddress & Entry)[];
  phones: ({ e164: string } & Entry)[];
  memberIds: NormalizedMemberIdEntry[];
  subscriberIds: NormalizedMemberIdEntry[];
  /** Payer identifier keys (see payerKey). */
  payers: string[];
}

/**
 * The record normalized, computed once per record object: a request's query is read by blocking,
 * term frequencies, the engine, the brute-force guard and the decision's hash. Records are not
 * changed once built, and the result is shared: read it, never change it.
 */
export function normalizeRecord(record: IdentityAttributes): NormalizedRecord {
  let normalized = normalizedRecords.get(record);
  if (normalized === undefined) normalizedRecords.set(record, (normalized = normalizeAttributes(record)));
  return normalized;
}

const normalizedRecords = new WeakMap<IdentityAttributes, NormalizedRecord>();

function normalizeAttributes(record: IdentityAttributes): NormalizedRecord {
  const birthDate = parseFhirDate(record.birthDate);
  const gender = normalizeGender(record.gender);
  return {
    names: normalizeEntries(record.names, normalizeName),
    ...(birthDate ? { birthDate } : {}),
    ...(gender ? { gender } : {}),
    addresses: normalizeEntries(record.addresses, normalizeAddress),
    phones: normalizeEntries(record.phones, (phone) => {
      const e164 = normalizePhone(phone.value);
      return e164 ? { e164 } : undefined;
    }),
    memberIds: normalizeEntries(record.memberIds, normalizeIdentifier),
    subscriberIds: normalizeEntries(record.subscriberIds, normalizeIdentifier),
    payers: [...new Set(record.payers.map(payerKey).filter((key) => key !== undefined))],
  };
}

/**
 * A member as the engine compares it. The blocking index stores this form, so a member is
 * normalized once when indexed rather than on every request that finds it (two thirds of the
 * engine's time was that).
 */
export type NormalizedCandidate = NormalizedRecord & { id: string };

export function normalizeCandidate(candidate: CandidateRecord): NormalizedCandidate {
  // Once, when indexed: nothing reads the candidate again, so it is not kept in normalizedRecords.
  return { id: candidate.id, ...normalizeAttributes(candidate) };
}

function normalizeIdentifier(identifier: IdentifierInput): (NormalizedMemberId & { claimed: boolean }) | undefined {
  const normalized = normalizeMemberId(identifier.value, identifier.dependent);
  return normalized ? { ...normalized, claimed: identifier.claimed ?? false } : undefined;
}

export function normalizeGender(gender: string | undefined): Gender | undefined {
  const value = gender?.trim().toLowerCase();
  if (value === 'male' || value === 'm') return 'male';
  if (value === 'female' || value === 'f') return 'female';
  return undefined;
}

/** Normalizes each entry, keeps the first of equal values (current before historical). */
function normalizeEntries<I extends Origin, N extends object>(inputs: readonly I[], normalize: (input: I) => N | undefined): (N & Entry)[] {
  const ordered = inputs.map((input, index) => ({ input, index })).sort((a, b) => Number(a.input.historical ?? false) - Number(b.input.historical ?? false));
  const seen = new Set<string>();
  const entries: (N & Entry)[] = [];
  for (const { input, index } of ordered) {
    const normalized = normalize(input);
    if (normalized === undefined) continue;
    const key = JSON.stringify(normalized);
    if (seen.has(key)) continue;
    seen.add(key);
    const entry: EntryRef = {
      index,
      historical: input.historical ?? false,
      ...(input.source ? { source: input.source } : {}),
      ...(input.period ? { period: input.period } : {}),
    };
    entries.push({ ...normalized, entry });
  }
  return entries;
}
