import { randomUUID } from 'node:crypto';
import type { Group, Parameters } from '@medplum/fhirtypes';
import { ScopedAccess } from '../auth/access-policy.ts';
import { serverAudit } from '../audit/trail.ts';
import type { Database, Queryable } from '../db/connection.ts';
import { type ExportEngine } from '../export/engine.ts';
import type { MembersToMatch } from '../export/request.ts';
import type { MatchMembers } from '../export/worker.ts';
import { systemAccess } from '../fhir/access.ts';
import type { ResourceValidator } from '../fhir/validation.ts';
import { FhirError, outcome } from '../fhir/errors.ts';
import * as interactions from '../fhir/interactions.ts';
import { queryFromMemberMatch } from '../matching/from-fhir.ts';
import { type MemberMatchDeps, resolveAndLinkMember } from './member-match.ts';
import { BATCH_SYSTEM, type MatchResult, type MemberResult, memberMatchGroups, RESULTS } from './bulk-member-match/groups.ts';
import { type MemberBundle, parseBulkMemberMatchInput } from './bulk-member-match/input.ts';
import { parseMemberMatchInput } from './member-match/input.ts';

/**
 * POST [base]/Group/$bulk-member-match (PDex 2.1+, OperationDefinition BulkMemberMatch): a new
 * payer sends one MemberBundle per member; each is judged exactly as $member-match judges one
 * member (same parser, brute-force guard, consent rules, matching engine and policy, decision
 * record, link and grant on a match), and the answer sorts the members into three Groups:
 * `match`, `nomatch` and `consentconstraint` (bulk-member-match/groups.ts).
 *
 * 1. Parse: the request's shape (MemberBundle parts, types, R4 validity) → 400 naming the part.
 * 2. Each member: a member whose content fails HRex rules, whom the guard throttles, who does
 *    not match (none, several, or in the review band: a review Task opens and a later request
 *    gets the operator's answer) is `nomatch`; a match whose consent cannot be honoured is
 *    `consentconstraint` (nothing linked or granted); a match with an honoured consent is
 *    `match` (CoverageToLink linked, Consent stored, grant created). One member never fails
 *    the request.
 * 3. Store the Groups, visible to the requesting partner only.
 * 4. Answer: 200 and Parameters MatchedMembers, NonMatchedMembers, ConsentConstrainedMembers
 *    (PDex 2.1 clients).
 *
 * With `Prefer: respond-async` (PDex 2.2) the request is answered once parsed: 202 and the
 * status URL of an export job that runs steps 2 and 3 in a worker (bulkMemberMatchJobs), durable
 * as every export job is, then exports exactly these Groups: its manifest lists them as Group
 * NDJSON.
 */
export const BULK_MEMBER_MATCH = 'http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch';

export interface BulkMemberMatchDeps {
  memberMatch: MemberMatchDeps;
  engine: ExportEngine;
}

interface KickOff {
  body: unknown;
  headers: Headers;
}

export async function bulkMemberMatchOperation(ctx: interactions.FhirContext, request: KickOff, deps: BulkMemberMatchDeps): Promise<Response | Parameters> {
  ctx.access.authorizeOperation(BULK_MEMBER_MATCH);
  const clientId = ctx.access.caller?.clientId ?? 'baton';
  const respondAsync = /(?:^|[,;\s])respond-async(?:$|[,;\s])/.test(request.headers.get('prefer') ?? '');

  // 1. Parse
  const bundles = parseBulkMemberMatchInput(request.body, ctx.validator);
  const batchId = randomUUID();
  const requester = [...(ctx.access.caller?.organization ?? [])];

  // 2-4 later, in a worker: a job that matches the members, stores the Groups and exports them.
  if (respondAsync) {
    const started = await deps.engine.startExport(ctx, {
      kind: 'system',
      types: ['Group'],
      typeFilters: [{ type: 'Group', query: new URLSearchParams({ identifier: `${BATCH_SYSTEM}|${batchId}` }).toString() }],
      requestUrl: `${ctx.baseUrl}/Group/$bulk-member-match`,
      membersToMatch: { batchId, requester, body: request.body },
    });
    return new Response(JSON.stringify(outcome('information', 'informational', `${bundles.length} member(s) accepted for matching into Groups (${BATCH_SYSTEM}|${batchId}); poll the Content-Location for their manifest`)), {
      status: 202,
      headers: { 'Content-Type': 'application/fhir+json; charset=utf-8', 'Content-Location': started.statusUrl },
    });
  }

  // 2. Each member, one after the other (each holds its own transaction)
  const members: MemberResult[] = [];
  for (const bundle of bundles) members.push(await judgeMember(ctx, deps.memberMatch, bundle, clientId));

  // 3. Store the Groups
  const groups = memberMatchGroups(members, { batchId, clientId, requester, date: new Date().toISOString().slice(0, 10) });
  const stored = await storeGroups(ctx, groups);

  // 4. Answer
  return resultParameters(stored);
}

/**
 * Steps 2 and 3 of an async request, as an export worker runs them (MatchMembers): under the
 * requesting partner's identity (its Organization identifiers as at the kick-off, which its
 * consents name), audited as Baton's work on its behalf. A worker that dies midway leaves the
 * job to another, which judges every member again: linking a member is idempotent, and the
 * Groups are stored with the step's record, once.
 */
export function bulkMemberMatchJobs(deps: { memberMatch: MemberMatchDeps; db: Database; baseUrl: string; validator: ResourceValidator }): MatchMembers {
  return async (job, record) => {
    const pending = job.parameters.membersToMatch as MembersToMatch;
    const { clientId, kind, scopes } = job.caller;
    const access = new ScopedAccess({ clientId, kind, scopes, organization: pending.requester }, deps.baseUrl);
    const requestId = `bulk-member-match-${job.id}`;
    const audit = serverAudit(deps.baseUrl, requestId, '/Group/$bulk-member-match', { clientId, kind });
    const ctx: interactions.FhirContext = { db: deps.db, q: deps.db, inTransaction: false, baseUrl: deps.baseUrl, validator: deps.validator, access, audit, requestId };
    const members: MemberResult[] = [];
    for (const bundle of parseBulkMemberMatchInput(pending.body, deps.validator)) members.push(await judgeMember(ctx, deps.memberMatch, bundle, clientId));
    const groups = memberMatchGroups(members, { batchId: pending.batchId, clientId, requester: pending.requester, date: new Date().toISOString().slice(0, 10) });
    await storeGroups(ctx, groups, record);
  };
}

/** One member, as $member-match would judge it; every way of not matching is `nomatch`. */
async function judgeMember(ctx: interactions.FhirContext, deps: MemberMatchDeps, bundle: MemberBundle, clientId: string): Promise<MemberResult> {
  const submitted = { memberPatient: bundle.memberPatient, coverageToMatch: bundle.coverageToMatch };
  const nomatch: MemberResult = { result: 'nomatch', ...submitted };
  const input = memberInput(ctx, bundle);
  if (!input) return nomatch;
  const query = queryFromMemberMatch(input.memberPatient, input.coverageToMatch);
  // HRex mm-7: a throttled member is reported as not matched, which says nothing about membership.
  if (!(await guardAllows(ctx, deps, clientId, query))) return nomatch;
  const resolved = await resolveAndLinkMember(ctx, deps, { input, query, clientId, consent: deps.consent(input, ctx) });
  if (resolved.outcome === 'matched') return { result: 'match', ...submitted, patientId: resolved.patientId };
  if (resolved.outcome === 'consent-refused' && resolved.patientId) return { result: 'consentconstraint', ...submitted };
  return nomatch;
}

/** The member's parts under $member-match's HRex rules; undefined when they fail them (422 there, `nomatch` here). */
function memberInput(ctx: interactions.FhirContext, bundle: MemberBundle): ReturnType<typeof parseMemberMatchInput> | undefined {
  try {
    return parseMemberMatchInput(bundle.request, { consentRequired: true, validator: ctx.validator });
  } catch (error) {
    if (error instanceof FhirError && error.status < 500) return undefined;
    throw error;
  }
}

async function guardAllows(ctx: interactions.FhirContext, deps: MemberMatchDeps, clientId: string, query: ReturnType<typeof queryFromMemberMatch>): Promise<boolean> {
  try {
    await deps.guard(ctx, clientId, query);
    return true;
  } catch (error) {
    if (error instanceof FhirError && error.status === 429) return false;
    throw error;
  }
}

/** Baton writes the Groups (a partner may not write Group), the caller's identity stays on the audit; `within` joins their transaction. */
async function storeGroups(ctx: interactions.FhirContext, groups: Map<MatchResult, Group>, within?: (q: Queryable) => Promise<void>): Promise<Map<MatchResult, Group>> {
  const access = { ...systemAccess, ...(ctx.access.caller ? { caller: ctx.access.caller } : {}) };
  return ctx.db.transaction(async (q) => {
    const writes: interactions.FhirContext = { ...ctx, q, inTransaction: true, access };
    const stored = new Map<MatchResult, Group>();
    for (const [result, group] of groups) {
      const created = await interactions.create(writes, 'Group', group);
      stored.set(result, created.resource as Group);
    }
    await ctx.audit.flush(q);
    await within?.(q);
    return stored;
  });
}

/** PDex 2.1 pdex-parameters-multi-member-match-bundle-out. */
function resultParameters(groups: Map<MatchResult, Group>): Parameters {
  return { resourceType: 'Parameters', parameter: [...groups].map(([result, group]) => ({ name: RESULTS[result].parameter, resource: group })) };
}
