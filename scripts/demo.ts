/**
 * npm run demo: payer-to-payer exchange between two Baton instances, in one command.
 *
 * Starts an old payer (the demo population of synthetic members) and a new payer (empty) as child
 * processes on embedded databases in a temporary folder, registers them with each other (the new
 * payer as a partner client at the old one, whose jwks_uri is the new payer's /jwks/client; the
 * old payer in the new payer's directory and routing rules), enrolls one old-payer member at the
 * new payer (Patient, old card, HRex Consent, data-request Task) and follows the request to its
 * end. It then prints the Task's timeline, the old payer's match decision, what was imported with
 * its Provenance, and the AuditEvents on both sides. Exit code 0 when the request is fulfilled;
 * 1 (with the Task's statusReason) when it fails or does not finish within REQUEST_TIMEOUT_MS.
 *
 * The data is synthetic; the report still prints ids and codes rather than names.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AuditEvent, Bundle, Consent, Coverage, Organization, Patient, Provenance, Resource, Task } from '@medplum/fhirtypes';
import { MEMBER_MATCH } from '../src/operations/member-match.ts';
import { endpointResource } from '../src/workflow/directory.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** A loaded two-core machine starts PGlite, applies the migrations and seeds 25 members in well under this. */
const START_TIMEOUT_MS = 120_000;
/** The exchange itself takes a few seconds; a request still open after this is reported as stuck. */
const REQUEST_TIMEOUT_MS = 60_000;
/** The background sealer publishes AuditEvents about every 250 ms. */
const AUDIT_TIMEOUT_MS = 15_000;
/** A member of the demo population with claims and clinical data, and neither a twin nor half of a Jr/Sr pair (src/seed/demo.ts). */
const DEMO_MEMBER = 'demo-patient-2';
/** The outbound key the new payer signs its client assertions with at the old payer: the one every Baton creates at start. */
const KEY_ID = 'default';
/** Where the request stops on its own: done, failed, or waiting for an operator (dead-lettered, manual review). */
const FINAL_STAGES = ['fulfilled', 'failed', 'dead-lettered', 'cancelled', 'manual-review'];

interface Payer {
  label: string;
  /** Its database's folder under the demo's temporary folder. */
  folder: string;
  name: string;
  identifier: { system: string; value: string };
  seed: 'demo' | 'none';
  /** Operator scopes: the new payer's operator stands in for its enrollment system and writes. */
  adminScope: string;
}

const OLD_PAYER: Payer = { label: 'old payer', folder: 'old-payer', name: 'Old Harbor Health Plan', identifier: { system: 'http://hl7.org/fhir/sid/us-npi', value: '1999999984' }, seed: 'demo', adminScope: 'system/*.rs' };
const NEW_PAYER: Payer = { label: 'new payer', folder: 'new-payer', name: 'New Meadow Health Plan', identifier: { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' }, seed: 'none', adminScope: 'system/*.cruds' };

interface Instance {
  payer: Payer;
  process: ChildProcess;
  origin: string;
  base: string;
  adminToken: string;
  /** What the process wrote to stdout and stderr (warnings and errors only: LOG_LEVEL=warn), shown when something goes wrong. */
  log: string[];
  exited: Promise<number | null>;
}

class DemoFailure extends Error {
  override name = 'DemoFailure';
}

const instances: Instance[] = [];
const workDir = mkdtempSync(join(tmpdir(), 'baton-demo-'));
let cleaning: Promise<void> | undefined;
/** Set by Ctrl-C (or SIGTERM): what fails after it is the servers stopping, not worth a message. */
let interrupted = false;

/** Stops both servers (SIGTERM, then SIGKILL after 10 s) and removes their data; safe to call more than once. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all(
      instances.map(async (instance) => {
        if (instance.process.exitCode !== null || instance.process.signalCode !== null) return;
        instance.process.kill('SIGTERM');
        const killer = setTimeout(() => instance.process.kill('SIGKILL'), 10_000);
        await instance.exited;
        clearTimeout(killer);
      }),
    );
    rmSync(workDir, { recursive: true, force: true });
  })();
  return cleaning;
}

// Last resort when the demo exits some other way: no server outlives it (their data folder may stay behind).
process.on('exit', () => {
  for (const instance of instances) if (instance.process.exitCode === null && instance.process.signalCode === null) instance.process.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    console.error(`\n${signal}: stopping both servers`);
    void cleanUp().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });
}

/** Ports free on loopback now, held open together so that the two are different. */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  const ports = await Promise.all(
    servers.map(
      (server) =>
        new Promise<number>((resolve, reject) => {
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
        }),
    ),
  );
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function start(payer: Payer, port: number): Instance {
  const origin = `http://127.0.0.1:${port}`;
  const adminToken = randomBytes(32).toString('hex');
  // Every Baton setting is the demo's own: embedded databases and plain loopback HTTP, whatever the calling shell sets.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(BATON_|TLS_|DATABASE_URL$|PORT$|HOST$|LOG_LEVEL$)/.test(name)));
  const env: NodeJS.ProcessEnv = {
    ...inherited,
    PORT: String(port),
    HOST: '127.0.0.1',
    BATON_BASE_URL: `${origin}/fhir`,
    BATON_DATA_DIR: join(workDir, payer.folder),
    BATON_SEED: payer.seed,
    BATON_PAYER_NAME: payer.name,
    BATON_PAYER_IDENTIFIER: `${payer.identifier.system}|${payer.identifier.value}`,
    BATON_ADMIN_TOKEN: adminToken,
    BATON_ADMIN_SCOPE: payer.adminScope,
    LOG_LEVEL: 'warn',
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => log.push(chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => log.push(chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const instance: Instance = { payer, process: child, origin, base: `${origin}/fhir`, adminToken, log, exited };
  instances.push(instance);
  return instance;
}

async function waitReady(instance: Instance, startedMs: number): Promise<void> {
  while (Date.now() - startedMs < START_TIMEOUT_MS) {
    if (instance.process.exitCode !== null) throw new DemoFailure(`The ${instance.payer.label} exited with code ${instance.process.exitCode} while starting:\n${instance.log.join('')}`);
    const ready = await fetch(`${instance.origin}/readyz`).then((r) => r.ok, () => false);
    if (ready) return;
    await sleep(200);
  }
  throw new DemoFailure(`The ${instance.payer.label} was not ready after ${START_TIMEOUT_MS / 1000} s:\n${instance.log.join('')}`);
}

/** A call with the instance's admin token (the operator credential); a status other than `expect` ends the demo with the answer. */
async function call<T>(instance: Instance, method: string, path: string, options: { json?: unknown; headers?: Record<string, string>; expect?: number[] } = {}): Promise<T> {
  const response = await fetch(`${instance.origin}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${instance.adminToken}`,
      Accept: 'application/fhir+json',
      ...(options.json !== undefined ? { 'Content-Type': 'application/fhir+json' } : {}),
      ...options.headers,
    },
    ...(options.json !== undefined ? { body: JSON.stringify(options.json) } : {}),
  });
  const text = await response.text();
  if (!(options.expect ?? [200, 201]).includes(response.status)) throw new DemoFailure(`${method} ${path} at the ${instance.payer.label} answered ${response.status}: ${text.slice(0, 2000)}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

const fhir = <T>(instance: Instance, method: string, path: string, json?: unknown, headers?: Record<string, string>) => call<T>(instance, method, `/fhir/${path}`, { json, headers });

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const stageOf = (task: Task) => task.businessStatus?.coding?.[0]?.code ?? '?';
const seconds = (ms: number) => `${(ms / 1000).toFixed(3)} s`;
const heading = (text: string) => console.log(`\n== ${text} ${'='.repeat(Math.max(0, 72 - text.length))}`);

function table(rows: string[][]): void {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  for (const row of rows) console.log(`  ${row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()}`);
}

/** The old payer registers the new payer as a partner client whose keys are at the new payer's /jwks/client. */
async function registerNewPayerAtOldPayer(oldPayer: Instance, newPayer: Instance): Promise<string> {
  const registered = await call<{ client_id: string }>(oldPayer, 'POST', '/admin/clients', {
    json: {
      name: NEW_PAYER.name,
      kind: 'partner',
      organization: { identifier: [NEW_PAYER.identifier] },
      jwks_uri: `${newPayer.origin}/jwks/client`,
      scope: `system/*.rs ${MEMBER_MATCH}`,
    },
  });
  return registered.client_id;
}

/** The new payer puts the old payer in its partner directory (Organization, Endpoint) and routes the old payer's cards to it. */
async function registerOldPayerAtNewPayer(newPayer: Instance, oldPayer: Instance, clientId: string): Promise<void> {
  const smart = await call<{ token_endpoint: string }>(oldPayer, 'GET', '/fhir/.well-known/smart-configuration');
  const organization: Organization = { resourceType: 'Organization', id: 'old-payer', active: true, name: OLD_PAYER.name, identifier: [OLD_PAYER.identifier] };
  await fhir(newPayer, 'PUT', 'Organization/old-payer', organization);
  const endpoint = endpointResource({
    id: 'old-payer-fhir',
    baseUrl: oldPayer.base,
    tokenUrl: smart.token_endpoint,
    clientId,
    scope: `system/*.rs ${MEMBER_MATCH}`,
    keyId: KEY_ID,
    capabilities: ['single-member'],
    organization: 'Organization/old-payer',
  });
  await fhir(newPayer, 'PUT', 'Endpoint/old-payer-fhir', endpoint);
  await call(newPayer, 'PUT', '/admin/routing', {
    json: {
      rules: [{ id: 'old-harbor', when: { payer: [`${OLD_PAYER.identifier.system}|${OLD_PAYER.identifier.value}`] }, endpoint: 'Endpoint/old-payer-fhir' }],
      reason: 'npm run demo: cards of the old payer go to its FHIR endpoint',
      operator: 'demo',
    },
  });
}

/**
 * The member enrolls at the new payer: demographics as they give them (those of a synthetic
 * old-payer member), the old card (the old payer's identifier as payor, the member id printed on
 * it) and their HRex Consent for the old payer to disclose to the new payer.
 */
async function enroll(newPayer: Instance, oldPayer: Instance): Promise<{ task: Task; memberId: string }> {
  const old = await fhir<Patient>(oldPayer, 'GET', `Patient/${DEMO_MEMBER}`);
  const cards = await fhir<Bundle<Coverage>>(oldPayer, 'GET', `Coverage?beneficiary=Patient/${DEMO_MEMBER}`);
  const card = cards.entry?.[0]?.resource;
  const memberIdentifier = card?.identifier?.find((i) => i.type?.coding?.some((c) => c.code === 'MB')) ?? old.identifier?.find((i) => i.type?.coding?.some((c) => c.code === 'MB'));
  if (!card || !memberIdentifier) throw new DemoFailure(`The old payer's demo population has no card for ${DEMO_MEMBER}`);

  const patient = await fhir<Patient>(newPayer, 'POST', 'Patient', {
    resourceType: 'Patient',
    name: old.name?.filter((n) => n.use !== 'old' && !n.period?.end).slice(0, 1),
    gender: old.gender,
    birthDate: old.birthDate,
    address: old.address?.filter((a) => a.use !== 'old' && !a.period?.end).slice(0, 1),
    telecom: old.telecom?.filter((t) => !t.period?.end).slice(0, 1),
  } satisfies Patient);
  const member = `Patient/${patient.id}`;
  const oldCard = await fhir<Coverage>(newPayer, 'POST', 'Coverage', {
    resourceType: 'Coverage',
    status: 'active',
    identifier: [{ type: memberIdentifier.type, system: memberIdentifier.system, value: memberIdentifier.value }],
    ...(card.subscriberId ? { subscriberId: card.subscriberId } : {}),
    ...(card.relationship ? { relationship: card.relationship } : {}),
    beneficiary: { reference: member },
    payor: [{ identifier: OLD_PAYER.identifier, display: OLD_PAYER.name }],
    ...(card.period ? { period: card.period } : {}),
  } satisfies Coverage);
  const year = new Date().getUTCFullYear();
  const consent = await fhir<Consent>(newPayer, 'POST', 'Consent', {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IDSCL' }] }],
    patient: { reference: member },
    performer: [{ reference: member }],
    sourceReference: { reference: 'http://example.org/DocumentReference/demo-consent-form' },
    policy: [{ uri: 'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular' }],
    provision: {
      type: 'permit',
      period: { start: `${year - 1}-01-01`, end: `${year + 1}-12-31` },
      actor: [
        { role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'performer' }] }, reference: { identifier: OLD_PAYER.identifier, display: OLD_PAYER.name } },
        { role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { identifier: NEW_PAYER.identifier, display: NEW_PAYER.name } },
      ],
      action: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentaction', code: 'disclose' }] }],
    },
  } satisfies Consent);

  const request: Task = {
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    code: { coding: [{ system: 'http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp', code: 'data-request' }] },
    identifier: [{ system: 'urn:demo:enrollment', value: randomUUID() }],
    for: { reference: member },
    requester: { reference: 'Organization/baton-payer' },
    input: [
      { type: { text: 'member' }, valueReference: { reference: member } },
      { type: { text: 'prior-coverage' }, valueReference: { reference: `Coverage/${oldCard.id}` } },
      { type: { text: 'consent' }, valueReference: { reference: `Consent/${consent.id}` } },
    ],
  };
  const task = await fhir<Task>(newPayer, 'POST', 'Task', request, { 'Idempotency-Key': `"${randomUUID()}"` });
  return { task, memberId: patient.id! };
}

async function waitForEnd(newPayer: Instance, taskId: string): Promise<Task> {
  const startedMs = Date.now();
  for (;;) {
    const task = await fhir<Task>(newPayer, 'GET', `Task/${taskId}`);
    if (FINAL_STAGES.includes(stageOf(task))) return task;
    if (Date.now() - startedMs > REQUEST_TIMEOUT_MS) return task;
    await sleep(100);
  }
}

function printTimeline(history: Task[]): void {
  heading('Task timeline at the new payer (Task/_history: one version per stage)');
  const times = history.map((t) => Date.parse(t.meta?.lastUpdated ?? ''));
  const rows = [['version', 'stage', 'Task.status', 'at', 'took (from previous stage)']];
  history.forEach((task, i) => {
    rows.push([task.meta?.versionId ?? '?', stageOf(task), task.status, task.meta?.lastUpdated ?? '?', i === 0 ? '' : seconds(times[i] - times[i - 1])]);
  });
  table(rows);
  console.log(`  from created to ${stageOf(history[history.length - 1])}: ${seconds(times[times.length - 1] - times[0])}`);
}

function printOutputs(task: Task): void {
  heading('What the request recorded (Task.output)');
  const value = (o: NonNullable<Task['output']>[number]) =>
    o.valueReference?.reference ?? (o.valueInteger !== undefined ? String(o.valueInteger) : undefined) ?? o.valueCode ?? o.valueString ?? (o.valueIdentifier ? `${o.valueIdentifier.system ?? ''}|${o.valueIdentifier.value ?? ''}` : '');
  table([['output', 'value'], ...(task.output ?? []).map((o) => [o.type.text ?? '?', value(o)])]);
}

interface DecisionSummary {
  id: string;
  created: string;
  client: string;
  outcome: string;
  tier: string;
  score?: number;
  patient?: string;
  policy: { id: string; version: number };
  useCase: string;
}

async function printMatchDecision(oldPayer: Instance, clientId: string): Promise<void> {
  heading('Match decision at the old payer (GET /admin/match-decisions)');
  const [summary] = await call<DecisionSummary[]>(oldPayer, 'GET', `/admin/match-decisions?client=${encodeURIComponent(clientId)}&_count=1`);
  if (!summary) {
    console.log('  (none recorded)');
    return;
  }
  const decision = await call<DecisionSummary & { thresholds: unknown; reasons: { code: string; candidate?: string; text: string }[]; candidates: { patient: string; score: number; status: string }[] }>(
    oldPayer,
    'GET',
    `/admin/match-decisions/${summary.id}`,
  );
  table([
    ['decision', decision.id],
    ['client', `${decision.client} (${NEW_PAYER.name})`],
    ['outcome', `${decision.outcome}, tier ${decision.tier}${decision.score !== undefined ? `, score ${decision.score.toFixed(2)}` : ''}`],
    ['member', decision.patient ?? '-'],
    ['policy', `${decision.policy.id} v${decision.policy.version}, use case ${decision.useCase}`],
    ['thresholds', JSON.stringify(decision.thresholds)],
    ['candidates', decision.candidates.map((c) => `${c.patient} ${c.status} (${c.score.toFixed(2)})`).join('; ') || '-'],
  ]);
  for (const reason of decision.reasons) console.log(`  reason ${reason.code}${reason.candidate ? ` (${reason.candidate})` : ''}: ${reason.text}`);
}

async function printImport(newPayer: Instance, task: Task): Promise<void> {
  heading('Imported at the new payer, with their Provenance');
  const reference = task.output?.find((o) => o.type.text === 'provenance')?.valueReference?.reference;
  if (!reference) {
    console.log('  (no Provenance: nothing was imported)');
    return;
  }
  const provenance = await fhir<Provenance>(newPayer, 'GET', reference);
  const byType = new Map<string, number>();
  for (const target of provenance.target) {
    const type = target.reference?.split('/')[0] ?? '?';
    byType.set(type, (byType.get(type) ?? 0) + 1);
  }
  table([['resource type', 'versions'], ...[...byType].sort(([a], [b]) => a.localeCompare(b)).map(([type, n]) => [type, String(n)])]);
  const agent = provenance.agent[0];
  const role = agent?.type?.coding?.[0]?.code ?? '?';
  const who = agent?.who?.reference ?? agent?.who?.display ?? '?';
  console.log(`  ${reference} (recorded ${provenance.recorded}): ${provenance.target.length} targets, ${role} ${who} (${OLD_PAYER.name}), source ${provenance.entity?.[0]?.what?.reference ?? '?'}`);
  const example = provenance.target.find((t) => !t.reference?.startsWith('Patient/'))?.reference;
  if (example) {
    const resource = await fhir<Resource>(newPayer, 'GET', example.replace(/\/_history\/.*$/, ''));
    console.log(`  e.g. ${example.replace(/\/_history\/.*$/, '')}: meta.source ${resource.meta?.source ?? '?'}`);
  }
}

interface AuditRow {
  recorded: string;
  what: string;
  who: string;
  entity: string;
  outcome: string;
}

/** DICOM 110122 Login: the subtype of a token request's AuditEvent. */
const LOGIN = '110122';

function auditRow(event: AuditEvent): AuditRow {
  const codes = (event.subtype ?? []).map((s) => s.code).filter((c): c is string => c !== undefined);
  // An operation's second subtype is its canonical (balp.ts): shown by its name, ".../Patient-everything" as "$everything".
  const operation = codes.find((c) => c.includes(':') || c.includes('/'));
  const name = operation ? (operation.startsWith('http') ? `$${operation.split('/').pop()!.replace(/^[A-Z][a-z]+-/, '')}` : operation) : (codes[0] ?? event.type.code ?? '?');
  const requestor = event.agent.find((a) => a.requestor) ?? event.agent[0];
  const who = requestor?.who?.identifier?.value ?? requestor?.who?.display ?? '?';
  const entities = (event.entity ?? []).map((e) => e.what?.reference?.replace(/\/_history\/.*$/, '')).filter((r): r is string => r !== undefined);
  const entity = entities.length > 2 ? `${entities[0]} +${entities.length - 1}` : entities.join(', ') || '-';
  return { recorded: event.recorded, what: `${event.action ?? ''} ${name === LOGIN ? 'token' : name}`, who, entity, outcome: event.outcome ?? '?' };
}

/** The demo's own reads and searches with the operator credential are audited too; the report leaves them out. */
const isDemoRead = (event: AuditEvent) => (event.action === 'R' || event.action === 'E') && auditRow(event).who === 'operator';

/**
 * AuditEvents recorded since `sinceIso` but the demo's own reads, once the background sealer has
 * published them: when `complete` holds and a second look finds no more.
 */
async function auditEvents(instance: Instance, sinceIso: string, complete: (events: AuditEvent[]) => boolean): Promise<AuditEvent[]> {
  const startedMs = Date.now();
  let previous = -1;
  for (;;) {
    const bundle = await fhir<Bundle<AuditEvent>>(instance, 'GET', `AuditEvent?date=ge${encodeURIComponent(sinceIso)}&_sort=date&_count=1000`);
    const events = (bundle.entry ?? []).map((e) => e.resource).filter((r): r is AuditEvent => r !== undefined && !isDemoRead(r));
    if (complete(events) && events.length === previous) return events;
    if (Date.now() - startedMs > AUDIT_TIMEOUT_MS) throw new DemoFailure(`The ${instance.payer.label}'s AuditEvents of the exchange were not searchable after ${AUDIT_TIMEOUT_MS / 1000} s`);
    previous = events.length;
    await sleep(500);
  }
}

function printAudit(label: string, events: AuditEvent[]): void {
  heading(`AuditEvents at the ${label} (${events.length}, leaving out the demo's own reads)`);
  const rows = events.map(auditRow);
  table([['recorded', 'action', 'agent (client)', 'entity', 'outcome'], ...rows.map((r) => [r.recorded, r.what, r.who, r.entity, r.outcome])]);
}

async function main(): Promise<number> {
  const startedMs = Date.now();
  console.log(`Baton payer-to-payer demo: starting two Baton servers on embedded databases under ${workDir}`);
  const [oldPort, newPort] = await freePorts(2);
  const [oldPayer, newPayer] = [start(OLD_PAYER, oldPort), start(NEW_PAYER, newPort)];
  await Promise.all([waitReady(oldPayer, startedMs), waitReady(newPayer, startedMs)]);
  console.log(`  old payer  ${OLD_PAYER.name} (${OLD_PAYER.identifier.value}) at ${oldPayer.base}: demo population of synthetic members`);
  console.log(`  new payer  ${NEW_PAYER.name} (${NEW_PAYER.identifier.value}) at ${newPayer.base}: empty`);
  console.log(`  both ready after ${seconds(Date.now() - startedMs)}`);

  // The old payer fetches this key set when the new payer's first client assertion arrives; the key must be in it by then.
  const jwks = (await (await fetch(`${newPayer.origin}/jwks/client`)).json()) as { keys: { kid: string }[] };
  if (!jwks.keys.some((k) => k.kid === KEY_ID)) throw new DemoFailure(`The new payer's /jwks/client does not serve the key ${KEY_ID}`);

  // Events from here on are the exchange's (the servers' own start is left out).
  const auditSince = new Date().toISOString();
  const clientId = await registerNewPayerAtOldPayer(oldPayer, newPayer);
  await registerOldPayerAtNewPayer(newPayer, oldPayer, clientId);
  heading('Registration');
  console.log(`  old payer: partner client ${clientId} for the new payer, keys at ${newPayer.origin}/jwks/client (serving key ${KEY_ID}), scopes system/*.rs and $member-match`);
  console.log(`  new payer: Organization/old-payer, Endpoint/old-payer-fhir (key id ${KEY_ID}), routing rule: payor ${OLD_PAYER.identifier.value} -> Endpoint/old-payer-fhir`);

  const { task: created, memberId } = await enroll(newPayer, oldPayer);
  heading('Enrollment at the new payer');
  console.log(`  Patient/${memberId} (demographics of the old payer's ${DEMO_MEMBER}), the old card, an HRex Consent (#regular) naming both payers`);
  console.log(`  POST /fhir/Task (Idempotency-Key) -> Task/${created.id}, ${created.status}/${stageOf(created)}; waiting for the exchange...`);

  const task = await waitForEnd(newPayer, created.id!);
  const history = (await fhir<Bundle<Task>>(newPayer, 'GET', `Task/${created.id}/_history?_count=100`)).entry?.map((e) => e.resource!).reverse() ?? [];
  printTimeline(history);
  printOutputs(task);
  const stage = stageOf(task);
  if (stage !== 'fulfilled') {
    const admin = await call<unknown>(newPayer, 'GET', `/admin/tasks/${created.id}`, { expect: [200, 404] });
    const state = FINAL_STAGES.includes(stage) ? `ended ${stage}` : `was still ${stage} after ${REQUEST_TIMEOUT_MS / 1000} s`;
    console.error(`\nThe request did not reach fulfilled: it ${state} (Task.status ${task.status}).`);
    console.error(`statusReason: ${task.statusReason?.coding?.[0]?.code ?? '-'}: ${task.statusReason?.text ?? '-'}`);
    console.error(`job: ${JSON.stringify(admin)}`);
    for (const instance of instances) if (instance.log.length) console.error(`\n${instance.payer.label} log:\n${instance.log.join('')}`);
    return 1;
  }
  await printMatchDecision(oldPayer, clientId);
  await printImport(newPayer, task);

  const [oldEvents, newEvents] = await Promise.all([
    auditEvents(oldPayer, auditSince, (events) => events.some((e) => auditRow(e).what.includes('$everything'))),
    auditEvents(newPayer, auditSince, (events) => events.some((e) => (e.entity ?? []).some((x) => x.what?.reference === `Task/${task.id}/_history/${task.meta?.versionId}`))),
  ]);
  printAudit('old payer', oldEvents);
  printAudit('new payer', newEvents);

  heading('Total');
  const [first, last] = [history[0], history[history.length - 1]].map((t) => Date.parse(t.meta?.lastUpdated ?? ''));
  console.log(`  exchange (Task created to fulfilled): ${seconds(last - first)}; whole demo, start to report: ${seconds(Date.now() - startedMs)}`);
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  if (!interrupted) reportError(error);
} finally {
  await cleanUp();
}
process.exit(code);

function reportError(error: unknown): void {
  console.error(error instanceof DemoFailure ? `\nDemo failed: ${error.message}` : error);
  for (const instance of instances) if (instance.log.length && !(error instanceof DemoFailure)) console.error(`\n${instance.payer.label} log:\n${instance.log.join('')}`);
}
