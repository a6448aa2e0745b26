import type { Coverage, Parameters } from '@medplum/fhirtypes';
import { queryFromMemberMatch } from '../src/matching/from-fhir.ts';
import type { MatchQuery } from '../src/matching/types.ts';
import { type GroundTruthMember, groundTruth } from '../src/seed/ground-truth.ts';
import { generateMatchQueries, MEMBER_PATIENT_ID, type MatchStratum } from '../src/seed/match-queries.ts';
import type { PopulationOptions } from '../src/seed/population.ts';
import { consentFor, NEW_PAYER_NPI } from '../test/operations/member-match-support.ts';

/*
 * bench:match's requests: labelled $member-match queries (src/seed/match-queries.ts: exact,
 * typos, nicknames, moves, new cards… and people who are not members) about members drawn from
 * the whole population, each sent as a new payer sends it: MemberPatient, CoverageToMatch, its
 * own card as CoverageToLink, and a Consent from the member naming this payer as source and the
 * new payer as recipient, valid now.
 */

export interface BenchRequest {
  stratum: MatchStratum;
  /** The member the request is about, when that person is a member. */
  patientId?: string;
  body: string;
  query: MatchQuery;
}

/**
 * Members of every `stride`-th household from `offset` on: a sample spread over the whole
 * population (and its index), small enough to hold; households whole, so the strata built on
 * relatives (twins, namesakes, a relative's card) find them.
 */
export function sampleMembers(options: PopulationOptions, stride: number, offset: number): GroundTruthMember[] {
  const members: GroundTruthMember[] = [];
  for (const member of groundTruth(options)) if (member.householdIndex % stride === offset % stride) members.push(member);
  return members;
}

/** The new payer's own card for the member (HRex CoverageToLink), different for every request. */
function coverageToLink(tag: string): Coverage {
  return {
    resourceType: 'Coverage',
    id: 'new-card',
    status: 'active',
    subscriberId: `NEW-${tag}`,
    beneficiary: { reference: `Patient/${MEMBER_PATIENT_ID}` },
    payor: [{ identifier: NEW_PAYER_NPI, display: 'New Health Plan' }],
  };
}

export function buildRequests(members: GroundTruthMember[], options: { count: number; seed: number; asOf: string }): BenchRequest[] {
  const consent = consentFor(`Patient/${MEMBER_PATIENT_ID}`);
  return generateMatchQueries(members, { queries: options.count, seed: options.seed, asOf: options.asOf }).map((labelled) => {
    const parameters: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'MemberPatient', resource: labelled.memberPatient },
        { name: 'CoverageToMatch', resource: labelled.coverageToMatch },
        { name: 'CoverageToLink', resource: coverageToLink(`${options.seed}-${labelled.index}`) },
        { name: 'Consent', resource: consent },
      ],
    };
    return {
      stratum: labelled.stratum,
      ...(labelled.patientId ? { patientId: labelled.patientId } : {}),
      body: JSON.stringify(parameters),
      query: queryFromMemberMatch(labelled.memberPatient, labelled.coverageToMatch),
    };
  });
}
