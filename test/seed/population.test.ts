import type { Coverage, Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { type GroundTruthMember, groundTruth } from '../../src/seed/ground-truth.ts';
import { MEMBER_ID_SYSTEM } from '../../src/seed/identifiers.ts';
import { generatePopulation, type PopulationOptionsInput, populationOptions } from '../../src/seed/population.ts';
import { RATES } from '../../src/seed/rates.ts';

const resourcesOf = (input: PopulationOptionsInput): Resource[] => [...generatePopulation(populationOptions(input))].flatMap((chunk) => chunk.resources);
const membersOf = (input: PopulationOptionsInput): GroundTruthMember[] => [...groundTruth(populationOptions(input))];
const yearsBetween = (earlier: string, later: string) => (Date.parse(later) - Date.parse(earlier)) / (365.25 * 86_400_000);
function groupBy<T, K>(items: T[], key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
}

/** A population large enough for rates: about 8,800 households. */
const LARGE = membersOf({ members: 20_000, seed: 11 });

describe('synthetic population', () => {
  it('is the same for the same seed and different for another', () => {
    const first = resourcesOf({ members: 300, seed: 42 });
    expect(JSON.stringify(resourcesOf({ members: 300, seed: 42 }))).toBe(JSON.stringify(first));
    const other = resourcesOf({ members: 300, seed: 43 });
    expect(other.find((r) => r.resourceType === 'Patient')).not.toEqual(first.find((r) => r.resourceType === 'Patient'));
  });

  it('keeps each household the same whatever the population size, and the demographics the same without clinical data', () => {
    const small = membersOf({ members: 100, seed: 5 });
    const large = membersOf({ members: 1_000, seed: 5 });
    const complete = small.filter((m) => m.householdIndex < small[small.length - 1].householdIndex);
    expect(large.slice(0, complete.length)).toEqual(complete);
    const patients = (clinical: boolean) => resourcesOf({ members: 100, seed: 5, clinical }).filter((r) => r.resourceType === 'Patient');
    expect(patients(false)).toEqual(patients(true));
  });

  it.each([1, 2, 37, 500])('holds exactly %i members with ids in order and unique member ids', (members) => {
    const truth = membersOf({ members, seed: 3 });
    expect(truth.map((m) => m.patientId)).toEqual(Array.from({ length: members }, (_, i) => `seed3-patient-${i + 1}`));
    expect(new Set(truth.map((m) => m.memberId)).size).toBe(members);
    const resources = resourcesOf({ members, seed: 3 });
    expect(resources.filter((r) => r.resourceType === 'Patient')).toHaveLength(members);
    expect(resources.filter((r) => r.resourceType === 'Coverage')).toHaveLength(members);
  });

  it('builds households of a subscriber, at most one spouse and children of plausible ages', () => {
    const households = groupBy(LARGE, (m) => m.householdIndex);
    const asOf = populationOptions({ members: 1 }).asOf;
    for (const members of households.values()) {
      const [subscriber, ...dependents] = members;
      expect(subscriber).toMatchObject({ role: 'subscriber', personCode: '01', memberId: `${subscriber.subscriberId}01` });
      expect(yearsBetween(subscriber.birthDate, asOf)).toBeGreaterThanOrEqual(18);
      expect(dependents.filter((m) => m.role === 'spouse').length).toBeLessThanOrEqual(1);
      const adults = members.filter((m) => m.role !== 'child');
      for (const m of dependents) {
        expect(m.subscriberId).toBe(subscriber.subscriberId);
        expect(m.memberId).toBe(`${m.subscriberId}${m.personCode}`);
        if (m.role !== 'child') continue;
        expect(yearsBetween(m.birthDate, asOf)).toBeLessThan(26);
        for (const parent of adults) expect(yearsBetween(parent.birthDate, m.birthDate), `${parent.patientId} → ${m.patientId}`).toBeGreaterThanOrEqual(17.9);
        expect(m.relations.filter((r) => r.kind === 'parent').map((r) => r.patientId)).toEqual(adults.map((a) => a.patientId));
      }
    }
    const kinds = new Set([...households.values()].map((members) => members.map((m) => m.role).join(',')));
    expect(kinds).toContain('subscriber');
    expect(kinds).toContain('subscriber,spouse');
    expect(kinds).toContain('subscriber,spouse,child,child');
    expect(kinds).toContain('subscriber,child');
  });

  it('links every dependent Coverage to the subscriber, the household card and the payer', () => {
    const resources = resourcesOf({ members: 400, seed: 8 });
    const truth = new Map(membersOf({ members: 400, seed: 8 }).map((m) => [m.patientId, m]));
    const coverages = resources.filter((r): r is Coverage => r.resourceType === 'Coverage');
    for (const coverage of coverages) {
      const member = truth.get(coverage.beneficiary.reference?.replace('Patient/', '') ?? '') as GroundTruthMember;
      const subscriber = [...truth.values()].find((m) => m.householdIndex === member.householdIndex && m.role === 'subscriber') as GroundTruthMember;
      expect(coverage).toMatchObject({
        subscriberId: member.subscriberId,
        subscriber: { reference: `Patient/${subscriber.patientId}` },
        dependent: member.personCode,
        identifier: [{ system: MEMBER_ID_SYSTEM, value: member.memberId }],
        relationship: { coding: [{ code: { subscriber: 'self', spouse: 'spouse', child: 'child' }[member.role] }] },
        payor: [{ reference: 'Organization/baton-payer' }],
        period: member.coverage,
      });
      expect(coverage.class?.map((c) => c.type.coding?.[0].code)).toEqual(['group', 'plan']);
    }
  });

  it('has twins at the twin birth rate: same birth date and surname, different first names', () => {
    const births = groupBy(
      LARGE.filter((m) => m.role === 'child'),
      (m) => `${m.householdIndex}:${m.birthGroup}`,
    );
    const twinBirths = [...births.values()].filter((children) => children.length === 2);
    expect(twinBirths.length / births.size).toBeGreaterThan(RATES.twinBirth * 0.6);
    expect(twinBirths.length / births.size).toBeLessThan(RATES.twinBirth * 1.4);
    for (const [a, b] of twinBirths) {
      expect(b.birthDate).toBe(a.birthDate);
      expect(b.names[0].family).toBe(a.names[0].family);
      expect(b.names[0].given[0]).not.toBe(a.names[0].given[0]);
      expect(a.relations).toContainEqual({ patientId: b.patientId, kind: 'twin' });
    }
  });

  it('has Jr/Sr father-son pairs at the junior rate: same full name, different birth dates', () => {
    const byId = new Map(LARGE.map((m) => [m.patientId, m]));
    const fathersOfSons = LARGE.filter(
      (m) => m.gender === 'male' && m.role !== 'child' && m.relations.some((r) => r.kind === 'child' && byId.get(r.patientId)?.gender === 'male' && byId.get(r.patientId)?.names[0].family === m.names[0].family),
    );
    const juniors = LARGE.filter((m) => m.namesakeOf);
    expect(juniors.length / fathersOfSons.length).toBeGreaterThan(RATES.junior * 0.6);
    expect(juniors.length / fathersOfSons.length).toBeLessThan(RATES.junior * 1.4);
    for (const junior of juniors) {
      const father = byId.get(junior.namesakeOf as string) as GroundTruthMember;
      expect(junior.names[0]).toMatchObject({ family: father.names[0].family, given: father.names[0].given, suffix: 'Jr' });
      expect(junior.birthDate).not.toBe(father.birthDate);
      expect(junior.relations).toContainEqual({ patientId: father.patientId, kind: 'parent', namesake: true });
      expect(father.relations).toContainEqual({ patientId: junior.patientId, kind: 'child', namesake: true });
    }
  });

  it('draws names Zipf-like: a few common surnames and given names cover a large share', () => {
    const counts = (key: (m: GroundTruthMember) => string) => [...groupBy(LARGE, key).values()].map((g) => g.length).sort((a, b) => b - a);
    const surnames = counts((m) => m.names[0].family);
    const share = (sorted: number[], top: number) => sorted.slice(0, top).reduce((a, b) => a + b, 0) / LARGE.length;
    expect(surnames.length).toBeGreaterThan(2_000);
    // Uniform over that many names, ten would cover under 0.5%.
    expect(share(surnames, 10)).toBeGreaterThan(0.08);
    expect(surnames.filter((n) => n === 1).length).toBeGreaterThan(300);
    const mostCommon = [...groupBy(LARGE, (m) => m.names[0].family).entries()].sort((a, b) => b[1].length - a[1].length)[0][0];
    expect(['Smith', 'Johnson', 'Williams', 'Brown', 'Jones']).toContain(mostCommon);
    // About 850 given names: uniform, fifty would cover 6%.
    expect(share(counts((m) => m.names[0].given[0]), 50)).toBeGreaterThan(0.25);
  });

  it('records identity drift: maiden and married names, previous addresses and legacy member ids with their periods', () => {
    const share = (has: (m: GroundTruthMember) => boolean) => LARGE.filter(has).length / LARGE.length;
    expect(share((m) => m.names.some((n) => n.use === 'maiden'))).toBeGreaterThan(0.1);
    expect(share((m) => m.addresses.some((a) => a.use === 'old'))).toBeGreaterThan(0.2);
    expect(share((m) => m.legacyMemberId !== undefined)).toBeGreaterThan(0.05);
    expect(share((m) => m.coverage.end !== undefined)).toBeGreaterThan(0.15);
    for (const m of LARGE) {
      const [currentName, ...earlier] = m.names;
      expect(currentName.use).toBe('official');
      for (const name of earlier) {
        expect(name.period?.end).toBeDefined();
        expect(name.family).not.toBe(currentName.family);
      }
      for (const address of m.addresses.slice(1)) expect(address).toMatchObject({ use: 'old', period: { end: expect.any(String) } });
      if (m.legacyMemberId) expect(m.legacyMemberId.value).not.toBe(m.memberId);
    }
    const married = LARGE.find((m) => m.names[0].family.includes('-') && m.names.some((n) => n.use === 'maiden')) as GroundTruthMember;
    expect(married.names[0].family.startsWith(`${married.names[1].family}-`)).toBe(true);
  });

  it('writes US-like addresses and phones', () => {
    for (const m of LARGE.slice(0, 2_000)) {
      for (const address of m.addresses) {
        expect(address.line[0]).toMatch(/^\d+ ([NSEW]{1,2} )?[A-Z][a-z]+ (St|Ave|Rd|Dr|Ln|Ct|Way|Blvd|Pl|Cir|Ter|Pkwy|Trl|Loop|Hwy)$/);
        expect(address.postalCode).toMatch(/^\d{5}(-\d{4})?$/);
        expect(address.state).toMatch(/^[A-Z]{2}$/);
      }
      for (const phone of m.phones) expect(phone.value).toMatch(/^[2-9]\d{2}-[2-9]\d{2}-\d{4}$/);
      if (m.email) expect(m.email).toMatch(/^[a-z0-9._]+@example\.(com|net|org)$/);
    }
  });

  it.each([
    [{ members: 0 }, /members must be an integer/],
    [{ members: 1.5 }, /members must be an integer/],
    [{ members: 10, seed: -1 }, /seed must be/],
    [{ members: 10, idPrefix: 'bad-prefix' }, /id prefix/],
    [{ members: 10, asOf: '2026-02-30' }, /as-of date/],
    [{ members: 10, householdShares: { family: -1 } }, /share of family/],
    [{ members: 10, householdShares: { single: 0, couple: 0, family: 0, 'single-parent': 0 } }, /at least one household kind/],
  ])('refuses options %j', (input, message) => {
    expect(() => populationOptions(input as PopulationOptionsInput)).toThrow(message);
  });

  it('follows the household shares asked for', () => {
    const onlyFamilies = membersOf({ members: 500, seed: 2, householdShares: { single: 0, couple: 0, 'single-parent': 0 } });
    const households = [...groupBy(onlyFamilies, (m) => m.householdIndex).values()];
    // The last household may be cut short to hold exactly 500 members.
    for (const members of households.slice(0, -1)) expect(members.map((m) => m.role).slice(0, 3)).toEqual(['subscriber', 'spouse', 'child']);
  });
});
