import type { Endpoint, Extension } from '@medplum/fhirtypes';
import type { Queryable } from '../db/connection.ts';
import { readCurrent } from '../fhir/store.ts';
import type { PartnerEndpoint } from './partner/types.ts';
import { DEFAULT_RETRY_POLICY, parseRetryPolicy, type RetryPolicy } from './retry-policy.ts';
import type { RequestType } from './task-contract.ts';

/**
 * The partner directory: an Endpoint per partner FHIR server (address = its base URL), managed by
 * the partner's Organization, with Baton's settings for talking to it as extensions: token URL,
 * the client id Baton holds there, scopes, which outbound key signs, the adapter, a timeout,
 * the flows it serves (single-member, bulk) and, optionally, its own retry policy (JSON).
 */
export const ENDPOINT_EXTENSION = {
  tokenUrl: 'urn:baton:endpoint-token-url',
  clientId: 'urn:baton:endpoint-client-id',
  scope: 'urn:baton:endpoint-scope',
  keyId: 'urn:baton:endpoint-key-id',
  adapter: 'urn:baton:endpoint-adapter',
  timeoutMs: 'urn:baton:endpoint-timeout-ms',
  capability: 'urn:baton:endpoint-capability',
  retryPolicy: 'urn:baton:endpoint-retry-policy',
} as const;

export interface Partner {
  endpoint: PartnerEndpoint;
  /** `Organization/<id>`: the partner, transmitter of what it sends. */
  organization: string | undefined;
  capabilities: RequestType[];
  retry: RetryPolicy;
}

/** Why a directory entry cannot be used; the request fails for good (an operator must fix the entry). */
export class DirectoryError extends Error {
  override name = 'DirectoryError';
}

/** What an operator states about a partner; `endpointResource` writes it as the directory's Endpoint. */
export interface PartnerSettings extends Pick<PartnerEndpoint, 'id' | 'baseUrl' | 'tokenUrl' | 'clientId'> {
  scope?: string;
  keyId?: string;
  adapter?: string;
  timeoutMs?: number;
  capabilities?: RequestType[];
  /** A retry policy of the partner's own (retry-policy.ts JSON). */
  retryPolicy?: Partial<RetryPolicy>;
  /** `Organization/<id>` of the partner. */
  organization?: string;
}

/** The directory entry of a partner: the Endpoint partnerOf reads back. */
export function endpointResource(settings: PartnerSettings): Endpoint & { id: string } {
  const optional = (url: string, value: Omit<Extension, 'url'> | undefined): Extension[] => (value ? [{ ...value, url }] : []);
  return {
    resourceType: 'Endpoint',
    id: settings.id,
    status: 'active',
    connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'hl7-fhir-rest' },
    payloadType: [{ text: 'FHIR R4' }],
    address: settings.baseUrl,
    ...(settings.organization ? { managingOrganization: { reference: settings.organization } } : {}),
    extension: [
      { url: ENDPOINT_EXTENSION.tokenUrl, valueUrl: settings.tokenUrl },
      { url: ENDPOINT_EXTENSION.clientId, valueString: settings.clientId },
      ...optional(ENDPOINT_EXTENSION.scope, settings.scope ? { valueString: settings.scope } : undefined),
      ...optional(ENDPOINT_EXTENSION.keyId, settings.keyId ? { valueString: settings.keyId } : undefined),
      ...optional(ENDPOINT_EXTENSION.adapter, settings.adapter ? { valueCode: settings.adapter } : undefined),
      ...optional(ENDPOINT_EXTENSION.timeoutMs, settings.timeoutMs ? { valueInteger: settings.timeoutMs } : undefined),
      ...(settings.capabilities ?? []).map((code) => ({ url: ENDPOINT_EXTENSION.capability, valueCode: code })),
      ...optional(ENDPOINT_EXTENSION.retryPolicy, settings.retryPolicy ? { valueString: JSON.stringify(settings.retryPolicy) } : undefined),
    ],
  };
}

export async function readPartner(q: Queryable, endpointId: string): Promise<Partner> {
  const stored = await readCurrent(q, 'Endpoint', endpointId);
  if (!stored || stored.deleted) throw new DirectoryError(`Endpoint/${endpointId} is not in the partner directory`);
  return partnerOf(JSON.parse(stored.json) as Endpoint);
}

export function partnerOf(endpoint: Endpoint & { id?: string }): Partner {
  const where = `Endpoint/${endpoint.id}`;
  if (endpoint.status !== 'active') throw new DirectoryError(`${where} is ${endpoint.status}, not active`);
  const all = (url: string): Extension[] => (endpoint.extension ?? []).filter((e) => e.url === url);
  const text = (url: string, required: boolean): string | undefined => {
    const value = all(url)[0];
    const found = value?.valueString ?? value?.valueUrl ?? value?.valueUri ?? value?.valueCode;
    if (required && !found) throw new DirectoryError(`${where} lacks the extension ${url}`);
    return found;
  };
  const capabilities = all(ENDPOINT_EXTENSION.capability).map((e) => e.valueCode);
  if (!capabilities.every((c): c is RequestType => c === 'single-member' || c === 'bulk')) throw new DirectoryError(`${where}: capabilities are single-member or bulk`);
  const retryJson = text(ENDPOINT_EXTENSION.retryPolicy, false);
  let retry = DEFAULT_RETRY_POLICY;
  if (retryJson !== undefined) {
    try {
      retry = parseRetryPolicy(JSON.parse(retryJson));
    } catch (error) {
      throw new DirectoryError(`${where}: retry policy: ${(error as Error).message}`);
    }
  }
  return {
    endpoint: {
      id: endpoint.id as string,
      baseUrl: endpoint.address.replace(/\/+$/, ''),
      tokenUrl: text(ENDPOINT_EXTENSION.tokenUrl, true) as string,
      clientId: text(ENDPOINT_EXTENSION.clientId, true) as string,
      scope: text(ENDPOINT_EXTENSION.scope, false) ?? 'system/*.rs',
      keyId: text(ENDPOINT_EXTENSION.keyId, false) ?? 'default',
      adapter: text(ENDPOINT_EXTENSION.adapter, false) ?? 'standard',
      timeoutMs: all(ENDPOINT_EXTENSION.timeoutMs)[0]?.valueInteger ?? 30_000,
    },
    organization: endpoint.managingOrganization?.reference,
    capabilities: capabilities.length ? capabilities : ['single-member'],
    retry,
  };
}
