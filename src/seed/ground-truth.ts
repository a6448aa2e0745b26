import type { SyntheticHousehold, SyntheticMember } from './households.ts';
import { type PopulationOptions, generateHouseholds } from './population.ts';

/*
 * Who is who in a generated population, for evaluating identity resolution: every member with
 * their identity history and their relations inside the household. The relations are the hard
 * negatives of matching: twins (same birth date and surname), Jr/Sr (same full name, different
 * birth date), siblings and spouses on one card.
 */

export type RelationKind = 'spouse' | 'parent' | 'child' | 'sibling' | 'twin';

export interface MemberRelation {
  /** The other member. */
  patientId: string;
  /** What the other member is to this one: `parent` means the other is this member's parent. */
  kind: RelationKind;
  /** Jr/Sr: a father and son with the same full name. */
  namesake?: true;
}

export interface GroundTruthMember extends SyntheticMember {
  householdIndex: number;
  subscriberId: string;
  relations: MemberRelation[];
}

/** Relations between the members of one household, by patient id. */
export function householdRelations(household: SyntheticHousehold): Map<string, MemberRelation[]> {
  const relations = new Map<string, MemberRelation[]>(household.members.map((m) => [m.patientId, []]));
  const relate = (a: SyntheticMember, b: SyntheticMember, aToB: RelationKind, bToA: RelationKind, namesake: boolean) => {
    const extra = namesake ? { namesake: true as const } : {};
    relations.get(a.patientId)?.push({ patientId: b.patientId, kind: aToB, ...extra });
    relations.get(b.patientId)?.push({ patientId: a.patientId, kind: bToA, ...extra });
  };
  const adults = household.members.filter((m) => m.role !== 'child');
  const children = household.members.filter((m) => m.role === 'child');
  if (adults.length === 2) relate(adults[0], adults[1], 'spouse', 'spouse', false);
  for (const child of children) {
    // Both adults of a family household are the children's parents.
    for (const adult of adults) relate(child, adult, 'parent', 'child', child.namesakeOf === adult.patientId);
  }
  children.forEach((a, i) => {
    for (const b of children.slice(i + 1)) {
      const twins = a.birthGroup === b.birthGroup;
      relate(a, b, twins ? 'twin' : 'sibling', twins ? 'twin' : 'sibling', false);
    }
  });
  return relations;
}

/** Every member of the population described by `options`, in ordinal order, with their relations. */
export function* groundTruth(options: PopulationOptions): Generator<GroundTruthMember> {
  for (const household of generateHouseholds(options)) {
    const relations = householdRelations(household);
    for (const member of household.members) {
      yield { ...member, householdIndex: household.index, subscriberId: household.subscriberId, relations: relations.get(member.patientId) ?? [] };
    }
  }
}
