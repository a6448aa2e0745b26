/**
 * The SQLSTATE with which the append-only triggers (migrations/0009_audit_append_only.sql) refuse
 * an UPDATE, DELETE or TRUNCATE of the audit trail, AuditEvent rows of the FHIR store included.
 * A class of Baton's own, so it is never confused with a privilege error: if it ever reaches a
 * request, the caller asked to change the audit trail (405), it is not a server fault.
 */
export const AUDIT_APPEND_ONLY_SQLSTATE = 'ZA001';
