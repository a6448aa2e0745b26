import type { Coverage, Group, GroupMember, Identifier, Patient } from '@medplum/fhirtypes';
import { REQUESTING_CLIENT_TAG } from '../../auth/access-policy.ts';
import { OWN_ORGANIZATION_ID } from '../../fhir/own-organization.ts';

/**
 * The result Groups of $bulk-member-match (PDex 2.1/2.2: pdex-member-match-group for `match`,
 * pdex-member-no-match-group for `nomatch` and `consentconstraint`), one per result code of
 * PdexMultiMemberMatchResultCS:
 *
 * - type person, actual true, code = the result, managingEntity = this payer's Organization;
 * - characteristic (code = the result, exclude false, period.start = the day of the match)
 *   whose valueReference identifies the requesting payer by its Organization identifier;
 * - each member's submitted demographics contained, and pointed at from member.entity by the
 *   base-ext-match-parameters extension; member.entity references the matched Patient in the
 *   match Group, the contained copy otherwise ("a relative reference to the failed patient
 *   record"). Nothing about why a member failed is told (no consent details in Groups).
 * - each member's submitted CoverageToMatch contained too, pointed at by the
 *   base-ext-match-coverage extension (PDex, FHIR-55927, §pdex-139d: SHALL when the same patient
 *   was submitted with several coverages, MAY otherwise; given for every member, so a requester
 *   can always tell which (patient, coverage) pair an entry answers, and Baton need not decide
 *   when two submitted Patients are "the same"). Its references to the submitted Patient point
 *   at the contained copy (a `Patient/<id>` of the requester's would name a resource here).
 *
 * Identifiers: the batch (`urn:baton:bulk-member-match|<id>`, which finds the request's Groups)
 * and, as in the PDex examples, the requesting payer's identifiers. The meta.tag naming the
 * requesting client makes the Groups that partner's alone (src/auth/access-policy.ts).
 */
export const RESULT_SYSTEM = 'http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PdexMultiMemberMatchResultCS';
export const BATCH_SYSTEM = 'urn:baton:bulk-member-match';
const MATCH_PARAMETERS = 'http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/base-ext-match-parameters';
const MATCH_COVERAGE = 'http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/base-ext-match-coverage';
const PROFILE = {
  match: 'http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-match-group',
  failed: 'http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-no-match-group',
};

export type MatchResult = 'match' | 'nomatch' | 'consentconstraint';

export const RESULTS: Record<MatchResult, { display: string; name: string; parameter: string }> = {
  match: { display: 'Matched', name: 'Matched Members', parameter: 'MatchedMembers' },
  nomatch: { display: 'Not Matched', name: 'Non-Matched Members', parameter: 'NonMatchedMembers' },
  consentconstraint: { display: 'Consent Constraint', name: 'Consent-Constrained Members', parameter: 'ConsentConstrainedMembers' },
};

export interface MemberResult {
  result: MatchResult;
  /** The submitted MemberPatient. */
  memberPatient: Patient;
  /** The submitted CoverageToMatch. */
  coverageToMatch: Coverage;
  /** The local member, for `match`. */
  patientId?: string;
}

export interface GroupContext {
  batchId: string;
  clientId: string;
  /** The requesting payer's Organization identifiers (its registration). */
  requester: readonly Identifier[];
  /** The day of the match (YYYY-MM-DD). */
  date: string;
}

/** The match Group always (MatchedMembers 1..1), the other two when they have members. */
export function memberMatchGroups(members: readonly MemberResult[], context: GroupContext): Map<MatchResult, Group> {
  const groups = new Map<MatchResult, Group>();
  for (const result of ['match', 'nomatch', 'consentconstraint'] as const) {
    const these = members.filter((member) => member.result === result);
    if (result === 'match' || these.length > 0) groups.set(result, resultGroup(result, these, context));
  }
  return groups;
}

function resultGroup(result: MatchResult, members: readonly MemberResult[], context: GroupContext): Group {
  const code = { coding: [{ system: RESULT_SYSTEM, code: result, display: RESULTS[result].display }] };
  const contained: (Patient | Coverage)[] = [];
  const member: GroupMember[] = members.map((m, i) => {
    const id = `member-${i + 1}`;
    const coverageId = `coverage-${i + 1}`;
    contained.push(containedCopy(m.memberPatient, id), containedCoverage(m.coverageToMatch, coverageId, m.memberPatient.id, `#${id}`));
    const extension = [
      { url: MATCH_PARAMETERS, valueReference: { reference: `#${id}` } },
      { url: MATCH_COVERAGE, valueReference: { reference: `#${coverageId}` } },
    ];
    return { entity: { extension, reference: result === 'match' ? `Patient/${m.patientId as string}` : `#${id}` } };
  });
  // A requester known by no Organization identifier is named by its client id.
  const requester = context.requester.length > 0 ? context.requester : [{ system: 'urn:baton:client-id', value: context.clientId }];
  return {
    resourceType: 'Group',
    meta: { profile: [result === 'match' ? PROFILE.match : PROFILE.failed], tag: [{ system: REQUESTING_CLIENT_TAG, code: context.clientId }] },
    ...(contained.length > 0 ? { contained } : {}),
    identifier: [{ system: BATCH_SYSTEM, value: context.batchId }, ...requester.map((i) => ({ system: i.system, value: i.value }))],
    type: 'person',
    actual: true,
    code,
    name: RESULTS[result].name,
    managingEntity: { reference: `Organization/${OWN_ORGANIZATION_ID}` },
    characteristic: requester.map((i) => ({ code, valueReference: { identifier: { system: i.system, value: i.value } }, exclude: false, period: { start: context.date } })),
    member,
  };
}

/**
 * The submitted Patient as a contained resource: its own id within the Group (submitted ids
 * repeat across members), and no meta, narrative or nested resources (R4 dom-2, dom-4, dom-5
 * and the rule that contained resources carry no narrative).
 */
function containedCopy(patient: Patient, id: string): Patient {
  const { id: _id, meta: _meta, text: _text, contained: _contained, ...rest } = patient;
  return { ...rest, resourceType: 'Patient', id };
}

/**
 * The submitted CoverageToMatch as a contained resource, stripped as the Patient is; every
 * reference to the submitted Patient (`Patient/<its id>`: beneficiary, subscriber,
 * policyHolder) points at the Patient's contained copy instead.
 */
function containedCoverage(coverage: Coverage, id: string, patientId: string | undefined, patientCopy: string): Coverage {
  const { id: _id, meta: _meta, text: _text, contained: _contained, ...rest } = coverage;
  const submitted = patientId ? `Patient/${patientId}` : undefined;
  const repointed = JSON.parse(JSON.stringify(rest), (key, value: unknown) => (key === 'reference' && submitted !== undefined && value === submitted ? patientCopy : value)) as Coverage;
  return { ...repointed, resourceType: 'Coverage', id };
}
