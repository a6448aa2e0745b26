import { sqlState } from '../db/connection.ts';
import { FhirError, outcome } from './errors.ts';

/**
 * PostgreSQL errors a client can cause by racing another client: two creates of the same id
 * (unique violation), a serialization failure or a deadlock between transactions. They are
 * conflicts the client may retry (409), not server faults.
 */
const RETRYABLE: Record<string, string> = {
  '23505': 'A concurrent request wrote the same resource; retry',
  '40001': 'A concurrent transaction conflicted with this one; retry',
  '40P01': 'A concurrent transaction conflicted with this one (deadlock); retry',
};

/**
 * The SQLSTATE with which the append-only triggers (migrations/0009_audit_append_only.sql) refuse
 * an UPDATE, DELETE or TRUNCATE of the audit trail, AuditEvent rows of the FHIR store included.
 * A class of Baton's own, so it is never confused with a privilege error: if it ever reaches a
 * request, the caller asked to change the audit trail (405), it is not a server fault.
 */
export const AUDIT_APPEND_ONLY_SQLSTATE = 'ZA001';

/**
 * The database closed the connection or would not take one: a restart, a failover, a backend
 * terminated by an operator, the connection limit. postgres.js's own codes for a lost or refused
 * connection, the socket's, and the SQLSTATEs of classes 08 (connection exception) and 57P
 * (shutdown), with 53300 (too many connections). Another try shortly may succeed (503).
 */
const UNAVAILABLE = new Set(['CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECTION_ENDED', 'CONNECT_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', '53300']);
const isUnavailable = (code: string) => UNAVAILABLE.has(code) || /^(08|57P)/.test(code);

/** The FhirError of a database failure the client caused or can retry; undefined for a server fault (500). */
export function fhirErrorFromDatabase(error: unknown): FhirError | undefined {
  const code = sqlState(error);
  if (code === undefined) return undefined;
  if (code === AUDIT_APPEND_ONLY_SQLSTATE) return new FhirError(405, outcome('error', 'not-supported', 'The audit trail is append-only: AuditEvents cannot be changed or deleted'), { Allow: 'GET' });
  if (isUnavailable(code)) return new FhirError(503, outcome('error', 'transient', 'The database is unavailable (connection lost or refused); retry shortly'), { 'Retry-After': '1' });
  const message = RETRYABLE[code];
  return message ? new FhirError(409, outcome('error', 'conflict', message)) : undefined;
}
