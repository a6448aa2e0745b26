import { randomUUID } from 'node:crypto';
import type { AuditEvent } from '@medplum/fhirtypes';
import { type SQL, sql } from 'drizzle-orm';
import type { AuditConfig } from '../../src/config.ts';
import type { Database, Queryable } from '../../src/db/connection.ts';

/** Checkpoints every 10 positions, never by time unless a test asks. */
export const AUDIT: AuditConfig = { key: undefined, checkpointEvery: 10, checkpointSeconds: 3600 };

/** A BALP PatientRead AuditEvent (the shape of IHE's ex-auditBasicReadServer, minimal). */
export function auditEvent(patient = 'example', id: string = randomUUID()): AuditEvent & { id: string } {
  return {
    resourceType: 'AuditEvent',
    id,
    meta: { profile: ['https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead'] },
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' },
    subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'read', display: 'read' }],
    action: 'R',
    recorded: new Date().toISOString(),
    outcome: '0',
    agent: [
      {
        type: { coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110153', display: 'Source Role ID' }] },
        who: { identifier: { system: 'http://baton.test/clients', value: 'partner-a' } },
        requestor: true,
        network: { address: '192.0.2.7', type: '2' },
      },
    ],
    source: { observer: { display: 'baton' }, type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4' }] },
    entity: [
      { what: { reference: `Patient/${patient}` }, type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1' }, role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1' } },
    ],
  };
}

/** Inserts events into audit_events as the audit writer does (in the caller's transaction when `q` is one). */
export async function recordEvents(q: Queryable, events: AuditEvent[]): Promise<void> {
  const rows = events.map((e) => sql`(${e.id}, ${e.recorded}::timestamptz, ${JSON.stringify(e)})`);
  await q.execute(sql`INSERT INTO audit_events (event_id, recorded, content) VALUES ${sql.join(rows, sql`, `)}`);
}

/** Runs statements with the append-only triggers off, as someone able to disable them could. */
export async function tamper(db: Database, ...statements: SQL[]): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(sql`SET LOCAL session_replication_role = replica`);
    for (const statement of statements) await tx.execute(statement);
  });
}

/** The event ids of the chain in position order. */
export async function chainOrder(q: Queryable): Promise<string[]> {
  const rows = await q.execute<{ event_id: string }>(sql`SELECT e.event_id FROM audit_chain c JOIN audit_events e ON e.seq = c.event_seq ORDER BY c.position`);
  return rows.map((r) => r.event_id);
}
