import type { Resource } from '@medplum/fhirtypes';
import type { Queryable } from '../db/connection.ts';

/**
 * Where the REST layer reports what it did, for the audit trail (src/audit). Writes are reported
 * inside their database transaction and recorded in it (flush), so a write and its AuditEvent
 * commit or roll back together; what reads and searches returned is recorded when the request ends.
 */
export interface WriteFact {
  interaction: 'create' | 'update' | 'patch' | 'delete';
  /** The version written (for a delete, the tombstone: the last content). */
  resource: Resource & { id: string };
  versionId: number;
}

export interface AuditSink {
  /** A version was written on transaction `q`; it is recorded when `q` flushes. */
  wrote(q: Queryable, fact: WriteFact): void;
  /** Records the writes reported on `q`, in `q`: called last in the transaction, before it commits. */
  flush(q: Queryable): Promise<void>;
  /** Resources a read, search or history returned to the caller. */
  returned(resources: readonly ReturnedResource[]): void;
  /** The request is a Bundle of this type. */
  bundle(type: 'batch' | 'transaction'): void;
}

/** A resource served: parsed, or as its stored JSON (parsed only if the audit needs its references). */
export interface ReturnedResource {
  resourceType: string;
  id: string;
  versionId?: number;
  content: Resource | string;
}

/** For Baton's own start-up work (seeding, its Organization), which is not a client interaction. */
export const noAudit: AuditSink = {
  wrote: () => undefined,
  flush: async () => undefined,
  returned: () => undefined,
  bundle: () => undefined,
};
