import type { Identifier, OperationOutcome, Parameters } from '@medplum/fhirtypes';
import type { MemberMatchConfig } from '../config.ts';
import type { Queryable } from '../db/connection.ts';
import { newId } from '../db/ids.ts';
import { FhirError } from '../fhir/errors.ts';
import { auditedTransaction, type FhirContext } from '../fhir/interactions.ts';
import type { MatchDecision } from '../matching/decide.ts';
import { queryFromMemberMatch } from '../matching/from-fhir.ts';
import { catchUp, findCandidates, termFrequenciesFor } from '../matching/index-store.ts';
import type { MatchingPolicy } from '../matching/policy.ts';
import { resolveMember } from '../matching/resolve.ts';
import type { Metrics } from '../ops/metrics.ts';
import { type DecisionOutcome, recordDecision, requestHash, reviewOfRequest } from './member-match/decisions.ts';
import { parseMemberMatchInput } from './member-match/input.ts';
import { linkMatchedMember, type MatchLink } from './member-match/link.ts';
import { createReviewTask } from './member-match/review.ts';

/**
 * POST [base]/Patient/$member-match (Da Vinci HRex 1.2, OperationDefinition member-match):
 * a new payer sends the member's demographics (MemberPatient), the old card (CoverageToMatch),
 * optionally its own card (CoverageToLink) and the member's Consent; the answer is the one
 * matching member's unique identifier, or 422.
 *
 * 1. Parse and check the Parameters (400/422 naming the parameter and rule, never a value).
 * 2. Throttle brute force: one client trying many cards with the same demographics (mm-7, 429).
 * 3. Evaluate the Consent: active, in period, this payer as source, the caller as recipient.
 * 4. Resolve identity: block in the index, compare, score, decide under the policy in force.
 * 5. Act: on a match link CoverageToLink, store the Consent, grant the partner the member;
 *    in the review band open a review Task; store the decision in every case.
 * 6. Answer: MemberIdentifier (and MemberId unless configured off), or 422 whose code says
 *    which case it is and whose text says nothing about the member.
 */
export const MEMBER_MATCH = 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match';
export const OUTCOME_SYSTEM = 'urn:baton:member-match-outcome';

export interface MemberMatchDeps {
  settings: MemberMatchConfig;
  metrics: Metrics;
  policyInForce: (ctx: FhirContext) => Promise<MatchingPolicy>;
  /** Consent evaluation and the brute-force guard, bound to their configuration. */
  consent: ConsentCheck;
  guard: (ctx: FhirContext, clientId: string, query: ReturnType<typeof queryFromMemberMatch>) => Promise<void>;
}

export type ConsentCheck = (input: ReturnType<typeof parseMemberMatchInput>, ctx: FhirContext) => { ok: true; grant?: MatchLink['grant'] } | { ok: false; code: string; diagnostics: string; expression: string[] };

export async function memberMatchOperation(ctx: FhirContext, body: unknown, deps: MemberMatchDeps): Promise<Parameters> {
  ctx.access.authorizeOperation(MEMBER_MATCH);
  const clientId = ctx.access.caller?.clientId ?? 'baton';

  // 1. Parse and check
  const input = parseMemberMatchInput(body, { consentRequired: deps.settings.consentRequired, validator: ctx.validator });
  const query = queryFromMemberMatch(input.memberPatient, input.coverageToMatch);

  // 2. Throttle brute force
  await deps.guard(ctx, clientId, query);

  // 3. Evaluate the consent: a consent that cannot be honoured is refused before any matching.
  const consent = deps.consent(input, ctx);
  if (!consent.ok) throw refusal('consent', consent.code, 'The consent cannot be honoured: ' + consent.diagnostics, consent.expression);

  // 4. Resolve identity, 5. act, and 6. answer
  const resolved = await resolveAndLinkMember(ctx, deps, { input, query, clientId, consent });
  switch (resolved.outcome) {
    case 'matched':
      return answer(resolved.identifier, deps.settings.memberId ? resolved.patientId : undefined);
    case 'review':
      throw underReview(resolved.taskId);
    case 'ambiguous':
      throw refusal('multiple-matches', 'multiple-matches', 'More than one member matches the request; none was chosen');
    case 'consent-refused':
      // Unreachable here (the consent was honoured above); kept so every outcome has its answer.
      throw refusal('consent', resolved.refusal.code, 'The consent cannot be honoured: ' + resolved.refusal.diagnostics, resolved.refusal.expression);
    case 'no-match':
      throw refusal('not-found', 'no-match', 'No unique member matches the request');
  }
}

/** What became of one member's request, as $member-match and $bulk-member-match report it. */
export type MemberResolution =
  | { outcome: 'matched'; patientId: string; identifier: Identifier }
  /** In the review band: a review Task is open (or was, and is still undecided). */
  | { outcome: 'review'; taskId: string | null }
  | { outcome: 'ambiguous' }
  | { outcome: 'no-match' }
  /** The consent cannot be honoured; `patientId` when the member was matched all the same (nothing was linked or granted). */
  | { outcome: 'consent-refused'; patientId?: string; refusal: Extract<ReturnType<ConsentCheck>, { ok: false }> };

export interface MemberRequest {
  input: ReturnType<typeof parseMemberMatchInput>;
  query: ReturnType<typeof queryFromMemberMatch>;
  clientId: string;
  consent: ReturnType<ConsentCheck>;
}

/**
 * The per-member core of $member-match and $bulk-member-match, after parsing, the brute-force
 * guard and the consent's evaluation: an operator's answer to this request if there is one,
 * else resolve the identity under the policy in force; on a match with an honoured consent link
 * CoverageToLink, store the Consent and grant the partner the member; in the review band open
 * a review Task; store the decision in every case. A refused consent is never linked or granted
 * (and opens no review: no approval could release the data).
 */
export async function resolveAndLinkMember(ctx: FhirContext, deps: MemberMatchDeps, request: MemberRequest): Promise<MemberResolution> {
  const { input, query, clientId, consent } = request;
  // A request an operator has reviewed, or is reviewing, gets that answer.
  const hash = requestHash(clientId, query);
  const reviewed = await reviewOfRequest(ctx.q, clientId, hash);
  if (reviewed?.outcome === 'review') return { outcome: 'review', taskId: reviewed.taskId };
  if (reviewed?.outcome === 'rejected') return { outcome: 'no-match' };
  if (reviewed?.outcome === 'approved' && reviewed.patientId) {
    if (!consent.ok) return { outcome: 'consent-refused', patientId: reviewed.patientId, refusal: consent };
    return matched(ctx, input, clientId, reviewed.patientId, consent.grant);
  }

  await catchUp(ctx.db);
  const [policy, blocking, termFrequencies] = await Promise.all([deps.policyInForce(ctx), findCandidates(ctx.q, query), termFrequenciesFor(ctx.q, query)]);
  const decision = resolveMember(query, blocking.candidates, { policy, useCase: deps.settings.useCase, termFrequencies });

  const requestId = ctx.requestId;
  const record = (q: Queryable, outcome: DecisionOutcome, extra: { patientId?: string; taskId?: string; pending?: unknown } = {}) =>
    recordDecision(q, { clientId, requestHash: hash, decision, outcome, ...(requestId ? { requestId } : {}), ...extra });

  if ((decision.tier === 'deterministic' || decision.tier === 'probabilistic') && decision.candidateId) {
    const patientId = decision.candidateId;
    if (!consent.ok) {
      await record(ctx.db, 'consent-refused', { patientId });
      return { outcome: 'consent-refused', patientId, refusal: consent };
    }
    return matched(ctx, input, clientId, patientId, consent.grant, (q) => record(q, 'matched', { patientId }));
  }
  if (decision.tier === 'review' && consent.ok) {
    const taskId = await auditedTransaction(ctx, async (q) => {
      const decisionId = newId();
      const task = await createReviewTask(ctx, q, { decisionId, candidates: decision.reviewCandidateIds.length });
      await recordDecision(q, { clientId, requestHash: hash, decision, outcome: 'review', taskId: task, pending: linkOf(input, clientId, '', consent.grant), ...(requestId ? { requestId } : {}) }, decisionId);
      return task;
    });
    return { outcome: 'review', taskId };
  }
  if (!consent.ok) {
    await record(ctx.db, 'consent-refused');
    return { outcome: 'consent-refused', refusal: consent };
  }
  const ambiguous = isAmbiguous(decision);
  await record(ctx.db, ambiguous ? 'ambiguous' : 'no-match');
  return { outcome: ambiguous ? 'ambiguous' : 'no-match' };
}

/** Links the request to the member (in one transaction with the decision's record, when there is one). */
async function matched(
  ctx: FhirContext,
  input: ReturnType<typeof parseMemberMatchInput>,
  clientId: string,
  patientId: string,
  grant: MatchLink['grant'],
  recordDecision?: (q: Queryable) => Promise<unknown>,
): Promise<MemberResolution> {
  const identifier = await auditedTransaction(ctx, async (q) => {
    const linked = await linkMatchedMember(ctx, q, linkOf(input, clientId, patientId, grant));
    await recordDecision?.(q);
    return linked;
  });
  // The operation's AuditEvent names the member it resolved (BALP patient-specific pattern).
  ctx.audit.returned([{ resourceType: 'Patient', id: patientId, content: { resourceType: 'Patient', id: patientId } }]);
  return { outcome: 'matched', patientId, identifier };
}

/** Candidates that scored for a match but could not be told apart (HRex: several matches are no match). */
function isAmbiguous(decision: MatchDecision): boolean {
  return decision.reasons.some((reason) => reason.code === 'ambiguous' || reason.code === 'margin');
}

function linkOf(input: ReturnType<typeof parseMemberMatchInput>, clientId: string, patientId: string, grant: MatchLink['grant']): MatchLink {
  return {
    patientId,
    clientId,
    requestPatientReference: `Patient/${input.memberPatient.id}`,
    ...(input.coverageToLink ? { coverageToLink: input.coverageToLink } : {}),
    ...(input.consent ? { consent: input.consent } : {}),
    ...(grant ? { grant } : {}),
  };
}

/** HRex member-match-out: MemberIdentifier (types MB and UMB) and, from HRex 1.1 on, MemberId. */
function answer(identifier: Identifier, patientId: string | undefined): Parameters {
  return {
    resourceType: 'Parameters',
    parameter: [{ name: 'MemberIdentifier', valueIdentifier: identifier }, ...(patientId ? [{ name: 'MemberId', valueReference: { reference: `Patient/${patientId}` } }] : [])],
  };
}

/** 422 whose issue code and details code say which case it is; the text says nothing about any member. */
function refusal(code: 'not-found' | 'multiple-matches' | 'consent' | 'incomplete', detail: string, diagnostics: string, expression?: string[]): FhirError {
  const outcome: OperationOutcome = {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: code === 'consent' ? 'security' : code,
        details: { coding: [{ system: OUTCOME_SYSTEM, code: detail }] },
        diagnostics,
        ...(expression ? { expression } : {}),
      },
    ],
  };
  return new FhirError(422, outcome);
}

function underReview(taskId: string | null): FhirError {
  return refusal('incomplete', 'under-review', `The request awaits manual review${taskId ? `; Task/${taskId} carries the outcome` : ''}`);
}
