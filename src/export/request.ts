import type { OperationOutcome } from '@medplum/fhirtypes';

/**
 * What an export is asked to produce: the engine's input (ExportEngine.startExport). The Bulk
 * Data kick-off (src/operations/export.ts) builds one from $export's parameters; other
 * operations that deliver NDJSON through the same jobs, status URL and files
 * ($davinci-data-export, …) build theirs.
 */
export type ExportKind =
  /** [base]/$export: every resource the caller may see. */
  | 'system'
  /** [base]/Patient/$export: the Patient compartments (of `patients`, when given). */
  | 'patient'
  /** [base]/Group/[id]/$export: the compartments of the Group's members as of transactionTime. */
  | 'group';

/** Which Provenance goes with the exported resources (Bulk Data includeAssociatedData). */
export type AssociatedProvenance =
  /** RelevantProvenanceResources: every Provenance targeting an exported resource. */
  | 'relevant'
  /** LatestProvenanceResources: only the most recent Provenance of each exported resource. */
  | 'latest';

/** One `_typeFilter` query: a FHIR search on one type, its query string without the `?`. */
export interface TypeFilter {
  type: string;
  query: string;
}

/** The request as a job keeps it (export_jobs.parameters), already checked. */
export interface ExportParameters {
  /** Resource types asked for (`_type`); undefined: every type the export covers. */
  types?: string[];
  /** Only resources whose version as of transactionTime was written after this instant (`_since`). */
  since?: string;
  /** Only resources whose version as of transactionTime was written at or before this instant (Bulk Data 3 / ATR `_until`). */
  until?: string;
  /** Searches narrowing their type; several on one type are alternatives (`_typeFilter`). */
  typeFilters?: TypeFilter[];
  /** Root elements to keep, `Type.element` or `element` for every type (`_elements`); the others are left out and the resource tagged SUBSETTED. */
  elements?: string[];
  /** Patient and Group exports: only these members (`patient`), as Patient ids. */
  patients?: string[];
  associatedProvenance?: AssociatedProvenance;
  /** PDex payer-to-payer ($davinci-data-export): claims without provider remittances and enrollee cost-sharing (non-financial.ts). */
  nonFinancialClaims?: boolean;
  /** Members a $bulk-member-match asked for: matched by a worker before the job is resolved, then removed from the job. */
  membersToMatch?: MembersToMatch;
}

/**
 * A $bulk-member-match's request as its job keeps it until a worker has matched it: the
 * Parameters as sent (demographics: they leave the job in the transaction that stores the
 * Groups), the requester's Organization identifiers (its consents name them), and the batch the
 * Groups are stored under (the job's `_typeFilter` exports them).
 */
export interface MembersToMatch {
  batchId: string;
  requester: { system: string; value: string }[];
  body: unknown;
}

export interface ExportRequest extends ExportParameters {
  kind: ExportKind;
  /** The Group, for kind `group`. */
  groupId?: string;
  /** The kick-off URL as the client sent it (under the public base URL): the manifest's `request`. */
  requestUrl: string;
  /** OperationOutcomes the manifest's error file carries: what was ignored under `Prefer: handling=lenient`. */
  messages?: OperationOutcome[];
}
