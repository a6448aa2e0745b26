import { createHash, randomUUID } from 'node:crypto';
import type { Organization, Provenance, Reference, Resource } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import type { AuditSink } from '../fhir/audit-sink.ts';
import { systemAccess } from '../fhir/access.ts';
import { FhirError } from '../fhir/errors.ts';
import * as interactions from '../fhir/interactions.ts';
import type { ResourceValidator } from '../fhir/validation.ts';

/**
 * Imports what a partner sent about the member: each resource under an id derived from the
 * partner and its id there (so importing the same data again changes nothing: no duplicates,
 * whatever the retries), references rewritten to those ids (the partner's member becomes the
 * member here; another person, such as a subscriber, is not imported and stays referenced at
 * the partner by absolute URL), `meta.source` naming the original; resources that fail validation are
 * quarantined, not dropped; one PDex Provenance per exchange names the partner as transmitter.
 */
export interface ImportTarget {
  db: Database;
  baseUrl: string;
  validator: ResourceValidator;
  /** Audits each write in its transaction. */
  audit: () => AuditSink;
  taskId: string;
  partnerBaseUrl: string;
  partnerMemberId: string;
  memberId: string;
  /** `Organization/<id>` of the partner, when the directory names it. */
  transmitter: string | undefined;
}

export interface ImportReport {
  imported: number;
  unchanged: number;
  quarantined: number;
  /** `Type/id/_history/n` of every version this exchange delivered. */
  targets: string[];
}

const CHUNK = 100;

export function emptyReport(): ImportReport {
  return { imported: 0, unchanged: 0, quarantined: 0, targets: [] };
}

/** Imports a stream in transactions of CHUNK resources; `progress` runs between them (a lease renewal). */
export async function importResources(target: ImportTarget, resources: AsyncIterable<Resource>, report: ImportReport, progress: () => Promise<void>): Promise<void> {
  let chunk: Resource[] = [];
  for await (const resource of resources) {
    chunk.push(resource);
    if (chunk.length === CHUNK) {
      await importChunk(target, chunk, report);
      await progress();
      chunk = [];
    }
  }
  if (chunk.length) await importChunk(target, chunk, report);
}

async function importChunk(target: ImportTarget, resources: Resource[], report: ImportReport): Promise<void> {
  const audit = target.audit();
  await target.db.transaction(async (q) => {
    const ctx: interactions.FhirContext = { db: target.db, q, inTransaction: true, baseUrl: target.baseUrl, validator: target.validator, access: systemAccess, audit };
    for (const received of resources) {
      if (received.resourceType === 'Patient' && received.id === target.partnerMemberId) continue;
      if (received.resourceType === 'Patient') {
        await quarantine(q, target.taskId, received, 'A Patient other than the requested member');
        report.quarantined += 1;
        continue;
      }
      const local = localResource(target, received);
      try {
        target.validator.validate(local);
      } catch (error) {
        if (!(error instanceof FhirError)) throw error;
        await quarantine(q, target.taskId, received, error.outcome);
        report.quarantined += 1;
        continue;
      }
      const result = await interactions.update(ctx, local.resourceType, local.id as string, local);
      if (result.status === 200 && result.versionId !== undefined && result.resource === undefined) report.unchanged += 1;
      else report.imported += 1;
      report.targets.push(`${local.resourceType}/${local.id}/_history/${result.versionId}`);
    }
    await audit.flush(q);
  });
}

/** The local id of a partner's resource: the same for the same partner and id, every time. */
export function localId(partnerBaseUrl: string, type: string, id: string): string {
  return `p2p-${createHash('sha256').update(`${partnerBaseUrl}|${type}/${id}`).digest('hex').slice(0, 40)}`;
}

const REFERENCE = /^(?:(https?:\/\/.+)\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/** The resource as stored here: local id, references rewritten, the partner's copy named in meta.source. */
export function localResource(target: Pick<ImportTarget, 'partnerBaseUrl' | 'partnerMemberId' | 'memberId'>, received: Resource): Resource {
  const rewrite = (reference: string): string => {
    const match = REFERENCE.exec(reference);
    if (!match) return reference;
    const [, base, type, id] = match;
    if (base !== undefined && base.replace(/\/+$/, '') !== target.partnerBaseUrl) return reference;
    if (type === 'Patient') return id === target.partnerMemberId ? `Patient/${target.memberId}` : `${target.partnerBaseUrl}/Patient/${id}`;
    return `${type}/${localId(target.partnerBaseUrl, type, id)}`;
  };
  const walk = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(walk);
    if (typeof value !== 'object' || value === null) return value;
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) out[key] = key === 'reference' && typeof inner === 'string' ? rewrite(inner) : walk(inner);
    return out;
  };
  const { resourceType, meta, id, ...rest } = received;
  const kept = { ...(meta?.profile ? { profile: meta.profile } : {}), ...(meta?.tag ? { tag: meta.tag } : {}), ...(meta?.security ? { security: meta.security } : {}) };
  const source = `${target.partnerBaseUrl}/${resourceType}/${id ?? ''}`;
  // In the order the store writes (resourceType, id, meta, …), so a re-import compares equal and writes no version.
  return { resourceType, id: localId(target.partnerBaseUrl, resourceType, id ?? randomUUID()), meta: { ...kept, source }, ...(walk(rest) as object) } as Resource;
}

async function quarantine(q: Queryable, taskId: string, received: Resource, issues: unknown): Promise<void> {
  const outcome = typeof issues === 'string' ? { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'business-rule', diagnostics: issues }] } : issues;
  await q.execute(sql`INSERT INTO workflow_quarantine (id, task_id, resource_type, source_id, issues, content)
    VALUES (${randomUUID()}, ${taskId}, ${String(received.resourceType).slice(0, 64)}, ${received.id ?? null}, ${JSON.stringify(outcome)}::jsonb, ${JSON.stringify(received)}::jsonb)
    ON CONFLICT (task_id, resource_type, source_id) DO NOTHING`);
}

/** PDex Provenance of one exchange: the partner transmitted these versions to this payer. */
export async function recordExchangeProvenance(target: ImportTarget, report: ImportReport): Promise<string | undefined> {
  if (report.targets.length === 0) return undefined;
  const transmitter: Reference<Organization> = target.transmitter ? { reference: target.transmitter } : { display: target.partnerBaseUrl };
  const provenance: Provenance = {
    resourceType: 'Provenance',
    id: `p2p-exchange-${target.taskId}`.slice(0, 64),
    meta: { profile: ['http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-provenance'] },
    target: report.targets.map((reference) => ({ reference })),
    recorded: new Date().toISOString(),
    agent: [
      {
        type: {
          coding: [
            { system: 'http://hl7.org/fhir/us/davinci-pdex/CodeSystem/ProvenanceAgentRoleType', code: 'transmitter', display: 'Transmitter' },
            { system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type', code: 'transmitter', display: 'Transmitter' },
          ],
        },
        who: transmitter,
      },
    ],
    entity: [{ role: 'source', what: { reference: `Task/${target.taskId}`, display: `Payer-to-payer exchange from ${target.partnerBaseUrl}` } }],
  };
  const audit = target.audit();
  return target.db.transaction(async (q) => {
    const ctx: interactions.FhirContext = { db: target.db, q, inTransaction: true, baseUrl: target.baseUrl, validator: target.validator, access: systemAccess, audit };
    const result = await interactions.update(ctx, 'Provenance', provenance.id as string, provenance);
    await audit.flush(q);
    return `Provenance/${result.id}`;
  });
}
