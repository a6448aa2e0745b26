import type { Consent, Coverage, Identifier, Organization, Parameters, Patient, Resource, Task, TaskOutput } from '@medplum/fhirtypes';
import type { Database, Queryable } from '../db/connection.ts';
import { systemAccess } from '../fhir/access.ts';
import { readCurrent } from '../fhir/store.ts';
import { findResourceIds } from '../fhir/search/search.ts';
import { type Partner, readPartner } from './directory.ts';
import { emptyReport, type ImportTarget, importResources, recordExchangeProvenance } from './import.ts';
import type { JobState, Step, WorkflowJob } from './jobs.ts';
import type { PartnerClient } from './partner/types.ts';
import { chooseRoute } from './routing.ts';
import { ruleSetFor } from './routing-store.ts';
import type { Stage } from './stages.ts';
import { type DataRequest, type NamedResource, parseDataRequest } from './task-contract.ts';

/**
 * The steps of a payer-to-payer request, each reading like the part of the exchange it does:
 * validate → route → match (the partner's $member-match) → request (the partner's $everything or
 * bulk kick-off) → poll (bulk) → import. A step answers what it achieved; the worker records it
 * with the Task version, the AuditEvent and the job's next step in one transaction. A step
 * that cannot succeed throws a StepFailure (or the partner client's PartnerError).
 */
export interface StepDeps {
  db: Database;
  baseUrl: string;
  /** The partner client of a directory entry (cached per endpoint by the caller). */
  partnerClient: (partner: Partner) => PartnerClient;
  /** How long a partner's bulk export may stay in progress before the request is dead-lettered. */
  bulkTimeoutMs: number;
  importTarget: (job: WorkflowJob, partner: Partner, partnerMemberId: string, memberId: string) => ImportTarget;
  /** Extends the job's lease during a long import. */
  renewLease: () => Promise<void>;
}

export type StepResult =
  /** The step succeeded: record `stage` (when it changes) and go on with `next`, or end the request when next is 'done'. */
  | { stage?: Stage; next: Step | 'done'; state: JobState; output?: TaskOutput[]; delayMs?: number }
  /** Nothing to record yet: run the same step again after delayMs (a bulk export still running). */
  | { wait: number; state: JobState };

/** A failure decided by Baton rather than reported by a partner: `failed` for good, or dead-lettered for an operator. */
export class StepFailure extends Error {
  override name = 'StepFailure';
  constructor(
    readonly outcome: 'failed' | 'dead-lettered',
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Runs the job's step; `partner` is the directory entry the route step chose (undefined before it). */
export async function runStep(deps: StepDeps, job: WorkflowJob, task: Task, partner: Partner | undefined): Promise<StepResult> {
  const request = parseDataRequest(task);
  switch (job.step) {
    case 'validate':
      return validate(deps.db, task, request, job.state);
    case 'route':
      return route(deps.db, job, task, request);
    case 'match':
      return match(deps, chosen(partner), job, task, request);
    case 'request':
      return requestData(deps, chosen(partner), job);
    case 'poll':
      return poll(deps, chosen(partner), job);
    case 'import':
      return importData(deps, chosen(partner), job, request);
  }
}

/** validated: the consent can be honoured now and the old card names its payer. */
async function validate(q: Queryable, task: Task, request: DataRequest, state: JobState): Promise<StepResult> {
  const consent = await resolve<Consent>(q, task, request.consent);
  if (!consent) throw new StepFailure('failed', 'invalid-input', 'The consent input names a Consent that is no longer stored');
  if (consent.status !== 'active') throw new StepFailure('failed', 'consent', `The member's Consent is ${consent.status}, not active`);
  const period = consent.provision?.period;
  const now = Date.now();
  if ((period?.start && Date.parse(period.start) > now) || (period?.end && Date.parse(period.end) < now)) throw new StepFailure('failed', 'consent', "The member's Consent period does not cover today");
  const coverage = await resolve<Coverage>(q, task, request.priorCoverage);
  if (!coverage) throw new StepFailure('failed', 'invalid-input', 'The prior-coverage input names a Coverage that is no longer stored');
  if ((await payerIdentifiers(q, task, coverage)).length === 0) throw new StepFailure('failed', 'invalid-input', 'The prior coverage names no payer identifier (Coverage.payor), so no partner can be chosen');
  return { stage: 'validated', next: 'route', state };
}

/** routed: the partner endpoint chosen by the routing rules in force for this request. */
async function route(q: Queryable, job: WorkflowJob, task: Task, request: DataRequest): Promise<StepResult> {
  const coverage = (await resolve<Coverage>(q, task, request.priorCoverage))!;
  const member = await readResource<Patient>(q, 'Patient', request.memberId);
  const ruleSet = await ruleSetFor(q, job.taskId);
  if (!ruleSet) throw new StepFailure('dead-lettered', 'configuration', 'No routing rules are in force');
  const facts = {
    payer: await payerIdentifiers(q, task, coverage),
    lineOfBusiness: (coverage.type?.coding ?? []).map((c) => c.code).filter((c): c is string => c !== undefined),
    region: (member?.address ?? []).map((a) => a.state).filter((s): s is string => s !== undefined),
    requestType: request.requestType,
  };
  const rule = chooseRoute(ruleSet, facts);
  if (!rule) throw new StepFailure('failed', 'no-route', `No rule of routing version ${ruleSet.version} applies to this request's payer, line of business, region and request type`);
  const endpointId = rule.endpoint.slice('Endpoint/'.length);
  const partner = await readPartner(q, endpointId);
  const requestType = request.requestType ?? (partner.capabilities.includes('single-member') ? 'single-member' : 'bulk');
  if (!partner.capabilities.includes(requestType)) throw new StepFailure('failed', 'configuration', `Endpoint/${endpointId} does not serve ${requestType} requests`);
  return {
    stage: 'routed',
    next: 'match',
    state: { ...job.state, endpointId, ruleVersion: ruleSet.version, ruleId: rule.id, requestType },
    output: [
      { type: { text: 'partner-endpoint' }, valueReference: { reference: rule.endpoint } },
      { type: { text: 'routing-version' }, valueInteger: ruleSet.version },
      { type: { text: 'routing-rule' }, valueString: rule.id },
      { type: { text: 'request-type' }, valueCode: requestType },
    ],
  };
}

/** matched: the partner's $member-match found the member (HRex), with the consent to share. */
async function match(deps: StepDeps, partner: Partner, job: WorkflowJob, task: Task, request: DataRequest): Promise<StepResult> {
  const client = deps.partnerClient(partner);
  const parameters = await memberMatchParameters(deps.db, deps.baseUrl, task, request);
  const result = await client.memberMatch(parameters, { idempotencyKey: idempotencyKey(job, 'match') });
  const id = result.memberId ?? (await client.findPatientId(result.memberIdentifier, { idempotencyKey: idempotencyKey(job, 'find-member') }));
  return {
    stage: 'matched',
    next: 'request',
    state: { ...job.state, partnerMember: { identifier: result.memberIdentifier, id } },
    output: [{ type: { text: 'partner-member-identifier' }, valueIdentifier: result.memberIdentifier }],
  };
}

/** acknowledged: the partner accepted the data request (bulk: 202 to the kick-off; single member: $everything follows at once). */
async function requestData(deps: StepDeps, partner: Partner, job: WorkflowJob): Promise<StepResult> {
  const state = { ...job.state, acknowledgedMs: job.nowMs };
  if (job.state.requestType !== 'bulk') return { stage: 'acknowledged', next: 'import', state };
  const started = await deps.partnerClient(partner).bulkKickOff(
    { path: 'Patient/$export', method: 'POST', parameters: { resourceType: 'Parameters', parameter: [{ name: 'patient', valueReference: { reference: `Patient/${job.state.partnerMember!.id}` } }] } },
    { idempotencyKey: idempotencyKey(job, 'kick-off') },
  );
  return {
    stage: 'acknowledged',
    next: started.manifest ? 'import' : 'poll',
    state: { ...state, statusUrl: started.statusUrl, ...(started.manifest ? { manifest: started.manifest } : {}) },
  };
}

/** Waits for the partner's export, as long as its Retry-After asks, up to the bulk timeout. */
async function poll(deps: StepDeps, partner: Partner, job: WorkflowJob): Promise<StepResult> {
  const client = deps.partnerClient(partner);
  const answer = await client.bulkPoll(job.state.statusUrl!, { idempotencyKey: idempotencyKey(job, 'poll') });
  if (answer.state === 'complete') return { next: 'import', state: { ...job.state, manifest: answer.manifest } };
  if (job.nowMs - (job.state.acknowledgedMs ?? job.nowMs) > deps.bulkTimeoutMs) {
    await client.bulkCancel(job.state.statusUrl!, { idempotencyKey: idempotencyKey(job, 'cancel') }).catch(() => undefined);
    throw new StepFailure('dead-lettered', 'timeout', `The partner's export was still in progress after ${Math.round(deps.bulkTimeoutMs / 1000)} s`);
  }
  return { wait: answer.retryAfterMs, state: job.state };
}

/** fulfilled: the member's data imported with a Provenance naming the partner. */
async function importData(deps: StepDeps, partner: Partner, job: WorkflowJob, request: DataRequest): Promise<StepResult> {
  const client = deps.partnerClient(partner);
  const partnerMemberId = job.state.partnerMember!.id!;
  const target = deps.importTarget(job, partner, partnerMemberId, request.memberId);
  const report = emptyReport();
  if (job.state.requestType === 'bulk') {
    const manifest = job.state.manifest!;
    for (const [index, file] of manifest.output.entries()) {
      await importResources(target, client.download(file.url, manifest.requiresAccessToken, { idempotencyKey: idempotencyKey(job, `file-${index}`) }), report, deps.renewLease);
    }
  } else {
    await importResources(target, client.everything(partnerMemberId, { idempotencyKey: idempotencyKey(job, 'everything') }), report, deps.renewLease);
  }
  const provenance = await recordExchangeProvenance(target, report);
  const output: TaskOutput[] = [
    { type: { text: 'imported' }, valueInteger: report.imported },
    { type: { text: 'unchanged' }, valueInteger: report.unchanged },
    { type: { text: 'quarantined' }, valueInteger: report.quarantined },
  ];
  if (provenance) output.push({ type: { text: 'provenance' }, valueReference: { reference: provenance } });
  if (job.state.manifest?.error.length) output.push({ type: { text: 'partner-errors' }, valueInteger: job.state.manifest.error.length });
  return { stage: 'fulfilled', next: 'done', state: job.state, output };
}

/** The steps after routing talk to the partner routing chose. */
function chosen(partner: Partner | undefined): Partner {
  if (!partner) throw new StepFailure('dead-lettered', 'configuration', 'The request has no partner endpoint: it was not routed');
  return partner;
}

/** Derived from the Task and the step, so a retried step is recognised by the partner and never applied twice. */
function idempotencyKey(job: WorkflowJob, part: string): string {
  return `baton-${job.taskId}-${part}`;
}

/** HRex $member-match input: the member's demographics, the old card, this payer's card when there is one, and the Consent. */
async function memberMatchParameters(q: Queryable, baseUrl: string, task: Task, request: DataRequest): Promise<Parameters> {
  const member = await readResource<Patient>(q, 'Patient', request.memberId);
  if (!member) throw new StepFailure('failed', 'invalid-input', 'The member is no longer stored');
  const beneficiary = { reference: `Patient/${member.id}` };
  const prior = (await resolve<Coverage>(q, task, request.priorCoverage))!;
  const consent = (await resolve<Consent>(q, task, request.consent))!;
  const strip = <T extends Resource>(r: T): T => ({ ...r, meta: undefined, text: undefined });
  const parameter: Parameters['parameter'] = [
    { name: 'MemberPatient', resource: strip(member) },
    { name: 'CoverageToMatch', resource: strip({ ...prior, id: prior.id ?? 'prior-coverage', beneficiary }) },
  ];
  const current = await findResourceIds(q, 'Coverage', new URLSearchParams({ beneficiary: beneficiary.reference, status: 'active' }), baseUrl, systemAccess);
  const own = current.length ? await readResource<Coverage>(q, 'Coverage', current[0]) : undefined;
  if (own && own.id !== prior.id) parameter.push({ name: 'CoverageToLink', resource: strip({ ...own, beneficiary }) });
  parameter.push({ name: 'Consent', resource: strip({ ...consent, patient: beneficiary }) });
  return { resourceType: 'Parameters', parameter };
}

/** The prior payer's identifiers as `system|value`: on Coverage.payor, or on the Organization it references. */
async function payerIdentifiers(q: Queryable, task: Task, coverage: Coverage): Promise<string[]> {
  const found: Identifier[] = [];
  for (const payor of coverage.payor ?? []) {
    if (payor.identifier) found.push(payor.identifier);
    const reference = payor.reference;
    if (!reference) continue;
    const organization = reference.startsWith('#')
      ? ([...(coverage.contained ?? []), ...(task.contained ?? [])].find((r) => r.id === reference.slice(1)) as Organization | undefined)
      : reference.startsWith('Organization/')
        ? await readResource<Organization>(q, 'Organization', reference.slice('Organization/'.length))
        : undefined;
    if (organization?.resourceType === 'Organization') found.push(...(organization.identifier ?? []));
  }
  return found.filter((i) => i.system && i.value).map((i) => `${i.system}|${i.value}`);
}

async function resolve<T extends Resource>(q: Queryable, task: Task, named: NamedResource<T>): Promise<T | undefined> {
  if ('contained' in named) return named.contained;
  const [type, id] = named.reference.split('/');
  return readResource<T>(q, type, id);
}

async function readResource<T extends Resource>(q: Queryable, type: string, id: string): Promise<T | undefined> {
  const stored = await readCurrent(q, type, id);
  return stored && !stored.deleted ? (JSON.parse(stored.json) as T) : undefined;
}
