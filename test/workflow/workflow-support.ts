import type { Consent, Coverage, Organization, Patient, Resource, Task } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { createLogger } from '../../src/logger.ts';
import { createMetrics, type Metrics } from '../../src/ops/metrics.ts';
import { endpointResource } from '../../src/workflow/directory.ts';
import type { RequestType } from '../../src/workflow/task-contract.ts';
import { PartnerBreakers } from '../../src/workflow/partner/breakers.ts';
import { OutboundClientKeys } from '../../src/workflow/partner/client-keys.ts';
import { partnerClients } from '../../src/workflow/partners.ts';
import { publishRuleSet } from '../../src/workflow/routing-store.ts';
import type { RetryPolicy } from '../../src/workflow/retry-policy.ts';
import { WorkflowWorker } from '../../src/workflow/worker.ts';
import type { WorkflowConfig } from '../../src/config.ts';
import { type TestBaton, startBaton } from '../support/baton.ts';
import { DEFAULT_MEMBERS, type FakePartner, type FakePartnerOptions, startFakePartner } from '../support/fake-partner.ts';

/**
 * A requester Baton (the new payer) with a member who names a previous plan, and a fake partner
 * (the previous payer) on loopback that registered Baton's outbound client key; the partner is
 * in Baton's directory and the routing rules send the old card's payer to it.
 */
export const PRIOR_PAYER = { system: 'http://hl7.org/fhir/sid/us-npi', value: '1999999984' };
export const KEY_ID = 'workflow-test';
export const CLIENT_ID = 'baton-new-payer';
/** Fast retries, so tests see backoff and dead-letter in milliseconds. */
export const FAST_RETRY: Partial<RetryPolicy> = { maxAttempts: 3, budgetMs: 60_000, baseMs: 5, capMs: 20, byCode: { throttled: { baseMs: 5, capMs: 20 }, 'circuit-open': { baseMs: 5, capMs: 20 }, 'under-review': { baseMs: 5, capMs: 20 } } };

export interface WorkflowSetup {
  baton: TestBaton;
  partner: FakePartner;
  metrics: Metrics;
  worker(config?: Partial<WorkflowConfig>): WorkflowWorker;
  /** Creates the member, card and consent here and posts a data-request Task; answers the Task created. */
  request(member?: { family: string; given: string; birthDate: string; card?: string }, extra?: Partial<Task>, requestType?: 'single-member' | 'bulk'): Promise<Task>;
  /** Runs the worker until the Task reaches a stage in `until` (or fails the test after `rounds`). */
  runUntil(taskId: string, until: string[], worker?: WorkflowWorker, rounds?: number): Promise<Task>;
  task(taskId: string): Promise<Task>;
  close(): Promise<void>;
}

export const OKAFOR = { family: 'Okafor', given: 'Margaret', birthDate: '1957-04-09', card: 'W123456789-01' };

/** Members the fake partner knows besides its defaults, one per test that needs its own data. */
export const MEMBERS = ['Ndiaye', 'Brennan', 'Castillo', 'Haddad', 'Kowalski', 'Nakamura', 'Oyelaran', 'Petrov'].map((family, i) => ({
  id: family.toLowerCase(),
  family,
  given: 'Alex',
  birthDate: `19${60 + i}-03-1${i}`,
  gender: 'female' as const,
  memberId: `M${1000 + i}-01`,
}));

/** A member whose record at the partner holds data Baton must not import: an Observation without code, another person's Patient. */
export const MESSY = {
  id: 'messy',
  family: 'Quarantaine',
  given: 'Rene',
  birthDate: '1971-07-07',
  gender: 'male' as const,
  memberId: 'Q7000-01',
  resources: [
    { resourceType: 'Observation', id: 'messy-good', status: 'final', code: { text: 'Weight' }, subject: { reference: 'Patient/messy' } },
    { resourceType: 'Observation', id: 'messy-bad', status: 'final', subject: { reference: 'Patient/messy' } },
    { resourceType: 'Patient', id: 'someone-else', name: [{ family: 'Other' }] },
  ] as Resource[],
};

export const member = (i: number) => ({ family: MEMBERS[i].family, given: MEMBERS[i].given, birthDate: MEMBERS[i].birthDate, card: MEMBERS[i].memberId });

export async function setUpWorkflow(options: { partner?: FakePartnerOptions; retry?: Partial<RetryPolicy>; capabilities?: string[] } = {}): Promise<WorkflowSetup> {
  const baton = await startBaton();
  const keys = new OutboundClientKeys(baton.db);
  await keys.get(KEY_ID);
  const partner = await startFakePartner({ client: { clientId: CLIENT_ID, jwks: await keys.jwks() }, members: [...DEFAULT_MEMBERS.map((m) => ({ ...m })), ...MEMBERS.map((m) => ({ ...m })), MESSY], ...options.partner });
  const metrics = createMetrics();
  const logger = createLogger('silent');
  const organization: Organization = { resourceType: 'Organization', id: 'prior-payer', name: 'Prior Health Plan', identifier: [PRIOR_PAYER], active: true };
  await put(baton, organization);
  const endpoint = endpointResource({
    id: 'prior-payer-fhir',
    baseUrl: partner.baseUrl,
    tokenUrl: partner.tokenUrl,
    clientId: CLIENT_ID,
    keyId: KEY_ID,
    timeoutMs: 1000,
    capabilities: (options.capabilities ?? ['single-member', 'bulk']) as RequestType[],
    retryPolicy: { ...FAST_RETRY, ...options.retry },
    organization: 'Organization/prior-payer',
  });
  await put(baton, endpoint);
  await publishRuleSet(baton.db, { rules: [{ id: 'prior-payer', when: { payer: [`${PRIOR_PAYER.system}|${PRIOR_PAYER.value}`] }, endpoint: 'Endpoint/prior-payer-fhir' }] }, 'test', 'test routing', 100);
  // A partner that is back is tried again within a fifth of a second (30 s in production).
  const breakers = new PartnerBreakers({ halfOpenAfterMs: 200 });
  const clients = partnerClients({ keys, breakers, logger });
  const worker = (config: Partial<WorkflowConfig> = {}) =>
    new WorkflowWorker({
      db: baton.db,
      baseUrl: baton.ctx.baseUrl,
      validator: baton.validator,
      logger,
      metrics,
      config: { worker: true, concurrency: 4, leaseSeconds: 30, bulkTimeoutSeconds: 60, sla: {}, ...config },
      partnerClient: clients,
    });
  const defaultWorker = worker();
  const task = async (taskId: string) => (await (await baton.request(`/fhir/Task/${taskId}`)).json()) as Task;
  let counter = 0;
  return {
    baton,
    partner,
    metrics,
    worker,
    task,
    request: async (member = OKAFOR, extra = {}, requestType) => {
      counter += 1;
      const patient = await create<Patient>(baton, { resourceType: 'Patient', name: [{ family: member.family, given: [member.given] }], birthDate: member.birthDate, gender: 'female', address: [{ state: 'MA' }] });
      const coverage = await create<Coverage>(baton, {
        resourceType: 'Coverage',
        status: 'active',
        ...(member.card ? { identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] }, system: 'urn:prior-payer:member-id', value: member.card }] } : {}),
        beneficiary: { reference: `Patient/${patient.id}` },
        payor: [{ identifier: PRIOR_PAYER, display: 'Prior Health Plan' }],
      });
      const consent = await create<Consent>(baton, {
        resourceType: 'Consent',
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ system: 'http://loinc.org', code: '64292-6' }] }],
        patient: { reference: `Patient/${patient.id}` },
        policy: [{ uri: 'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular' }],
        provision: { type: 'permit', period: { start: '2026-01-01', end: '2027-12-31' } },
      });
      const response = await baton.request('/fhir/Task', { method: 'POST', json: dataRequest(patient.id!, `Coverage/${coverage.id}`, `Consent/${consent.id}`, `req-${counter}-${Date.now()}`, extra, requestType) });
      if (response.status !== 201) throw new Error(`Task create answered ${response.status}: ${await response.text()}`);
      return (await response.json()) as Task;
    },
    runUntil: async (taskId, until, runner = defaultWorker, rounds = 200) => {
      for (let round = 0; round < rounds; round += 1) {
        await runner.runPending();
        const current = await task(taskId);
        const stage = current.businessStatus?.coding?.[0]?.code;
        if (stage && until.includes(stage)) return current;
        // Backoff and Retry-After delays are due in milliseconds here; the job is not due before.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const [job] = await baton.db.execute(sql`SELECT step, status, attempts, last_error FROM workflow_jobs WHERE task_id = ${taskId}`);
      throw new Error(`Task/${taskId} did not reach ${until.join('|')}: ${JSON.stringify(job)}`);
    },
    close: async () => {
      await partner.close();
      await baton.close();
    },
  };
}

export function dataRequest(memberId: string, coverage: string, consent: string, business: string, extra: Partial<Task> = {}, requestType?: 'single-member' | 'bulk'): Task {
  return {
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    code: { coding: [{ system: 'http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp', code: 'data-request' }] },
    identifier: [{ system: 'urn:enrollment:request', value: business }],
    for: { reference: `Patient/${memberId}` },
    requester: { reference: 'Organization/baton-payer' },
    input: [
      { type: { text: 'member' }, valueReference: { reference: `Patient/${memberId}` } },
      { type: { text: 'prior-coverage' }, valueReference: { reference: coverage } },
      { type: { text: 'consent' }, valueReference: { reference: consent } },
      ...(requestType ? [{ type: { text: 'request-type' }, valueCode: requestType }] : []),
    ],
    ...extra,
  };
}

async function create<T extends { resourceType: string; id?: string }>(baton: TestBaton, resource: T): Promise<T> {
  const response = await baton.request(`/fhir/${resource.resourceType}`, { method: 'POST', json: resource });
  if (response.status !== 201) throw new Error(`create ${resource.resourceType}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

async function put(baton: TestBaton, resource: { resourceType: string; id?: string }): Promise<void> {
  const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
  if (response.status >= 300) throw new Error(`put ${resource.resourceType}: ${response.status} ${await response.text()}`);
}

export function stages(history: { entry?: { resource?: Task }[] }): string[] {
  return (history.entry ?? []).map((e) => e.resource?.businessStatus?.coding?.[0]?.code ?? '?').reverse();
}
