import { type KeyObject, X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Typed configuration, read from the environment once at start (STYLE: nothing else reads process.env). */
export interface Config {
  port: number;
  host: string;
  baseUrl: string;
  /** postgres://… ; undefined means the embedded PGlite database under dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  seed: 'demo' | 'none';
  logLevel: string;
  payer: { name: string; identifiers: { system: string; value: string }[] };
  /** FHIR NPM packages (folders or .tgz) whose StructureDefinitions are loaded as profiles. */
  profilePackages: string[];
  /** Largest request body accepted, in bytes. */
  maxBodyBytes: number;
  /** Bearer token of the client-registration admin API; undefined keeps that API closed. */
  adminToken: string | undefined;
  /** The SMART scopes an operator holds on /fhir when presenting the admin token. */
  adminScopes: string[];
  /** A JSON file of client registrations applied at every start (BATON_CLIENTS_FILE). */
  clientsFile: string | undefined;
  /** HTTPS (TLS_CERT, TLS_KEY), with client certificates when TLS_CLIENT_CA is set; undefined serves plain HTTP. */
  tls: TlsConfig | undefined;
  /** UDAP trust-community registration and authentication (BATON_UDAP_*); undefined turns UDAP off. */
  udap: UdapConfig | undefined;
  /** The audit trail's signed checkpoints (issue 4). */
  audit: AuditConfig;
  /** How long the audit trail stays in the database, and where it goes after (issue 4). */
  auditRetention: AuditRetentionConfig;
  memberMatch: MemberMatchConfig;
  /** Bulk Data export (issue 6). */
  export: ExportConfig;
  /** Idempotency-Key on POST (src/fhir/http/idempotency.ts). */
  idempotency: IdempotencyConfig;
  /** Topic-based subscriptions (issue 8). */
  subscriptions: SubscriptionConfig;
  /** The requester workflow (issue 7, src/workflow/). */
  workflow: WorkflowConfig;
}

/** The requester workflow's worker (src/workflow/worker.ts). */
export interface WorkflowConfig {
  /** Whether this process runs workflow steps (BATON_WORKFLOW_WORKER, on by default). */
  worker: boolean;
  /** Jobs one worker runs at once (BATON_WORKFLOW_CONCURRENCY). */
  concurrency: number;
  /** A worker's claim on a job; a crashed worker's job is taken over after it (BATON_WORKFLOW_LEASE_SECONDS). */
  leaseSeconds: number;
  /** How long a partner's bulk export may stay in progress before the request is dead-lettered (BATON_WORKFLOW_BULK_TIMEOUT_SECONDS). */
  bulkTimeoutSeconds: number;
  /** Deadline of each stage in seconds from the previous one (BATON_WORKFLOW_SLA, `stage=seconds,…`). */
  sla: Partial<Record<'validated' | 'routed' | 'matched' | 'acknowledged' | 'fulfilled', number>>;
}

/** Subscription delivery (src/subscriptions/). */
export interface SubscriptionConfig {
  /** Whether an http:// endpoint on a loopback address is accepted (BATON_SUBSCRIPTION_LOOPBACK_HTTP, on: development and tests); off, every endpoint must be https. */
  allowLoopbackHttp: boolean;
  /** How long a failing subscription is retried before it goes to error, in seconds (BATON_SUBSCRIPTION_RETRY_SECONDS). */
  retrySeconds: number;
  /** The first retry waits about this long, in milliseconds; each next one twice as long (BATON_SUBSCRIPTION_RETRY_BASE_MS)… */
  retryBaseMs: number;
  /** …up to this many seconds between attempts (BATON_SUBSCRIPTION_MAX_BACKOFF_SECONDS). */
  maxBackoffSeconds: number;
  /** An attempt's timeout, and the largest backport-timeout a subscription may ask for, in seconds (BATON_SUBSCRIPTION_TIMEOUT_SECONDS). */
  timeoutSeconds: number;
  /** Events per notification when the subscription sets no backport-max-count (BATON_SUBSCRIPTION_MAX_COUNT). */
  maxCount: number;
  /** Subscriptions one process delivers to at once (BATON_SUBSCRIPTION_CONCURRENCY). */
  concurrency: number;
  /** How often the worker looks for due deliveries, in milliseconds (BATON_SUBSCRIPTION_POLL_MS). */
  pollMs: number;
  /** A worker's claim on a subscription lasts this long unless renewed (BATON_SUBSCRIPTION_LEASE_SECONDS). */
  leaseSeconds: number;
  /** Whether this process delivers notifications (BATON_SUBSCRIPTION_WORKER, on by default). */
  worker: boolean;
}

export interface IdempotencyConfig {
  /** How long a key's response is kept and replayed, in hours (BATON_IDEMPOTENCY_RETENTION_HOURS). */
  retentionHours: number;
}

/** Bulk Data export jobs and files (src/export/). */
export interface ExportConfig {
  /** A file holds at most this many resources (BATON_EXPORT_FILE_RESOURCES). */
  fileResources: number;
  /**
   * Rows read per query while a file is streamed, and while deletions are counted for planning
   * (BATON_EXPORT_PAGE_ROWS): larger pages cost fewer queries and hold more bytes per download
   * in flight (two pages queued, ~1 KB per resource).
   */
  pageRows: number;
  /** Exports one client may have queued or running at once; one more is refused with 429 (BATON_EXPORT_MAX_JOBS_PER_CLIENT). */
  maxJobsPerClient: number;
  /** How long the files of a finished export stay available, in seconds (BATON_EXPORT_TTL_SECONDS). */
  ttlSeconds: number;
  /** Retry-After of a status answer; a client polling sooner gets 429 (BATON_EXPORT_POLL_SECONDS). */
  pollSeconds: number;
  /** A worker's claim on a job lasts this long unless renewed; a crashed worker's job is taken over after it (BATON_EXPORT_LEASE_SECONDS). */
  leaseSeconds: number;
  /** A job is tried this many times before it fails for good (BATON_EXPORT_MAX_ATTEMPTS). */
  maxAttempts: number;
  /**
   * The largest difference between the clocks of Baton processes and the database, in
   * milliseconds (BATON_EXPORT_CLOCK_SKEW_MS): before planning, a job waits until every
   * transaction that began before transactionTime plus this margin has ended.
   */
  clockSkewMs: number;
  /**
   * Whether this process plans exports (BATON_EXPORT_WORKER, on by default): off, it accepts
   * kick-offs and serves status and files while processes where it is on do the planning.
   */
  worker: boolean;
}

export interface AuditConfig {
  /** The P-384 private key signing checkpoints (BATON_AUDIT_KEY); undefined: a key generated once and kept in the database. */
  key: KeyObject | undefined;
  /** A checkpoint every this many sealed events (BATON_AUDIT_CHECKPOINT_EVERY)… */
  checkpointEvery: number;
  /** …and at the latest this many seconds after the last one, when events were sealed since (BATON_AUDIT_CHECKPOINT_SECONDS). */
  checkpointSeconds: number;
}

export interface AuditRetentionConfig {
  /** Sealed events are archived once older than this many days (BATON_AUDIT_RETENTION_DAYS)… */
  days: number;
  /** …into this directory, then removed from the database (BATON_AUDIT_ARCHIVE_DIR). */
  archiveDir: string;
}

/** PEM text, read once at start. */
export interface TlsConfig {
  cert: string;
  key: string;
  /** The CAs whose client certificates are accepted (RFC 8705 mutual TLS), one PEM each; undefined requests no client certificate. */
  clientCa: string[] | undefined;
}

/** Read and checked once at start (HL7 UDAP Security IG 2.0). */
export interface UdapConfig {
  /** Baton's UDAP certificate and the CAs above it, leaf first (BATON_UDAP_CERT). */
  certificates: X509Certificate[];
  /** The leaf's RSA private key (BATON_UDAP_KEY): it signs signed_metadata. */
  privateKey: KeyObject;
  /** Trust community anchors (BATON_UDAP_TRUST_ANCHORS): client certificates must chain to one. */
  trustAnchors: X509Certificate[];
  /** The scopes a client registered through UDAP may hold (BATON_UDAP_SCOPE). */
  scopes: string[];
}

/** $member-match (HRex), issue 5. */
export interface MemberMatchConfig {
  /** Whether a Consent must come with the request (BATON_MEMBER_MATCH_CONSENT: HRex 1.0 and PDex payer-to-payer require one). */
  consentRequired: boolean;
  /** Whether the answer carries MemberId (BATON_MEMBER_MATCH_MEMBER_ID): HRex 1.0.0's output profile, which Inferno validates, allows MemberIdentifier alone. */
  memberId: boolean;
  /** The matching policy's use case whose thresholds apply (BATON_MEMBER_MATCH_USE_CASE). */
  useCase: string;
  /** Brute-force guard (HRex mm-7): at most this many different cards per demographics and client (BATON_MEMBER_MATCH_MAX_CARDS)… */
  maxCards: number;
  /** …within this many seconds (BATON_MEMBER_MATCH_WINDOW_SECONDS). */
  windowSeconds: number;
  /** Which security labels mark sensitive data, withheld under a `#regular` consent (BATON_SENSITIVE_DATA_RULE; default config/consent/sensitive-data.json). */
  sensitiveDataRule: string | undefined;
}

export class ConfigError extends Error {}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const port = integer(env.PORT ?? '8080', 'PORT', 0, 65535);
  const host = env.HOST ?? '127.0.0.1';
  const tls = loadTls(env);
  const baseUrl = (env.BATON_BASE_URL ?? `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}/fhir`).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(baseUrl)) throw new ConfigError('BATON_BASE_URL must be an absolute http(s) URL');
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) throw new ConfigError('DATABASE_URL must be a postgres:// URL');
  const seed = env.BATON_SEED ?? 'demo';
  if (seed !== 'demo' && seed !== 'none') throw new ConfigError('BATON_SEED must be "demo" or "none"');
  const logLevel = env.LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  const dataDir = resolve(env.BATON_DATA_DIR ?? './data');
  return {
    port,
    host,
    baseUrl,
    databaseUrl,
    dataDir,
    seed,
    logLevel,
    payer: {
      name: env.BATON_PAYER_NAME ?? 'Baton Health Plan',
      identifiers: parseIdentifiers(env.BATON_PAYER_IDENTIFIER ?? 'http://hl7.org/fhir/sid/us-npi|1234567893'),
    },
    profilePackages: (env.BATON_PROFILE_PACKAGES ?? '').split(',').map((s) => s.trim()).filter(Boolean).map((p) => resolve(p)),
    maxBodyBytes: integer(env.BATON_MAX_BODY_BYTES ?? String(16 * 1024 * 1024), 'BATON_MAX_BODY_BYTES', 1024, 1024 ** 3),
    adminToken: env.BATON_ADMIN_TOKEN || undefined,
    adminScopes: parseScopes(env.BATON_ADMIN_SCOPE ?? 'system/*.rs', 'BATON_ADMIN_SCOPE'),
    clientsFile: env.BATON_CLIENTS_FILE ? resolve(env.BATON_CLIENTS_FILE) : undefined,
    tls,
    udap: loadUdap(env, baseUrl),
    audit: {
      key: env.BATON_AUDIT_KEY ? loadAuditKey(env.BATON_AUDIT_KEY) : undefined,
      checkpointEvery: integer(env.BATON_AUDIT_CHECKPOINT_EVERY ?? '1000', 'BATON_AUDIT_CHECKPOINT_EVERY', 1, 1_000_000_000),
      checkpointSeconds: integer(env.BATON_AUDIT_CHECKPOINT_SECONDS ?? '60', 'BATON_AUDIT_CHECKPOINT_SECONDS', 1, 86_400 * 366),
    },
    auditRetention: {
      // 2192 days: six years, as long as HIPAA keeps its documentation (45 CFR 164.316(b)(2)(i)).
      days: integer(env.BATON_AUDIT_RETENTION_DAYS ?? '2192', 'BATON_AUDIT_RETENTION_DAYS', 0, 36_525),
      archiveDir: resolve(env.BATON_AUDIT_ARCHIVE_DIR || join(dataDir, 'audit-archive')),
    },
    memberMatch: {
      consentRequired: choice(env.BATON_MEMBER_MATCH_CONSENT ?? 'required', 'BATON_MEMBER_MATCH_CONSENT', ['required', 'optional']) === 'required',
      memberId: choice(env.BATON_MEMBER_MATCH_MEMBER_ID ?? 'include', 'BATON_MEMBER_MATCH_MEMBER_ID', ['include', 'omit']) === 'include',
      useCase: env.BATON_MEMBER_MATCH_USE_CASE ?? 'clinical-history-release',
      maxCards: integer(env.BATON_MEMBER_MATCH_MAX_CARDS ?? '3', 'BATON_MEMBER_MATCH_MAX_CARDS', 1, 1000),
      windowSeconds: integer(env.BATON_MEMBER_MATCH_WINDOW_SECONDS ?? '3600', 'BATON_MEMBER_MATCH_WINDOW_SECONDS', 1, 86_400 * 30),
      sensitiveDataRule: env.BATON_SENSITIVE_DATA_RULE ? resolve(env.BATON_SENSITIVE_DATA_RULE) : undefined,
    },
    export: {
      fileResources: integer(env.BATON_EXPORT_FILE_RESOURCES ?? '50000', 'BATON_EXPORT_FILE_RESOURCES', 1, 10_000_000),
      pageRows: integer(env.BATON_EXPORT_PAGE_ROWS ?? '1000', 'BATON_EXPORT_PAGE_ROWS', 1, 100_000),
      maxJobsPerClient: integer(env.BATON_EXPORT_MAX_JOBS_PER_CLIENT ?? '3', 'BATON_EXPORT_MAX_JOBS_PER_CLIENT', 1, 1000),
      ttlSeconds: integer(env.BATON_EXPORT_TTL_SECONDS ?? '3600', 'BATON_EXPORT_TTL_SECONDS', 1, 86_400 * 30),
      pollSeconds: integer(env.BATON_EXPORT_POLL_SECONDS ?? '2', 'BATON_EXPORT_POLL_SECONDS', 1, 3600),
      leaseSeconds: integer(env.BATON_EXPORT_LEASE_SECONDS ?? '60', 'BATON_EXPORT_LEASE_SECONDS', 5, 3600),
      maxAttempts: integer(env.BATON_EXPORT_MAX_ATTEMPTS ?? '3', 'BATON_EXPORT_MAX_ATTEMPTS', 1, 100),
      clockSkewMs: integer(env.BATON_EXPORT_CLOCK_SKEW_MS ?? '1000', 'BATON_EXPORT_CLOCK_SKEW_MS', 0, 60_000),
      worker: choice(env.BATON_EXPORT_WORKER ?? 'on', 'BATON_EXPORT_WORKER', ['on', 'off']) === 'on',
    },
    idempotency: {
      // 24 hours, as Stripe keeps keys: long enough for any retry, short for the responses kept.
      retentionHours: integer(env.BATON_IDEMPOTENCY_RETENTION_HOURS ?? '24', 'BATON_IDEMPOTENCY_RETENTION_HOURS', 1, 24 * 30),
    },
    workflow: {
      worker: choice(env.BATON_WORKFLOW_WORKER ?? 'on', 'BATON_WORKFLOW_WORKER', ['on', 'off']) === 'on',
      concurrency: integer(env.BATON_WORKFLOW_CONCURRENCY ?? '16', 'BATON_WORKFLOW_CONCURRENCY', 1, 1000),
      leaseSeconds: integer(env.BATON_WORKFLOW_LEASE_SECONDS ?? '120', 'BATON_WORKFLOW_LEASE_SECONDS', 5, 3600),
      bulkTimeoutSeconds: integer(env.BATON_WORKFLOW_BULK_TIMEOUT_SECONDS ?? '86400', 'BATON_WORKFLOW_BULK_TIMEOUT_SECONDS', 1, 86_400 * 30),
      sla: parseSla(env.BATON_WORKFLOW_SLA ?? 'validated=10,routed=10,matched=60,acknowledged=60,fulfilled=86400'),
    },
    subscriptions: {
      allowLoopbackHttp: choice(env.BATON_SUBSCRIPTION_LOOPBACK_HTTP ?? 'on', 'BATON_SUBSCRIPTION_LOOPBACK_HTTP', ['on', 'off']) === 'on',
      // Six hours of retries: an endpoint down for a maintenance window misses nothing.
      retrySeconds: integer(env.BATON_SUBSCRIPTION_RETRY_SECONDS ?? '21600', 'BATON_SUBSCRIPTION_RETRY_SECONDS', 0, 86_400 * 7),
      retryBaseMs: integer(env.BATON_SUBSCRIPTION_RETRY_BASE_MS ?? '1000', 'BATON_SUBSCRIPTION_RETRY_BASE_MS', 1, 600_000),
      maxBackoffSeconds: integer(env.BATON_SUBSCRIPTION_MAX_BACKOFF_SECONDS ?? '900', 'BATON_SUBSCRIPTION_MAX_BACKOFF_SECONDS', 1, 86_400),
      timeoutSeconds: integer(env.BATON_SUBSCRIPTION_TIMEOUT_SECONDS ?? '10', 'BATON_SUBSCRIPTION_TIMEOUT_SECONDS', 1, 300),
      maxCount: integer(env.BATON_SUBSCRIPTION_MAX_COUNT ?? '20', 'BATON_SUBSCRIPTION_MAX_COUNT', 1, 1000),
      concurrency: integer(env.BATON_SUBSCRIPTION_CONCURRENCY ?? '64', 'BATON_SUBSCRIPTION_CONCURRENCY', 1, 10_000),
      pollMs: integer(env.BATON_SUBSCRIPTION_POLL_MS ?? '100', 'BATON_SUBSCRIPTION_POLL_MS', 10, 60_000),
      leaseSeconds: integer(env.BATON_SUBSCRIPTION_LEASE_SECONDS ?? '60', 'BATON_SUBSCRIPTION_LEASE_SECONDS', 5, 3600),
      worker: choice(env.BATON_SUBSCRIPTION_WORKER ?? 'on', 'BATON_SUBSCRIPTION_WORKER', ['on', 'off']) === 'on',
    },
  };
}

/** A private JWK (JSON) or PEM file; checkpoints are ES384 JWS, so it must be a P-384 EC key. */
function loadAuditKey(path: string): KeyObject {
  const text = readPem(path, 'BATON_AUDIT_KEY');
  const key = parsePem(
    () => (text.trimStart().startsWith('{') ? createPrivateKey({ key: JSON.parse(text), format: 'jwk' }) : createPrivateKey(text)),
    'BATON_AUDIT_KEY',
    'a private JWK or an unencrypted PEM private key',
  );
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
    throw new ConfigError('BATON_AUDIT_KEY must be an EC P-384 key: checkpoints are signed with ES384');
  }
  return key;
}

function loadUdap(env: Record<string, string | undefined>, baseUrl: string): UdapConfig | undefined {
  const certPath = env.BATON_UDAP_CERT || undefined;
  const keyPath = env.BATON_UDAP_KEY || undefined;
  const anchorsPath = env.BATON_UDAP_TRUST_ANCHORS || undefined;
  if (!certPath && !keyPath && !anchorsPath) return undefined;
  if (!certPath || !keyPath || !anchorsPath) throw new ConfigError('BATON_UDAP_CERT, BATON_UDAP_KEY and BATON_UDAP_TRUST_ANCHORS must be set together');
  const certificates = readCertificates(certPath, 'BATON_UDAP_CERT');
  const privateKey = parsePem(() => createPrivateKey(readPem(keyPath, 'BATON_UDAP_KEY')), 'BATON_UDAP_KEY', 'an unencrypted PEM private key');
  // UDAP IG §2.3: signed_metadata is signed with RS256.
  if (privateKey.asymmetricKeyType !== 'rsa') throw new ConfigError('BATON_UDAP_KEY must be an RSA key: UDAP signs server metadata with RS256');
  if (!certificates[0].checkPrivateKey(privateKey)) throw new ConfigError('BATON_UDAP_KEY is not the private key of the first BATON_UDAP_CERT certificate');
  // §2.3: the signed metadata's iss is the FHIR base URL and must be a subjectAltName URI of this certificate.
  if (!(certificates[0].subjectAltName ?? '').split(', ').includes(`URI:${baseUrl}`)) {
    throw new ConfigError(`BATON_UDAP_CERT must carry the FHIR base URL ${baseUrl} as a subjectAltName URI`);
  }
  return {
    certificates,
    privateKey,
    trustAnchors: readCertificates(anchorsPath, 'BATON_UDAP_TRUST_ANCHORS'),
    scopes: parseScopes(env.BATON_UDAP_SCOPE ?? 'system/*.rs http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match', 'BATON_UDAP_SCOPE'),
  };
}

/** A PEM file of one or more certificates, in file order. */
function readCertificates(path: string, name: string): X509Certificate[] {
  const blocks = readPem(path, name).match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError(`${name} must hold one or more PEM certificates`);
  return blocks.map((block) => parsePem(() => new X509Certificate(block), name, 'PEM certificates only'));
}

function loadTls(env: Record<string, string | undefined>): TlsConfig | undefined {
  const certPath = env.TLS_CERT || undefined;
  const keyPath = env.TLS_KEY || undefined;
  const caPath = env.TLS_CLIENT_CA || undefined;
  if (!certPath && !keyPath) {
    if (caPath) throw new ConfigError('TLS_CLIENT_CA needs TLS_CERT and TLS_KEY: client certificates are only asked for over HTTPS');
    return undefined;
  }
  if (!certPath || !keyPath) throw new ConfigError('TLS_CERT and TLS_KEY must be set together');
  const cert = readPem(certPath, 'TLS_CERT');
  const key = readPem(keyPath, 'TLS_KEY');
  const certificate = parsePem(() => new X509Certificate(cert), 'TLS_CERT', 'a PEM certificate');
  const privateKey = parsePem(() => createPrivateKey(key), 'TLS_KEY', 'an unencrypted PEM private key');
  if (!certificate.checkPrivateKey(privateKey)) throw new ConfigError('TLS_KEY is not the private key of the TLS_CERT certificate');
  const clientCa = caPath ? readCertificates(caPath, 'TLS_CLIENT_CA').map((certificate) => certificate.toString()) : undefined;
  return { cert, key, clientCa };
}

function readPem(path: string, name: string): string {
  try {
    return readFileSync(resolve(path), 'utf8');
  } catch (error) {
    throw new ConfigError(`${name}: cannot read ${path} (${(error as { code?: string }).code ?? 'error'})`);
  }
}

function parsePem<T>(parse: () => T, name: string, what: string): T {
  try {
    return parse();
  } catch {
    throw new ConfigError(`${name} must hold ${what}`);
  }
}


const SLA_STAGES = ['validated', 'routed', 'matched', 'acknowledged', 'fulfilled'];

/** `stage=seconds,…` (BATON_WORKFLOW_SLA): each stage's deadline from the one before; a stage left out has none. */
function parseSla(text: string): WorkflowConfig['sla'] {
  const sla: Record<string, number> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [stage, seconds] = part.split('=');
    if (!SLA_STAGES.includes(stage)) throw new ConfigError(`BATON_WORKFLOW_SLA: "${stage}" is not a stage with a deadline (${SLA_STAGES.join(', ')})`);
    sla[stage] = integer(seconds ?? '', `BATON_WORKFLOW_SLA ${stage}`, 1, 86_400 * 365);
  }
  return sla;
}

function choice(text: string, name: string, values: string[]): string {
  if (!values.includes(text)) throw new ConfigError(`${name} must be one of ${values.join(', ')}`);
  return text;
}

function integer(text: string, name: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

function parseScopes(text: string, name: string): string[] {
  const scopes = text.split(/\s+/).filter(Boolean);
  if (scopes.length === 0 || !scopes.every((s) => /^(system\/\S+|https?:\/\/\S+)$/.test(s))) {
    throw new ConfigError(`${name} must be space-separated SMART system scopes (system/*.rs) or operation URLs`);
  }
  return scopes;
}

function parseIdentifiers(text: string): { system: string; value: string }[] {
  return text.split(',').map((pair) => {
    const bar = pair.indexOf('|');
    const system = pair.slice(0, bar).trim();
    const value = pair.slice(bar + 1).trim();
    if (bar < 1 || !value) throw new ConfigError('BATON_PAYER_IDENTIFIER must be system|value pairs separated by commas');
    return { system, value };
  });
}
