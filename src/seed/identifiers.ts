import { hashString, mix32 } from './random.ts';

/** The system of the member identifiers this payer issues (Patient.identifier type MB, Coverage.identifier). */
export const MEMBER_ID_SYSTEM = 'https://baton.example.org/fhir/member-id';
/** The system of the payer's claim numbers (ExplanationOfBenefit.identifier, CARIN "uc"). */
export const CLAIM_ID_SYSTEM = 'https://baton.example.org/fhir/claim-id';

const BILLION = 1_000_000_000;
/** Multipliers coprime with 10⁹, so index → number is a permutation: no two households share a number. */
const SUBSCRIBER_STEP = 387_420_489n; // 3^18
const LEGACY_STEP = 282_475_249n; // 7^10

/**
 * Subscriber and legacy numbers of the households of one population: nine digits that look
 * random but are a permutation of the household index, offset by the seed and id prefix so two
 * populations in one database rarely collide.
 */
export function householdNumbers(seed: number, idPrefix: string): { subscriberId(index: number): string; legacyNumber(index: number): string } {
  const offset = mix32(seed ^ hashString(idPrefix)) % BILLION;
  const legacyOffset = mix32(offset ^ 0x5bd1e995) % BILLION;
  const permuted = (index: number, step: bigint, shift: number) => String((BigInt(index) * step + BigInt(shift)) % BigInt(BILLION)).padStart(9, '0');
  return {
    subscriberId: (index) => `W${permuted(index, SUBSCRIBER_STEP, offset)}`,
    legacyNumber: (index) => permuted(index, LEGACY_STEP, legacyOffset),
  };
}

/** A ten-digit NPI: nine digits and the Luhn check digit computed with the 80840 prefix (CMS NPI check digit rule). */
export function npi(base: number): string {
  const nine = String(base % BILLION).padStart(9, '0');
  const digits = `80840${nine}`;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    // From the right, every other digit (starting with the last) is doubled: the check digit goes after it.
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return `${nine}${(10 - (sum % 10)) % 10}`;
}
