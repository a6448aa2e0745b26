/**
 * What Baton knows about one audited action, before it becomes a BALP AuditEvent (balp.ts).
 * References and identifiers only: never names, birth dates, addresses or payloads.
 */
export type AuditInteraction =
  | 'read'
  | 'vread'
  | 'history-instance'
  | 'history-type'
  | 'history-system'
  | 'search-type'
  | 'create'
  | 'update'
  | 'patch'
  | 'delete'
  | 'batch'
  | 'transaction'
  | 'capabilities'
  | 'operation'
  /** A token request at /auth/token. */
  | 'token';

/** DICOM/FHIR AuditEvent.action: Create, Read, Update, Delete, Execute. */
export type AuditAction = 'C' | 'R' | 'U' | 'D' | 'E';

/** AuditEvent.outcome: 0 success, 4 minor failure (the caller's: 4xx), 8 serious failure (the server's: 5xx), 12 major failure. */
export type AuditOutcome = '0' | '4' | '8' | '12';

export interface AuditCaller {
  clientId: string;
  kind: 'partner' | 'internal' | 'operator';
  /** The access token's jti: BALP OAUTHaccessTokenUse.Minimal records it as the agent's policy. */
  tokenId?: string;
}

export interface AuditRecord {
  /** AuditEvent.id. */
  id: string;
  /** AuditEvent.recorded, an ISO instant. */
  recorded: string;
  interaction: AuditInteraction;
  /** The OperationDefinition canonical, for interaction 'operation'. */
  operation?: string;
  action: AuditAction;
  outcome: AuditOutcome;
  /** Why it failed: Baton's own OperationOutcome diagnostics (which never carry PHI). */
  outcomeDescription?: string;
  httpStatus: number;
  /** Who called; absent when no valid token was presented (a 401). */
  caller?: AuditCaller;
  /** The client's network address, when known. */
  sourceAddress?: string;
  /** X-Request-Id of the request (BALP XrequestId entity). */
  requestId: string;
  /** Baton's FHIR base URL: the server agent's network address. */
  server: string;
  /** The resource acted on or read. */
  resource?: { type: string; id?: string; versionId?: number };
  /** The member concerned (Patient id): makes the event a BALP Patient* event. */
  patient?: string;
  /** For searches and operations: the request as received (method, path and query, and the headers that shape it); recorded base64 per BALP. */
  query?: string;
}
