import type { Resource } from '@medplum/fhirtypes';
import { createLogger } from '../../../src/logger.ts';
import { PartnerBreakers } from '../../../src/workflow/partner/breakers.ts';
import { createPartnerClient } from '../../../src/workflow/partner/client.ts';
import { OutboundClientKeys } from '../../../src/workflow/partner/client-keys.ts';
import { PartnerTokens } from '../../../src/workflow/partner/tokens.ts';
import { type PartnerClient, type PartnerEndpoint, PartnerError } from '../../../src/workflow/partner/types.ts';
import { type TestBaton, startBaton } from '../../support/baton.ts';
import { type FakePartner, type FakePartnerOptions, startFakePartner } from '../../support/fake-partner.ts';

export const KEY_ID = 'baton-test-key';
export const CLIENT_ID = 'baton-at-partner';

/** A Baton database holding the outbound client key, and a fake partner that registered Baton's client with that key. */
export interface PartnerSetup {
  baton: TestBaton;
  keys: OutboundClientKeys;
  partner: FakePartner;
  /** A client of the partner with fresh token cache and breakers unless given. */
  client(endpoint?: Partial<PartnerEndpoint>, deps?: { breakers?: PartnerBreakers; tokens?: PartnerTokens; fetch?: typeof fetch }): PartnerClient;
  /** Another fake partner registered with the same key (for options the first one lacks). */
  startPartner(options?: FakePartnerOptions): Promise<FakePartner>;
  close(): Promise<void>;
}

export async function setUpPartner(options: FakePartnerOptions = {}): Promise<PartnerSetup> {
  const baton = await startBaton();
  const keys = new OutboundClientKeys(baton.db);
  await keys.get(KEY_ID);
  const jwks = await keys.jwks();
  const partners: FakePartner[] = [];
  const startPartner = async (more: FakePartnerOptions = {}) => {
    const started = await startFakePartner({ client: { clientId: CLIENT_ID, jwks }, ...more });
    partners.push(started);
    return started;
  };
  const partner = await startPartner(options);
  const logger = createLogger('silent');
  return {
    baton,
    keys,
    partner,
    startPartner,
    client: (endpoint = {}, deps = {}) =>
      createPartnerClient(
        { id: 'partner-1', baseUrl: partner.baseUrl, tokenUrl: partner.tokenUrl, clientId: CLIENT_ID, scope: 'system/*.rs', keyId: KEY_ID, adapter: 'standard', timeoutMs: 2000, ...endpoint },
        { keys, logger, breakers: deps.breakers ?? new PartnerBreakers(), tokens: deps.tokens ?? new PartnerTokens(), ...(deps.fetch ? { fetch: deps.fetch } : {}) },
      ),
    close: async () => {
      for (const started of partners) await started.close();
      await baton.close();
    },
  };
}

/** The PartnerError a promise rejects with (fails the test when it resolves or throws anything else). */
export async function partnerError(promise: Promise<unknown>): Promise<PartnerError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof PartnerError) return error;
    throw new Error(`expected a PartnerError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a PartnerError, but the call succeeded');
}

export async function collect(resources: AsyncIterable<Resource>): Promise<Resource[]> {
  const all: Resource[] = [];
  for await (const resource of resources) all.push(resource);
  return all;
}

/** A $member-match request for a person, as the workflow would send it (with a Consent). */
export function matchParameters(person: { family: string; given: string; birthDate: string; card?: string }, consent = true) {
  return {
    resourceType: 'Parameters' as const,
    parameter: [
      { name: 'MemberPatient', resource: { resourceType: 'Patient' as const, id: 'm', name: [{ family: person.family, given: [person.given] }], birthDate: person.birthDate, gender: 'female' as const } },
      {
        name: 'CoverageToMatch',
        resource: { resourceType: 'Coverage' as const, id: 'c', status: 'active' as const, ...(person.card ? { identifier: [{ value: person.card }] } : {}), beneficiary: { reference: 'Patient/m' }, payor: [{ display: 'Old Plan' }] },
      },
      ...(consent ? [{ name: 'Consent', resource: { resourceType: 'Consent' as const, id: 'k', status: 'active' as const, scope: {}, category: [], patient: { reference: 'Patient/m' } } }] : []),
    ],
  };
}

export const OKAFOR = { family: 'Okafor', given: 'Margaret', birthDate: '1957-04-09', card: 'W123456789-01' };
export const TWIN = { family: 'Lindqvist', given: 'Emma', birthDate: '2010-06-15' };
export const NOBODY = { family: 'Nobody', given: 'Quentin', birthDate: '1990-01-01', card: 'Z0000001' };
