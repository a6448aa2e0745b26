import type { Partner } from './directory.ts';
import { createPartnerClient, type PartnerClientDeps } from './partner/client.ts';
import type { PartnerClient } from './partner/types.ts';

/** The partner client of a directory entry, made once per entry version (an edited Endpoint gets a new client). */
export function partnerClients(deps: PartnerClientDeps): (partner: Partner) => PartnerClient {
  const clients = new Map<string, { settings: string; client: PartnerClient }>();
  return (partner) => {
    const settings = JSON.stringify(partner.endpoint);
    const cached = clients.get(partner.endpoint.id);
    if (cached?.settings === settings) return cached.client;
    const client = createPartnerClient(partner.endpoint, deps);
    clients.set(partner.endpoint.id, { settings, client });
    return client;
  };
}
