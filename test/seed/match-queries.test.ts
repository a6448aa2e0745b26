import type { Coverage, Patient } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { oneKeystrokeApart } from '../../src/matching/compare.ts';
import { queryFromMemberMatch } from '../../src/matching/from-fhir.ts';
import { normalizeMemberId } from '../../src/matching/identifiers.ts';
import { defaultNicknames } from '../../src/matching/nicknames.ts';
import { type GroundTruthMember, groundTruth } from '../../src/seed/ground-truth.ts';
import {
  DEFAULT_STRATUM_SHARES,
  generateMatchQueries,
  HARD_NEGATIVE_STRATA,
  type LabelledMatchQuery,
  MATCH_STRATA,
  MEMBER_PATIENT_ID,
  type MatchStratum,
  typo,
} from '../../src/seed/match-queries.ts';
import { populationOptions } from '../../src/seed/population.ts';
import { Random } from '../../src/seed/random.ts';

const options = populationOptions({ members: 20_000, seed: 11, clinical: false });
const members = [...groundTruth(options)];
const byId = new Map(members.map((m) => [m.patientId, m]));
const QUERIES = 6_000;
const queries = generateMatchQueries(members, { queries: QUERIES, seed: 11, asOf: options.asOf });

const inStratum = (stratum: MatchStratum) => queries.filter((q) => q.stratum === stratum);
const memberOf = (id: string | undefined) => byId.get(id as string) as GroundTruthMember;
const lower = (text: string | undefined) => (text ?? '').toLowerCase();
const nameOf = (q: LabelledMatchQuery) => q.memberPatient.name?.[0] ?? {};
/** The family name as sent, without a generational suffix written into it. */
const familyOf = (q: LabelledMatchQuery) => lower(nameOf(q).family).replace(/ (jr|sr)$/, '');
const firstOf = (q: LabelledMatchQuery) => lower(nameOf(q).given?.[0]);
const cardId = (coverage: Coverage) => coverage.identifier?.[0]?.value;
const compactId = (value: string | undefined) => (value === undefined ? undefined : normalizeMemberId(value)?.compact);
const zip5 = (patient: Patient) => patient.address?.[0]?.postalCode?.slice(0, 5);
const firstNamesAlike = (a: string, b: string) => a === b || defaultNicknames.areNicknames(a, b);

describe('labelled $member-match requests', () => {
  it('are the same for the same population and seed, different for another seed, and request i does not depend on how many are asked for', () => {
    const again = generateMatchQueries(members, { queries: QUERIES, seed: 11, asOf: options.asOf });
    expect(JSON.stringify(again)).toBe(JSON.stringify(queries));
    expect(JSON.stringify(generateMatchQueries(members, { queries: 200, seed: 11, asOf: options.asOf }))).toBe(JSON.stringify(queries.slice(0, 200)));
    const other = generateMatchQueries(members, { queries: 200, seed: 12, asOf: options.asOf });
    expect(other.map((q) => q.stratum)).not.toEqual(queries.slice(0, 200).map((q) => q.stratum));
  });

  it('draws every stratum at about its share, hard negatives at 25% or more', () => {
    const total = Object.values(DEFAULT_STRATUM_SHARES).reduce((a, b) => a + b, 0);
    for (const stratum of MATCH_STRATA) {
      const share = inStratum(stratum).length / QUERIES;
      const expected = DEFAULT_STRATUM_SHARES[stratum] / total;
      expect(Math.abs(share - expected), stratum).toBeLessThan(Math.max(0.01, expected * 0.25));
    }
    expect(queries.filter((q) => HARD_NEGATIVE_STRATA.includes(q.stratum)).length / QUERIES).toBeGreaterThanOrEqual(0.25);
  });

  it('leaves out strata the population cannot supply and scales the others up', () => {
    const singles = members.filter((m) => m.relations.length === 0).slice(0, 300);
    const few = generateMatchQueries(singles, { queries: 300, seed: 1, asOf: options.asOf });
    expect(few).toHaveLength(300);
    expect(few.some((q) => ['twin', 'twin-not-member', 'namesake', 'household-card'].includes(q.stratum))).toBe(false);
    expect(() => generateMatchQueries([], { queries: 1, seed: 1, asOf: options.asOf })).toThrow(RangeError);
  });

  it('are $member-match inputs as HRex shapes them, labelled with members of the population or with nobody', () => {
    for (const q of queries) {
      expect(q.memberPatient).toMatchObject({ resourceType: 'Patient', id: MEMBER_PATIENT_ID });
      expect(q.coverageToMatch).toMatchObject({ resourceType: 'Coverage', status: 'active', beneficiary: { reference: `Patient/${MEMBER_PATIENT_ID}` } });
      expect(q.coverageToMatch.payor.length).toBeGreaterThan(0);
      if (q.patientId) expect(byId.has(q.patientId)).toBe(true);
      if (q.decoy) expect(byId.has(q.decoy.patientId)).toBe(true);
      expect(q.patientId === undefined, q.stratum).toBe(['twin-not-member', 'household-not-member', 'common-name', 'non-member'].includes(q.stratum));
      expect(queryFromMemberMatch(q.memberPatient, q.coverageToMatch).names.length).toBe(1);
    }
  });
});

describe('corruption', () => {
  it.each<[string, (a: string, b: string) => boolean]>([
    ['insert', (a, b) => b.length === a.length + 1],
    ['delete', (a, b) => b.length === a.length - 1],
    ['substitute', (a, b) => b.length === a.length && [...a].filter((c, i) => c !== b[i]).length === 1],
    ['transpose', (a, b) => b.length === a.length && [...a.toLowerCase()].sort().join('') === [...b.toLowerCase()].sort().join('')],
  ])('makes one keystroke error: %s', (kind, shape) => {
    const rng = new Random(3, 'typo-test', kind);
    for (const word of ['Margaret', 'Okafor', 'Lee', "O'Brien", 'Garcia Lopez']) {
      const typed = typo(word, rng, kind as 'insert');
      expect(typed.toLowerCase(), `${word} → ${typed}`).not.toBe(word.toLowerCase());
      expect(shape(word, typed), `${word} → ${typed}`).toBe(true);
    }
  });

  it('puts a keystroke error in a name of every typo request', () => {
    for (const q of inStratum('typo')) {
      const member = memberOf(q.patientId).names[0];
      const [corruption] = q.corruptions;
      if (corruption === 'typo:birthDate') {
        expect(q.memberPatient.birthDate).not.toBe(memberOf(q.patientId).birthDate);
        continue;
      }
      const sent = corruption.includes('family') ? familyOf(q) : firstOf(q);
      const recorded = lower(corruption.includes('family') ? member.family : member.given[0]);
      expect(sent, corruption).not.toBe(recorded);
      if (corruption === 'typo:family' || corruption === 'typo:given') expect(oneKeystrokeApart(sent.replace(/[^a-z]/g, ''), recorded.replace(/[^a-z]/g, ''))).toBe(true);
    }
  });

  it('sends a nickname, a surname not on file, an earlier surname, a swapped birth date, a new address, as each stratum says', () => {
    for (const q of inStratum('nickname')) expect(defaultNicknames.areNicknames(firstOf(q), lower(memberOf(q.patientId).names[0].given[0]))).toBe(true);
    for (const q of inStratum('married-name')) {
      const onFile = memberOf(q.patientId).names.map((n) => lower(n.family));
      expect(onFile).not.toContain(familyOf(q));
    }
    for (const q of inStratum('maiden-name')) {
      const [current, ...earlier] = memberOf(q.patientId).names;
      expect(familyOf(q)).not.toBe(lower(current.family));
      expect(earlier.map((n) => lower(n.family))).toContain(familyOf(q));
    }
    for (const q of inStratum('dob-swap')) {
      const [year, month, day] = memberOf(q.patientId).birthDate.split('-');
      expect(q.memberPatient.birthDate).toBe(`${year}-${day}-${month}`);
    }
    for (const q of inStratum('moved')) {
      const lines = memberOf(q.patientId).addresses.map((a) => `${a.line[0]}|${a.postalCode.slice(0, 5)}`);
      const sent = q.memberPatient.address?.[0];
      expect(lines).not.toContain(`${sent?.line?.[0]}|${sent?.postalCode?.slice(0, 5)}`);
    }
  });

  it('writes the card another way without changing what it identifies, or shows the old card', () => {
    for (const q of inStratum('id-format')) {
      const member = memberOf(q.patientId);
      const sent = cardId(q.coverageToMatch);
      if (q.corruptions[0] === 'id-format:dependent-dropped') expect(sent).toBe(member.subscriberId);
      else {
        expect(sent).not.toBe(member.memberId);
        expect(compactId(sent)).toBe(member.memberId);
      }
    }
    for (const q of inStratum('legacy-id')) expect(compactId(cardId(q.coverageToMatch))).toBe(compactId(memberOf(q.patientId).legacyMemberId?.value));
  });

  it('leaves out a phone, an address or the card in every missing-fields request', () => {
    for (const q of inStratum('missing-fields')) {
      expect(q.corruptions[0]).toMatch(/^missing:/);
      if (q.corruptions[0].includes('card')) expect(q.coverageToMatch.identifier).toBeUndefined();
      if (q.corruptions[0].includes('address')) expect(q.memberPatient.address).toBeUndefined();
      if (q.corruptions[0].includes('phone')) expect(q.memberPatient.telecom).toBeUndefined();
    }
    expect(inStratum('combined').every((q) => q.corruptions.length >= 2)).toBe(true);
  });
});

describe('hard negatives', () => {
  it('asks about a twin who is not a member: the member twin’s surname, birth date and home, another first name, the family card', () => {
    const absent = inStratum('twin-not-member');
    expect(absent.length).toBeGreaterThan(50);
    for (const q of absent) {
      const twin = memberOf(q.decoy?.patientId);
      expect(q.decoy?.kind).toBe('twin');
      expect(twin.relations.some((r) => r.kind === 'twin')).toBe(true);
      expect(familyOf(q)).toBe(lower(twin.names[0].family));
      expect(q.memberPatient.birthDate).toBe(twin.birthDate);
      expect(zip5(q.memberPatient)).toBe(twin.addresses[0].postalCode.slice(0, 5));
      expect(lower(q.memberPatient.address?.[0]?.city)).toBe(lower(twin.addresses[0].city));
      const household = members.filter((m) => m.householdIndex === twin.householdIndex);
      for (const sibling of household) expect(firstNamesAlike(firstOf(q), lower(sibling.names[0].given[0])), sibling.names[0].given[0]).toBe(false);
      if (q.coverageToMatch.subscriberId) expect(q.coverageToMatch.subscriberId).toBe(twin.subscriberId);
      if (q.coverageToMatch.identifier) expect([twin.subscriberId, household[0].memberId]).toContain(cardId(q.coverageToMatch));
    }
  });

  it('asks about a twin who is a member, with the other twin as the decoy', () => {
    for (const q of inStratum('twin')) {
      const member = memberOf(q.patientId);
      expect(member.relations).toContainEqual({ patientId: q.decoy?.patientId, kind: 'twin' });
      expect(memberOf(q.decoy?.patientId).birthDate).toBe(member.birthDate);
    }
  });

  it('asks about a Jr or Sr with his namesake as the decoy', () => {
    for (const q of inStratum('namesake')) {
      const [member, namesake] = [memberOf(q.patientId), memberOf(q.decoy?.patientId)];
      expect(member.relations.find((r) => r.patientId === namesake.patientId)?.namesake).toBe(true);
      expect(namesake.names[0].given[0]).toBe(member.names[0].given[0]);
      expect(namesake.birthDate).not.toBe(member.birthDate);
    }
  });

  it('sends a member’s demographics with the card of another member of the household', () => {
    for (const q of inStratum('household-card')) {
      const [member, holder] = [memberOf(q.patientId), memberOf(q.decoy?.patientId)];
      expect(holder.householdIndex).toBe(member.householdIndex);
      expect(holder.patientId).not.toBe(member.patientId);
      expect(cardId(q.coverageToMatch)).toBe(holder.memberId);
      if (!q.corruptions.some((c) => c.startsWith('typo') || c === 'nickname')) expect(firstOf(q)).toBe(lower(member.names[0].given[0]));
    }
  });

  it('sends a relative who was never covered with the family card and home', () => {
    for (const q of inStratum('household-not-member')) {
      const subscriber = memberOf(q.decoy?.patientId);
      expect(subscriber.role).toBe('subscriber');
      expect(q.coverageToMatch.identifier?.[0]?.value).toMatch(new RegExp(`^${subscriber.subscriberId}`));
      expect(zip5(q.memberPatient)).toBe(subscriber.addresses[0].postalCode.slice(0, 5));
      const household = members.filter((m) => m.householdIndex === subscriber.householdIndex);
      expect(household.map((m) => m.birthDate)).not.toContain(q.memberPatient.birthDate);
      for (const m of household) expect(firstNamesAlike(firstOf(q), lower(m.names[0].given[0]))).toBe(false);
    }
  });

  it('sends strangers with a member’s common name and another birth date, and people nothing like a member', () => {
    for (const q of inStratum('common-name')) {
      const member = memberOf(q.decoy?.patientId);
      expect([familyOf(q), firstOf(q)]).toEqual([lower(member.names[0].family), lower(member.names[0].given[0])]);
      expect(q.memberPatient.birthDate).not.toBe(member.birthDate);
    }
    for (const q of inStratum('non-member')) {
      expect(q.decoy).toBeUndefined();
      const id = cardId(q.coverageToMatch);
      if (id) expect(id).not.toMatch(/^W\d{11}$/);
    }
  });
});
