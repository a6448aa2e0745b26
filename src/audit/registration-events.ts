import { randomUUID } from 'node:crypto';
import type { Queryable } from '../db/connection.ts';
import { newId } from '../db/ids.ts';
import { toAuditEvent } from './balp.ts';
import { insertAuditEvents } from './writer.ts';

/**
 * Changes Baton makes to its control plane from configuration files, recorded in the transaction
 * that makes them: Baton itself acts, on the operator's configuration.
 *
 * A client registered or changed from the clients file (BATON_CLIENTS_FILE) at start.
 */
export function auditClientsFileChange(baseUrl: string): (tx: Queryable, clientId: string, change: 'created' | 'updated') => Promise<void> {
  return (tx, clientId, change) =>
    recordConfigurationChange(tx, baseUrl, { operation: 'urn:baton:clients-file', created: change === 'created', query: `BATON_CLIENTS_FILE ${change} client_id=${clientId}` });
}

/** Records, in the storing transaction, a matching policy version stored from config/matching/ (at start, or on first use). */
export function auditPolicyFileChange(baseUrl: string): (tx: Queryable, policy: { id: string; version: number }) => Promise<void> {
  return (tx, policy) => recordConfigurationChange(tx, baseUrl, { operation: 'urn:baton:matching-policy-file', created: true, query: `policy file stored ${policy.id} v${policy.version}` });
}

async function recordConfigurationChange(tx: Queryable, baseUrl: string, change: { operation: string; created: boolean; query: string }): Promise<void> {
  const event = toAuditEvent({
    id: newId(),
    recorded: new Date().toISOString(),
    interaction: 'operation',
    operation: change.operation,
    action: change.created ? 'C' : 'U',
    outcome: '0',
    httpStatus: change.created ? 201 : 200,
    caller: { clientId: 'baton', kind: 'operator' },
    requestId: randomUUID(),
    server: baseUrl,
    query: change.query,
  });
  await insertAuditEvents(tx, [event]);
}
