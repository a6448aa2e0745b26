import { sql } from 'drizzle-orm';
import { bigint, boolean, customType, index, integer, jsonb, numeric, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

/**
 * Current version of every resource. `content` is the resource's JSON text exactly as served
 * (meta.versionId and meta.lastUpdated included), so a read returns it without re-serializing.
 * The primary key INCLUDEs last_updated and deleted (migration 0027, which drizzle cannot
 * express), so the ids of a type as of a time are read from the index alone.
 */
export const resources = pgTable(
  'resources',
  {
    resourceType: text('resource_type').notNull(),
    id: text('id').notNull(),
    versionId: integer('version_id').notNull(),
    lastUpdated: timestamp('last_updated', { withTimezone: true, mode: 'string' }).notNull(),
    deleted: boolean('deleted').notNull().default(false),
    content: text('content').notNull(),
  },
  (t) => [primaryKey({ columns: [t.resourceType, t.id] }), index('resources_type_updated_idx').on(t.resourceType, t.lastUpdated)],
);

/** Every version ever written, deletions included (content of a deletion is the tombstone). */
export const resourceHistory = pgTable(
  'resource_history',
  {
    /** Global write order: history paging and `_since` scans follow it. */
    seq: bigint('seq', { mode: 'number' }).generatedAlwaysAsIdentity().notNull(),
    resourceType: text('resource_type').notNull(),
    id: text('id').notNull(),
    versionId: integer('version_id').notNull(),
    lastUpdated: timestamp('last_updated', { withTimezone: true, mode: 'string' }).notNull(),
    deleted: boolean('deleted').notNull().default(false),
    /** The interaction that produced the version: POST, PUT, PATCH or DELETE. */
    method: text('method').notNull(),
    content: text('content').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.resourceType, t.id, t.versionId] }),
    index('resource_history_seq_idx').on(t.seq),
    index('resource_history_type_seq_idx').on(t.resourceType, t.seq),
    index('resource_history_updated_idx').on(t.lastUpdated),
  ],
);

/*
 * Search index tables (src/fhir/search/): one row per value a SearchParameter extracts from the
 * current version of a live resource; rows are replaced with each version and removed on delete.
 * `code` is the parameter's code; a composite parameter's components are stored under
 * `<code>#<component index>` with `grp` numbering the element instance they came from, so a
 * composite match joins component rows of one `grp` (search.html#composite).
 * The token and string value indexes end with resource_id, so that the ids the most common
 * filters select (identifiers, codes, names) come from the index alone; the others stay narrow,
 * as every key column costs each write (a wider index on every table cost 25% of index writes).
 */

const indexKey = {
  resourceType: text('resource_type').notNull(),
  resourceId: text('resource_id').notNull(),
  code: text('code').notNull(),
  grp: integer('grp'),
};

export const spString = pgTable(
  'sp_string',
  {
    ...indexKey,
    /** Lower-cased, accents removed: the default (prefix) and :contains matches. */
    value: text('value').notNull(),
    /** As written: the :exact match. */
    exact: text('exact').notNull(),
  },
  (t) => [
    index('sp_string_value_idx').on(t.resourceType, t.code, t.value.op('text_pattern_ops'), t.resourceId),
    index('sp_string_resource_idx').on(t.resourceType, t.resourceId, t.code),
  ],
);

export const spToken = pgTable(
  'sp_token',
  {
    ...indexKey,
    system: text('system'),
    value: text('value'),
    /** Normalized display/text, for :text. */
    text: text('text'),
    /** Identifier.type coding, for :of-type. */
    typeSystem: text('type_system'),
    typeCode: text('type_code'),
  },
  (t) => [
    index('sp_token_value_idx').on(t.resourceType, t.code, t.value, t.system, t.resourceId),
    index('sp_token_resource_idx').on(t.resourceType, t.resourceId, t.code),
  ],
);

export const spDate = pgTable(
  'sp_date',
  {
    ...indexKey,
    /** The instant range the value covers at its precision ("2020" covers the whole year); open ends are ±infinity. */
    start: timestamp('start', { withTimezone: true, mode: 'string' }).notNull(),
    end: timestamp('end', { withTimezone: true, mode: 'string' }).notNull(),
  },
  (t) => [
    index('sp_date_start_idx').on(t.resourceType, t.code, t.start),
    index('sp_date_end_idx').on(t.resourceType, t.code, t.end),
    index('sp_date_resource_idx').on(t.resourceType, t.resourceId, t.code),
  ],
);

export const spNumber = pgTable(
  'sp_number',
  {
    ...indexKey,
    /** A number is the range [low, high] with low = high; a Range may leave either end open (null). */
    low: numeric('low'),
    high: numeric('high'),
  },
  (t) => [index('sp_number_low_idx').on(t.resourceType, t.code, t.low), index('sp_number_resource_idx').on(t.resourceType, t.resourceId, t.code)],
);

export const spQuantity = pgTable(
  'sp_quantity',
  {
    ...indexKey,
    /** As sp_number: a Quantity has low = high, a Range its two ends. */
    low: numeric('low'),
    high: numeric('high'),
    system: text('system'),
    /** Quantity.code (the coded unit). */
    unitCode: text('unit_code'),
    /** Quantity.unit (the human-readable unit). */
    unit: text('unit'),
  },
  (t) => [index('sp_quantity_low_idx').on(t.resourceType, t.code, t.low), index('sp_quantity_resource_idx').on(t.resourceType, t.resourceId, t.code)],
);

export const spReference = pgTable(
  'sp_reference',
  {
    ...indexKey,
    /** Type and id of the target for `Type/id` and absolute `…/Type/id` references; null otherwise (canonicals, `#contained`, URNs). */
    targetType: text('target_type'),
    targetId: text('target_id'),
    /** The reference as written (absolute URLs keep their base, so a search can tell ours from a partner's); canonicals without `|version`. */
    reference: text('reference').notNull(),
  },
  (t) => [
    index('sp_reference_target_idx').on(t.resourceType, t.code, t.targetId, t.targetType),
    index('sp_reference_url_idx')
      .on(t.resourceType, t.code, t.reference)
      .where(sql`${t.targetId} IS NULL`),
    index('sp_reference_resource_idx').on(t.resourceType, t.resourceId, t.code),
  ],
);

export const spUri = pgTable(
  'sp_uri',
  {
    ...indexKey,
    value: text('value').notNull(),
  },
  (t) => [index('sp_uri_value_idx').on(t.resourceType, t.code, t.value), index('sp_uri_resource_idx').on(t.resourceType, t.resourceId, t.code)],
);

/*
 * SMART Backend Services (src/auth/): registered clients, Baton's own token-signing keys and the
 * client-assertion replay store. All in the database so every Baton process shares them.
 */

export const authClients = pgTable('auth_clients', {
  clientId: text('client_id').primaryKey(),
  name: text('name').notNull(),
  /** `partner` (another payer) or `internal` (this payer's own systems). */
  kind: text('kind').notNull(),
  /** The client's Organization identifiers: `[{system, value}]`. */
  organizationIdentifiers: jsonb('organization_identifiers').notNull(),
  /** Inline JWKS; exactly one of jwks and jwks_uri is set. */
  jwks: jsonb('jwks'),
  jwksUri: text('jwks_uri'),
  /** Scopes the client may hold, space-separated as in OAuth. */
  scope: text('scope').notNull(),
  created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  disabled: boolean('disabled').notNull().default(false),
});

export const authSigningKeys = pgTable('auth_signing_keys', {
  kid: text('kid').primaryKey(),
  alg: text('alg').notNull(),
  privateJwk: jsonb('private_jwk').notNull(),
  publicJwk: jsonb('public_jwk').notNull(),
  created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
});

/**
 * Baton's own client keys for calling partners (src/workflow/partner/client-keys.ts): one ES384
 * key pair per key id an Endpoint names, created on its first use; the public halves are served
 * at GET /jwks/client for partners to register.
 */
export const outboundClientKeys = pgTable('outbound_client_keys', {
  kid: text('kid').primaryKey(),
  alg: text('alg').notNull(),
  privateJwk: jsonb('private_jwk').notNull(),
  publicJwk: jsonb('public_jwk').notNull(),
  created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
});

/** RFC 7523 §3: a client assertion's jti is accepted once per client; rows may go once `expires` has passed. */
export const authAssertionJtis = pgTable(
  'auth_assertion_jtis',
  {
    clientId: text('client_id').notNull(),
    jti: text('jti').notNull(),
    expires: timestamp('expires', { withTimezone: true, mode: 'string' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.clientId, t.jti] }), index('auth_assertion_jtis_expires_idx').on(t.expires)],
);

/**
 * Per-partner isolation: a partner client may see a member's data only while it holds a grant
 * for that member (created by a successful $member-match with a consent; valid for the
 * consent's period). Deleting the client removes its grants.
 */
export const accessGrants = pgTable(
  'access_grants',
  {
    id: text('id').primaryKey(),
    clientId: text('client_id')
      .notNull()
      .references(() => authClients.clientId, { onDelete: 'cascade' }),
    /** The member: `Patient/<patientId>` at this payer. */
    patientId: text('patient_id').notNull(),
    validFrom: timestamp('valid_from', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    /** Open-ended when null. */
    validUntil: timestamp('valid_until', { withTimezone: true, mode: 'string' }),
    /** The Consent the grant rests on (`Consent/<id>`), when there is one. */
    consent: text('consent'),
    /**
     * Security labels (`system|code`) of data this grant does not reach: a consent to share all
     * but legally sensitive data (HRex `#regular`) hides resources carrying them.
     */
    excludedSecurity: text('excluded_security').array(),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  },
  (t) => [index('access_grants_client_patient_idx').on(t.clientId, t.patientId)],
);

/** PostgreSQL's 64-bit transaction id (`pg_current_xact_id()`), as text. */
const xid8 = customType<{ data: string }>({ dataType: () => 'xid8' });

/**
 * The audit trail as recorded: one row per AuditEvent, written in the transaction of the write it
 * audits (or by the batched writer for reads, searches and failures). Append-only: triggers reject
 * UPDATE, DELETE and TRUNCATE. `txid` lets the sealer take rows in a gap-free order: every
 * transaction older than the oldest one still running has committed or aborted.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    seq: bigint('seq', { mode: 'number' }).generatedAlwaysAsIdentity().primaryKey(),
    txid: xid8('txid').notNull().default(sql`pg_current_xact_id()`),
    /** Not indexed: events are found by id through audit_index, whose event_id is unique. */
    eventId: text('event_id').notNull(),
    recorded: timestamp('recorded', { withTimezone: true, mode: 'string' }).notNull(),
    /** The AuditEvent JSON. */
    content: text('content').notNull(),
  },
  (t) => [index('audit_events_txid_seq_idx').on(t.txid, t.seq)],
);

/** The hash chain over audit_events in sealing order (append-only): position n chains event n's content hash to position n-1. */
export const auditChain = pgTable('audit_chain', {
  position: bigint('position', { mode: 'number' }).primaryKey(),
  eventSeq: bigint('event_seq', { mode: 'number' }).notNull().unique(),
  eventTxid: xid8('event_txid').notNull(),
  /** Hex SHA-256 of the event's RFC 8785 canonical JSON. */
  contentHash: text('content_hash').notNull(),
  /** Hex SHA-256 over the previous chain hash and this content hash. */
  chainHash: text('chain_hash').notNull(),
  sealed: timestamp('sealed', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
});

/**
 * Auditors' search over the sealed trail (src/audit/event-index.ts): one row per chain position,
 * written by the sealer in the transaction that seals the event. `keys` holds a 128-bit digest of
 * every value a FHIR search can ask for by equality (token, reference and uri parameters, and the
 * presence of each parameter), so one GIN index answers any combination of them; the event's
 * instant is a column of its own. The FHIR store holds no copy of AuditEvents: twenty-odd index
 * rows per event there cost ~12 KB and most of the sealer's time. Append-only like the trail.
 */
export const auditIndex = pgTable(
  'audit_index',
  {
    position: bigint('position', { mode: 'number' }).primaryKey(),
    /** audit_events.seq of the event: its content. */
    eventSeq: bigint('event_seq', { mode: 'number' }).notNull(),
    eventId: text('event_id').notNull().unique(),
    recorded: timestamp('recorded', { withTimezone: true, mode: 'string' }).notNull(),
    keys: uuid('keys').array().notNull(),
  },
  // New keys wait in a pending list that every search scans until it is merged into the index:
  // 512 kB (not 4 MB: 30-60 ms per auditor search under load) keeps the scan short and still
  // merges a few hundred events' keys at once (the keys most events share land in batches).
  (t) => [index('audit_index_keys_idx').using('gin', t.keys).with({ gin_pending_list_limit: 512 }), index('audit_index_recorded_idx').on(t.recorded, t.position)],
);

/** String parameters of sealed AuditEvents (address, agent-name, entity-name): prefix and :contains matches need the text. */
export const auditIndexStrings = pgTable(
  'audit_index_strings',
  {
    position: bigint('position', { mode: 'number' }).notNull(),
    code: text('code').notNull(),
    /** Lower-cased, accents removed, as sp_string.value. */
    value: text('value').notNull(),
    exact: text('exact').notNull(),
  },
  (t) => [index('audit_index_strings_value_idx').on(t.code, t.value.op('text_pattern_ops'), t.position), index('audit_index_strings_position_idx').on(t.position)],
);

/** Signed checkpoints of the chain (append-only): a JWS over {position, chain hash, time} with Baton's audit key. */
export const auditCheckpoints = pgTable('audit_checkpoints', {
  position: bigint('position', { mode: 'number' }).primaryKey(),
  chainHash: text('chain_hash').notNull(),
  time: timestamp('time', { withTimezone: true, mode: 'string' }).notNull(),
  jws: text('jws').notNull(),
});

/**
 * Segments of the audit trail moved to archive files once past retention (src/audit/archive.ts),
 * append-only. A segment ends at a checkpoint (to_position) and starts where the previous one
 * ended; verification of the trail left in the database starts from its chain hash. Deleting
 * archived rows is allowed only in the transaction that inserts their segment (archived_txid).
 */
export const auditArchiveSegments = pgTable('audit_archive_segments', {
  toPosition: bigint('to_position', { mode: 'number' }).primaryKey(),
  fromPosition: bigint('from_position', { mode: 'number' }).notNull().unique(),
  /** Chain hash at from_position - 1 (64 zeros before position 1). */
  previousChainHash: text('previous_chain_hash').notNull(),
  /** Chain hash at to_position, as the checkpoint there signs it. */
  chainHash: text('chain_hash').notNull(),
  /** The (txid, seq) sealed at to_position: sealing order continues after it. */
  lastEventTxid: xid8('last_event_txid').notNull(),
  lastEventSeq: bigint('last_event_seq', { mode: 'number' }).notNull(),
  /** The NDJSON file's name in the archive directory, and its hex SHA-256. */
  file: text('file').notNull(),
  sha256: text('sha256').notNull(),
  archivedTxid: xid8('archived_txid').notNull().default(sql`pg_current_xact_id()`),
  archivedAt: timestamp('archived_at', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
});

/** Keys that sign audit checkpoints when no external key is configured (BATON_AUDIT_KEY). */
export const auditSigningKeys = pgTable('audit_signing_keys', {
  kid: text('kid').primaryKey(),
  alg: text('alg').notNull(),
  privateJwk: jsonb('private_jwk').notNull(),
  publicJwk: jsonb('public_jwk').notNull(),
  created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
});

/**
 * UDAP Dynamic Client Registration (src/auth/udap/): the clients registered from a software
 * statement. Within a trust community (the anchor the client's certificate chains to) the
 * certificate's subjectAltName URI names one application over time (UDAP IG §3.4), so a second
 * registration with the same pair updates the same client. Deleting the client removes the row.
 */
export const authUdapRegistrations = pgTable(
  'auth_udap_registrations',
  {
    clientId: text('client_id')
      .primaryKey()
      .references(() => authClients.clientId, { onDelete: 'cascade' }),
    /** The client URI: the software statement's iss, a subjectAltName URI of its certificate. */
    san: text('san').notNull(),
    /** SHA-256 fingerprint of the trust anchor the certificate chains to. */
    community: text('community').notNull(),
    /** The software statement last accepted (its x5c header holds the certificate chain). */
    softwareStatement: text('software_statement').notNull(),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    updated: timestamp('updated', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('auth_udap_registrations_san_community_idx').on(t.san, t.community)],
);

/*
 * Identity resolution ($member-match, issue 5). The blocking index: every member filed under the
 * hashed blocking keys of everything they ever were (src/matching/blocking-keys.ts), and the
 * attributes the engine compares, so a match reads two indexed tables and never scans resources.
 * A trigger on resources queues members whose Patient or Coverage changed; the index catches up
 * from the queue before each match and in the background.
 */
export const matchIndexRecords = pgTable('match_index_records', {
  patientId: text('patient_id').primaryKey(),
  /** The CandidateRecord (src/matching/types.ts) as JSON. */
  record: text('record').notNull(),
  keyVersion: integer('key_version').notNull(),
  /** Normalized current family names and first given names, for term frequencies. */
  families: text('families').array().notNull(),
  givens: text('givens').array().notNull(),
  indexed: timestamp('indexed', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
});

export const matchIndexKeys = pgTable(
  'match_index_keys',
  {
    /** First 8 bytes of SHA-256 of the key: the keys themselves hold demographics. */
    keyHash: bigint('key_hash', { mode: 'bigint' }).notNull(),
    patientId: text('patient_id').notNull(),
  },
  (t) => [primaryKey({ columns: [t.keyHash, t.patientId] }), index('match_index_keys_patient_idx').on(t.patientId)],
);

export const matchIndexQueue = pgTable('match_index_queue', {
  patientId: text('patient_id').primaryKey(),
  queued: timestamp('queued', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
});

/** How many indexed members bear each normalized name (`family`, `given`), and `*` the total: term frequencies. */
export const matchTermCounts = pgTable(
  'match_term_counts',
  {
    field: text('field').notNull(),
    value: text('value').notNull(),
    members: integer('members').notNull(),
  },
  (t) => [primaryKey({ columns: [t.field, t.value] })],
);

/** Matching policies, every version kept; the highest version of a policy id is in force. */
export const matchingPolicies = pgTable(
  'matching_policies',
  {
    id: text('id').notNull(),
    version: integer('version').notNull(),
    body: text('body').notNull(),
    createdBy: text('created_by').notNull(),
    reason: text('reason'),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.id, t.version] })],
);

/**
 * Every match decision: tier, score, per-candidate field levels and weights, the policy version,
 * and what became of it (matched, refused, sent to review and then decided by an operator).
 */
export const matchDecisions = pgTable(
  'match_decisions',
  {
    id: text('id').primaryKey(),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    clientId: text('client_id').notNull(),
    requestId: text('request_id'),
    useCase: text('use_case').notNull(),
    policyId: text('policy_id').notNull(),
    policyVersion: integer('policy_version').notNull(),
    tier: text('tier').notNull(),
    /** matched | no-match | ambiguous | review | consent-refused | approved | rejected */
    outcome: text('outcome').notNull(),
    patientId: text('patient_id'),
    score: numeric('score'),
    /** The MatchDecision (src/matching/decide.ts) as JSON: candidates, levels, weights, reasons. */
    decision: text('decision').notNull(),
    /** Keyed hash of the client and the normalized request: a repeated request finds its earlier decision (and its review). */
    requestHash: text('request_hash'),
    /** What a match must still do once an operator approves it: CoverageToLink, Consent and the consent verdict, as JSON. */
    pending: text('pending'),
    /** The review Task, when the decision went to manual review. */
    taskId: text('task_id'),
    reviewedBy: text('reviewed_by'),
    reviewReason: text('review_reason'),
    reviewed: timestamp('reviewed', { withTimezone: true, mode: 'string' }),
  },
  (t) => [
    index('match_decisions_client_created_idx').on(t.clientId, t.created),
    index('match_decisions_task_idx').on(t.taskId),
    index('match_decisions_request_idx').on(t.clientId, t.requestHash, t.created),
  ],
);

/** $member-match attempts per client, as keyed hashes: the brute-force guard (HRex mm-7) counts card variations per demographics. */
export const matchAttempts = pgTable(
  'match_attempts',
  {
    clientId: text('client_id').notNull(),
    demographics: text('demographics').notNull(),
    card: text('card').notNull(),
    at: timestamp('at', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  },
  (t) => [index('match_attempts_client_demographics_idx').on(t.clientId, t.demographics, t.at)],
);

/** Secrets Baton generates for itself, once, shared by every process on the database (src/db/secrets.ts). */
export const serverSecrets = pgTable('server_secrets', {
  name: text('name').primaryKey(),
  /** Random bytes, base64. */
  secret: text('secret').notNull(),
  created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
});

/*
 * Bulk Data export (src/export/, issue 6). A job is planned, not copied: the worker settles the
 * export's transactionTime, resolves its members, and cuts each resource type's snapshot as of
 * that instant into files of id ranges with their counts. A download streams its range from the
 * database (resources, or resource_history for what changed since), so every process sharing
 * the database serves every file, and nothing is written twice.
 */
export const exportJobs = pgTable(
  'export_jobs',
  {
    id: text('id').primaryKey(),
    /** The client that kicked the export off: only it sees the status and the files. */
    clientId: text('client_id').notNull(),
    /** Its kind and scopes at kick-off: the access policy every step and download rebuilds. */
    clientKind: text('client_kind').notNull(),
    scopes: text('scopes').array().notNull(),
    /** system | patient | group */
    kind: text('kind').notNull(),
    groupId: text('group_id'),
    /** The kick-off URL, for the manifest's `request`. */
    requestUrl: text('request_url').notNull(),
    /** The parsed request (src/export/request.ts ExportParameters) as JSON. */
    parameters: jsonb('parameters').notNull(),
    /** OperationOutcomes served as the manifest's error file (parameters ignored under handling=lenient, and the like). */
    messages: jsonb('messages').notNull().default(sql`'[]'::jsonb`),
    transactionTime: timestamp('transaction_time', { withTimezone: true, mode: 'string' }).notNull(),
    /** queued | running | completed | failed | cancelled */
    status: text('status').notNull().default('queued'),
    /** The resource types to plan, in order, once resolved; `planned` of them are done. */
    types: text('types').array(),
    planned: integer('planned').notNull().default(0),
    /** Why the job failed: {status, outcome}. */
    error: jsonb('error'),
    leaseOwner: text('lease_owner'),
    leaseUntil: timestamp('lease_until', { withTimezone: true, mode: 'string' }),
    attempts: integer('attempts').notNull().default(0),
    /** A job that failed a step waits until then before it is retried. */
    notBefore: timestamp('not_before', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    updated: timestamp('updated', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    completed: timestamp('completed', { withTimezone: true, mode: 'string' }),
    /** The files are served until then. */
    expires: timestamp('expires', { withTimezone: true, mode: 'string' }),
    /** The last status request answered: one sooner than Retry-After allows gets 429. */
    lastPolled: timestamp('last_polled', { withTimezone: true, mode: 'string' }),
  },
  (t) => [index('export_jobs_status_idx').on(t.status, t.notBefore), index('export_jobs_client_idx').on(t.clientId, t.status)],
);

/** The files of a planned job: one resource type each, the snapshot's ids in (after_id, last_id], and how many resources that is. */
export const exportFiles = pgTable(
  'export_files',
  {
    jobId: text('job_id')
      .notNull()
      .references(() => exportJobs.id, { onDelete: 'cascade' }),
    fileNo: integer('file_no').notNull(),
    /** output | deleted | error */
    kind: text('kind').notNull(),
    resourceType: text('resource_type').notNull(),
    /** Exclusive lower bound of the ids; null from the first id. */
    afterId: text('after_id'),
    /** Inclusive upper bound of the ids. */
    lastId: text('last_id'),
    count: integer('count').notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.fileNo] })],
);

/** The members a Patient or Group export is about (the Group's members as of transactionTime, or the `patient` parameter's). */
export const exportPatients = pgTable(
  'export_patients',
  {
    jobId: text('job_id')
      .notNull()
      .references(() => exportJobs.id, { onDelete: 'cascade' }),
    patientId: text('patient_id').notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.patientId] })],
);

/**
 * The resources an export is limited to, by type: for an export about members (a Group's, the
 * `patient` parameter's, a partner's granted members) every resource of their compartments and
 * what those reference outside the compartment; for a Patient export of everyone, the resources
 * outside the compartment that the compartments reference. Recorded when the job is resolved,
 * so planning and downloads walk these ids instead of searching the compartments again.
 */
export const exportItems = pgTable(
  'export_items',
  {
    jobId: text('job_id')
      .notNull()
      .references(() => exportJobs.id, { onDelete: 'cascade' }),
    resourceType: text('resource_type').notNull(),
    id: text('id').notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.resourceType, t.id] })],
);

/**
 * The requester workflow's durable job queue (issue 7): one row per payer-to-payer request Task,
 * naming the step it runs next. Workers claim rows with FOR UPDATE SKIP LOCKED and hold a lease;
 * a crashed worker's row is taken over once its lease ends. Every change of step commits with the
 * Task version that records it.
 */
export const workflowJobs = pgTable(
  'workflow_jobs',
  {
    taskId: text('task_id').primaryKey(),
    /** validate | route | match | request | poll | import */
    step: text('step').notNull(),
    /** queued | running | completed | failed | dead-lettered | cancelled */
    status: text('status').notNull().default('queued'),
    runAt: timestamp('run_at', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    /** Failed attempts of the current step. */
    attempts: integer('attempts').notNull().default(0),
    /** When the current step was first tried: its retry budget runs from there. */
    stepStarted: timestamp('step_started', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    leaseOwner: text('lease_owner'),
    leaseUntil: timestamp('lease_until', { withTimezone: true, mode: 'string' }),
    /** What earlier steps found (partner endpoint, rule version, the partner's member identifier, the bulk status URL, …). */
    state: jsonb('state').notNull().default(sql`'{}'::jsonb`),
    /** The last error: {class, code, detail, status}. */
    lastError: jsonb('last_error'),
    /** Stages whose deadline has passed and been reported. */
    breached: text('breached').array().notNull().default(sql`'{}'::text[]`),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    updated: timestamp('updated', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  },
  (t) => [index('workflow_jobs_due_idx').on(t.status, t.runAt)],
);

/** Versions of the routing rules (control plane): rows are never changed once written. */
export const routingRuleSets = pgTable('routing_rule_sets', {
  version: integer('version').primaryKey(),
  rules: jsonb('rules').notNull(),
  created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  createdBy: text('created_by').notNull(),
  reason: text('reason'),
});

/** Which routing version is in force: the latest row. A canary sends `percent` of requests to `candidate`, the rest to `stable`. */
export const routingRollouts = pgTable('routing_rollouts', {
  id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
  stable: integer('stable')
    .notNull()
    .references(() => routingRuleSets.version),
  candidate: integer('candidate').references(() => routingRuleSets.version),
  percent: integer('percent').notNull().default(0),
  created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  createdBy: text('created_by').notNull(),
});

/** Resources a partner sent that failed validation: kept for an operator, reported on the Task, never imported. */
export const workflowQuarantine = pgTable(
  'workflow_quarantine',
  {
    id: text('id').primaryKey(),
    taskId: text('task_id').notNull(),
    resourceType: text('resource_type').notNull(),
    /** The resource's id at the partner. */
    sourceId: text('source_id'),
    /** The OperationOutcome of the failed validation. */
    issues: jsonb('issues').notNull(),
    content: jsonb('content').notNull(),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('workflow_quarantine_source_idx').on(t.taskId, t.resourceType, t.sourceId)],
);

const bytea = customType<{ data: Uint8Array }>({ dataType: () => 'bytea' });

/**
 * Idempotency-Key (src/fhir/http/idempotency.ts): one row per (client, key). A row whose status
 * is null is a claim: the request holding `claim` is running, and keeps lease_until ahead of
 * now() while it does; a claim whose lease ran out was left by a process that died, and may be
 * taken over. A row with a status is the stored response, replayed until expires. The request
 * itself is kept only as a fingerprint (a hash), never its body.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    clientId: text('client_id').notNull(),
    key: text('key').notNull(),
    /** SHA-256 (hex) of method, path, query and the SHA-256 of the body. */
    fingerprint: text('fingerprint').notNull(),
    /** The running request's random token: only it may store or release the row. */
    claim: text('claim').notNull(),
    leaseUntil: timestamp('lease_until', { withTimezone: true, mode: 'string' }).notNull(),
    /** The response: null while the request runs. */
    status: integer('status'),
    /** [name, value] pairs. */
    headers: jsonb('headers'),
    body: bytea('body'),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    expires: timestamp('expires', { withTimezone: true, mode: 'string' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.clientId, t.key] }), index('idempotency_keys_expires_idx').on(t.expires)],
);

/**
 * Topic-based subscriptions (src/subscriptions/, Subscriptions Backport IG): the registry of
 * Subscription resources as the delivery worker reads them. The resource itself is stored as
 * every resource is; this row holds what delivery needs and its state. The owner's kind and
 * scopes at creation are kept so that events are filtered, and deliveries re-checked, with the
 * access policy of the client that created the subscription.
 */
export const subscriptions = pgTable(
  'subscriptions',
  {
    id: text('id').primaryKey(),
    clientId: text('client_id').notNull(),
    clientKind: text('client_kind').notNull(),
    scopes: text('scopes').array().notNull(),
    topic: text('topic').notNull(),
    /** [{resourceType, parameter, value}] from _criteria backport-filter-criteria. */
    filters: jsonb('filters').notNull(),
    /** requested | active | error | off */
    status: text('status').notNull(),
    endpoint: text('endpoint').notNull(),
    /** channel.header lines, sent on every notification. */
    headers: jsonb('headers').notNull(),
    /** empty | id-only | full-resource */
    content: text('content').notNull(),
    contentType: text('content_type').notNull(),
    heartbeatSeconds: integer('heartbeat_seconds'),
    timeoutSeconds: integer('timeout_seconds').notNull(),
    maxCount: integer('max_count').notNull(),
    /** Subscription.end: when the server turns the subscription off. */
    ends: timestamp('ends', { withTimezone: true, mode: 'string' }),
    /** The last event number the endpoint acknowledged (2xx). */
    deliveredCount: bigint('delivered_count', { mode: 'number' }).notNull().default(0),
    leaseOwner: text('lease_owner'),
    leaseUntil: timestamp('lease_until', { withTimezone: true, mode: 'string' }),
    /** Failed attempts in a row, and when the first of them failed: the retry budget runs from there. */
    attempts: integer('attempts').notNull().default(0),
    failingSince: timestamp('failing_since', { withTimezone: true, mode: 'string' }),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
    nextHeartbeatAt: timestamp('next_heartbeat_at', { withTimezone: true, mode: 'string' }),
    created: timestamp('created', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  },
  (t) => [index('subscriptions_topic_idx').on(t.topic, t.status), index('subscriptions_due_idx').on(t.status, t.nextAttemptAt)],
);

/**
 * Event numbers of a subscription: a row apart from `subscriptions` so that the writing
 * transactions that allocate numbers never wait for the delivery worker's updates, nor it for
 * them. The row lock taken by the allocation makes the numbers gap-free: a number is used only
 * when its transaction commits.
 */
export const subscriptionEventCounters = pgTable('subscription_event_counters', {
  subscriptionId: text('subscription_id').primaryKey(),
  eventCount: bigint('event_count', { mode: 'number' }).notNull().default(0),
});

/** The durable event log (outbox) of every subscription: delivered from, and replayed by $events. */
export const subscriptionEvents = pgTable(
  'subscription_events',
  {
    subscriptionId: text('subscription_id').notNull(),
    eventNumber: bigint('event_number', { mode: 'number' }).notNull(),
    /** The focus: a resource (type, id, version) or, for events about something else (an export job), a reference. */
    focusType: text('focus_type'),
    focusId: text('focus_id'),
    focusVersion: integer('focus_version'),
    focusReference: text('focus_reference'),
    /** POST | PUT | DELETE: the entry's request in full-resource and id-only notifications. */
    method: text('method'),
    additionalContext: jsonb('additional_context').notNull().default(sql`'[]'::jsonb`),
    occurred: timestamp('occurred', { withTimezone: true, mode: 'string' }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.subscriptionId, t.eventNumber] })],
);

/**
 * The version of the subscription registry, bumped in the transaction of every change to which
 * subscriptions exist, to what, and with which filters. A write reads this one row and matches
 * against the process's copy of the registry while the version holds (src/subscriptions/
 * events.ts), instead of reading every subscription of its topics. The epoch tells databases
 * apart (a process may hold several: tests).
 */
export const subscriptionRegistryVersion = pgTable('subscription_registry_version', {
  singleton: boolean('singleton').primaryKey().default(true),
  epoch: text('epoch').notNull().default(sql`gen_random_uuid()::text`),
  version: bigint('version', { mode: 'number' }).notNull().default(0),
});
