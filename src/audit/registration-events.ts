import { randomUUID } from 'node:crypto';
import type { Queryable } from '../db/connection.ts';
import { toAuditEvent } from './balp.ts';
import { insertAuditEvents } from './writer.ts';

/**
 * Records, in the registering transaction, a client registered or changed from the clients file
 * (BATON_CLIENTS_FILE) at start: Baton itself acts, on the operator's configuration.
 */
export function auditClientsFileChange(baseUrl: string): (tx: Queryable, clientId: string, change: 'created' | 'updated') => Promise<void> {
  return async (tx, clientId, change) => {
    const event = toAuditEvent({
      id: randomUUID(),
      recorded: new Date().toISOString(),
      interaction: 'operation',
      operation: 'urn:baton:clients-file',
      action: change === 'created' ? 'C' : 'U',
      outcome: '0',
      httpStatus: change === 'created' ? 201 : 200,
      caller: { clientId: 'baton', kind: 'operator' },
      requestId: randomUUID(),
      server: baseUrl,
      query: `BATON_CLIENTS_FILE ${change} client_id=${clientId}`,
    });
    await insertAuditEvents(tx, [event]);
  };
}
