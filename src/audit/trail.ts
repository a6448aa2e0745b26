import type { AuditEvent, Resource } from '@medplum/fhirtypes';
import { newId } from '../db/ids.ts';
import type { Queryable } from '../db/connection.ts';
import type { AuditSink, ReturnedResource, WriteFact } from '../fhir/audit-sink.ts';
import { patientsOf } from '../fhir/compartment.ts';
import { toAuditEvent } from './balp.ts';
import { actionOf, classifyRequest, type RequestKind } from './classify.ts';
import type { AuditCaller, AuditOutcome, AuditRecord } from './record.ts';
import { insertAuditEvents } from './writer.ts';

/** The request as the audit sees it: no body, no headers beyond the request id. */
export interface AuditedRequest {
  requestId: string;
  method: string;
  /** The path under the FHIR base (`/Patient/1`). */
  path: string;
  /** The query string with its `?`, or ''. */
  search: string;
  sourceAddress?: string;
  /** The FHIR base URL. */
  server: string;
}

/**
 * The audit of one FHIR request. Writes are recorded in their own transaction (flush), one
 * AuditEvent per member the written resource concerns; when the response is known, finish()
 * returns the events still to record: what reads and searches served (one per member touched,
 * BALP's patient-specific pattern), or the failure.
 */
export class RequestAudit implements AuditSink {
  private readonly kind: RequestKind;
  private readonly pending = new Map<Queryable, WriteFact[]>();
  private writesRecorded = 0;
  private readonly served: ReturnedResource[] = [];

  constructor(
    private readonly request: AuditedRequest,
    /** Who called: known once the token is verified, so read when events are built. */
    private readonly caller: () => AuditCaller | undefined,
  ) {
    this.kind = classifyRequest(request.method, request.path);
  }

  wrote(q: Queryable, fact: WriteFact): void {
    const facts = this.pending.get(q);
    if (facts) facts.push(fact);
    else this.pending.set(q, [fact]);
  }

  async flush(q: Queryable): Promise<void> {
    const facts = this.pending.get(q);
    if (!facts) return;
    this.pending.delete(q);
    const events = facts.flatMap((fact) => this.perPatient(patientsOf(fact.resource, this.request.server), (patient) => this.event({
      interaction: fact.interaction,
      // An update that creates the resource (create-on-update) is a Create.
      action: fact.versionId === 1 && fact.interaction === 'update' ? 'C' : actionOf(fact.interaction),
      outcome: '0',
      httpStatus: fact.interaction === 'create' ? 201 : 200,
      resource: { type: fact.resource.resourceType, id: fact.resource.id, versionId: fact.versionId },
      patient,
    })));
    await insertAuditEvents(q, events);
    this.writesRecorded += facts.length;
  }

  returned(resources: readonly ReturnedResource[]): void {
    this.served.push(...resources);
  }

  bundle(type: 'batch' | 'transaction'): void {
    this.kind.interaction = type;
  }

  /** The events left to record once the response has `status`; `problem` is the failure's diagnostics. */
  finish(status: number, problem?: string): AuditEvent[] {
    const { interaction, action, resourceType, id, versionId } = this.kind;
    const resource = resourceType ? { type: resourceType, id, versionId } : undefined;
    if (status >= 400) {
      const outcome: AuditOutcome = status >= 500 ? '8' : '4';
      return [this.event({ interaction, action, outcome, outcomeDescription: problem ?? `HTTP ${status}`, httpStatus: status, resource, query: this.query() })];
    }
    if (action === 'C' || action === 'U' || action === 'D') {
      // Recorded with the write; a write that wrote nothing (an unchanged update, a conditional
      // create that found its match) is recorded here.
      return this.writesRecorded > 0 ? [] : [this.event({ interaction, action, outcome: '0', httpStatus: status, resource })];
    }
    const patients = new Set<string>();
    for (const served of this.served) for (const patient of patientsOf(parsed(served), this.request.server)) patients.add(patient);
    const query = interaction === 'read' || interaction === 'vread' ? undefined : this.query();
    return this.perPatient([...patients], (patient) => this.event({ interaction, action, outcome: '0', httpStatus: status, resource, patient, query }));
  }

  /** One event per member, or a single one without a member when none is concerned. */
  private perPatient(patients: string[], build: (patient: string | undefined) => AuditEvent): AuditEvent[] {
    return patients.length === 0 ? [build(undefined)] : patients.map(build);
  }

  private event(fields: Omit<AuditRecord, 'id' | 'recorded' | 'caller' | 'sourceAddress' | 'requestId' | 'server' | 'operation'>): AuditEvent {
    return toAuditEvent({
      ...fields,
      id: newId(),
      recorded: new Date().toISOString(),
      caller: this.caller(),
      sourceAddress: this.request.sourceAddress,
      requestId: this.request.requestId,
      server: this.request.server,
      ...(this.kind.operation ? { operation: this.kind.operation } : {}),
    });
  }

  /** BALP records a query as the request that made it: method, path and query string. */
  private query(): string {
    return `${this.request.method} ${this.request.server}${this.request.path}${this.request.search}`;
  }
}

/**
 * The audit of writes Baton makes on its own account, outside a client's FHIR request (a worker
 * moving a request on, a subscription's status, an operator's admin action): `path` names the
 * resource acted on and `requestId` what groups the events (a Task's workflow, a subscription).
 */
export function serverAudit(server: string, requestId: string, path: string, caller: AuditCaller): RequestAudit {
  return new RequestAudit({ requestId: requestId.slice(0, 64), method: 'PUT', path, search: '', server }, () => caller);
}

function parsed(served: ReturnedResource): Resource & { id: string } {
  if (typeof served.content !== 'string') return served.content as Resource & { id: string };
  // A Patient's compartment is itself: no need to parse it.
  if (served.resourceType === 'Patient') return { resourceType: 'Patient', id: served.id };
  return JSON.parse(served.content) as Resource & { id: string };
}
