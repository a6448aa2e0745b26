import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Bundle, Encounter, OperationOutcome, Patient, Resource } from '@medplum/fhirtypes';
import { Client, type FhirResource } from 'fhir-kit-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { createValidator } from '../../src/fhir/profiles.ts';
import { createLogger } from '../../src/logger.ts';
import { migratedDatabase, tokenMinter } from '../support/baton.ts';

/*
 * fhir-kit-client, a FHIR client library written elsewhere, against a Baton listening on a real
 * port: what a partner's tooling would do (issue 2, "Tests and figures").
 */

const FIXTURES = new URL('../../../shared/fixtures/davinci/inferno/', import.meta.url);
const fixture = <T>(name: string): T => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;

/** fhir-kit-client types resources as loose records; the tests view them as @medplum/fhirtypes. */
const loose = (resource: Resource): FhirResource => resource as unknown as FhirResource;
const typed = <T extends Resource>(resource: FhirResource | undefined): T => resource as unknown as T;

interface ListeningBaton {
  baseUrl: string;
  token: string;
  close(): Promise<void>;
}

/**
 * Baton on 127.0.0.1 at a port the OS picks. The app is built once the port is known, so its
 * base URL (Location headers, fullUrls, paging links) is the address the client talks to.
 */
async function listenBaton(): Promise<ListeningBaton> {
  const handler: { app?: ReturnType<typeof createApp> } = {};
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: (request) => (handler.app as ReturnType<typeof createApp>).fetch(request), port: 0, hostname: '127.0.0.1' }, () => resolve(s as Server));
  });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
  const { db, drop } = await migratedDatabase();
  const logger = createLogger('silent');
  const validator = await createValidator([], logger);
  handler.app = createApp({ config: { baseUrl, maxBodyBytes: 16 * 1024 * 1024 }, db, logger, validator });
  return {
    baseUrl,
    token: await tokenMinter(db, baseUrl)(),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await db.close();
      await drop();
    },
  };
}

/** The HTTP status and body of a request the client rejected. */
async function rejection(promise: Promise<unknown>): Promise<{ status: number; data: OperationOutcome }> {
  const error = (await promise.then(
    () => undefined,
    (e: unknown) => e,
  )) as { response?: { status: number; data: OperationOutcome } } | undefined;
  if (!error?.response) throw new Error('expected the server to answer with an HTTP error');
  return error.response;
}

describe.skipIf(!existsSync(FIXTURES))('fhir-kit-client against a listening Baton', () => {
  const memberPatient = fixture<Patient>('spec-member-patient.json');
  const encounter = fixture<Encounter>('spec-encounter.json');
  const memberSystem = memberPatient.identifier?.[0]?.system as string;
  let baton: ListeningBaton;
  let client: Client;

  /** The Inferno member Patient without its id, under a member id of its own. */
  const newMember = (): { patient: Patient; memberId: string } => {
    const memberId = `${memberPatient.identifier?.[0]?.value}-${randomUUID().slice(0, 8)}`;
    const { id: _id, ...rest } = structuredClone(memberPatient);
    return { patient: { ...rest, identifier: [{ ...rest.identifier?.[0], value: memberId }] }, memberId };
  };

  beforeAll(async () => {
    baton = await listenBaton();
    client = new Client({ baseUrl: baton.baseUrl, bearerToken: baton.token });
  });
  afterAll(async () => {
    await baton?.close();
  });

  it('reads the CapabilityStatement of a FHIR 4.0.1 JSON server', async () => {
    const statement = await client.capabilityStatement();
    expect(statement.resourceType).toBe('CapabilityStatement');
    expect(statement.fhirVersion).toBe('4.0.1');
  });

  it('creates a Patient and reads it back at the Location the server gave', async () => {
    const { patient, memberId } = newMember();
    const created = typed<Patient>(await client.create({ resourceType: 'Patient', body: loose(patient) }));
    expect(created.id).toMatch(/^[A-Za-z0-9\-.]{1,64}$/);
    expect(created.meta?.versionId).toBe('1');
    const location = Client.httpFor(loose(created)).response?.headers.get('location');
    expect(location).toBe(`${baton.baseUrl}/Patient/${created.id}/_history/1`);

    const read = typed<Patient>(await client.request(location as string));
    expect(read.identifier?.[0]?.value).toBe(memberId);
    const again = typed<Patient>(await client.read({ resourceType: 'Patient', id: created.id as string }));
    expect(again).toEqual(read);
  });

  it('updates a Patient into version 2 and still vreads version 1', async () => {
    const created = typed<Patient>(await client.create({ resourceType: 'Patient', body: loose(newMember().patient) }));
    const id = created.id as string;
    const updated = typed<Patient>(await client.update({ resourceType: 'Patient', id, body: loose({ ...created, gender: 'unknown' }) }));
    expect(updated.meta?.versionId).toBe('2');
    expect(typed<Patient>(await client.read({ resourceType: 'Patient', id })).gender).toBe('unknown');
    expect(typed<Patient>(await client.vread({ resourceType: 'Patient', id, version: '1' })).gender).toBe(memberPatient.gender);
  });

  it('answers a read of an unknown id with 404 and an OperationOutcome', async () => {
    const { status, data } = await rejection(client.read({ resourceType: 'Patient', id: 'no-such-patient' }));
    expect(status).toBe(404);
    expect(data.resourceType).toBe('OperationOutcome');
  });

  it('answers reads of a deleted Patient with 410 Gone', async () => {
    const created = typed<Patient>(await client.create({ resourceType: 'Patient', body: loose(newMember().patient) }));
    await client.delete({ resourceType: 'Patient', id: created.id as string });
    const { status, data } = await rejection(client.read({ resourceType: 'Patient', id: created.id as string }));
    expect(status).toBe(410);
    expect(data.resourceType).toBe('OperationOutcome');
  });

  it('lists instance history newest first and pages through it with the next link', async () => {
    const created = typed<Patient>(await client.create({ resourceType: 'Patient', body: loose(newMember().patient) }));
    const id = created.id as string;
    await client.update({ resourceType: 'Patient', id, body: loose({ ...created, active: true }) });

    const history = typed<Bundle<Patient>>(await client.history({ resourceType: 'Patient', id }));
    expect(history.type).toBe('history');
    expect(history.entry?.map((e) => [e.request?.method, e.resource?.meta?.versionId])).toEqual([
      ['PUT', '2'],
      ['POST', '1'],
    ]);

    const first = typed<Bundle<Patient>>(await client.request(`Patient/${id}/_history?_count=1`));
    expect(first.entry?.map((e) => e.resource?.meta?.versionId)).toEqual(['2']);
    const second = typed<Bundle<Patient>>(await client.nextPage({ bundle: loose(first) as Parameters<Client['nextPage']>[0]['bundle'] }));
    expect(second.entry?.map((e) => e.resource?.meta?.versionId)).toEqual(['1']);
  });

  it('finds a Patient by identifier with GET and with POST _search', async () => {
    const { patient, memberId } = newMember();
    const created = typed<Patient>(await client.create({ resourceType: 'Patient', body: loose(patient) }));
    await client.create({ resourceType: 'Patient', body: loose(newMember().patient) });

    for (const postSearch of [false, true]) {
      const found = typed<Bundle<Patient>>(await client.search({
        resourceType: 'Patient',
        searchParams: { identifier: `${memberSystem}|${memberId}` },
        options: { postSearch },
      }));
      expect(found.type).toBe('searchset');
      const matches = found.entry?.filter((e) => e.search?.mode === 'match') ?? [];
      expect(matches.map((e) => e.resource?.id)).toEqual([created.id]);
      expect(matches[0].fullUrl).toBe(`${baton.baseUrl}/Patient/${created.id}`);
    }
    const none = typed<Bundle>(await client.search({ resourceType: 'Patient', searchParams: { identifier: `${memberSystem}|no-such-member` } }));
    expect(none.entry ?? []).toEqual([]);
  });

  it('commits a transaction and rewrites its urn:uuid references to the new ids', async () => {
    const { patient, memberId } = newMember();
    const patientUrn = `urn:uuid:${randomUUID()}`;
    const { id: _id, meta: _meta, text: _text, ...visit } = encounter;
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: patientUrn, resource: patient, request: { method: 'POST', url: 'Patient' } },
        { fullUrl: `urn:uuid:${randomUUID()}`, resource: { ...visit, subject: { reference: patientUrn } }, request: { method: 'POST', url: 'Encounter' } },
      ],
    };
    const response = typed<Bundle>(await client.transaction({ body: loose(bundle) }));
    expect(response.type).toBe('transaction-response');
    expect(response.entry?.map((e) => e.response?.status.slice(0, 3))).toEqual(['201', '201']);
    const [patientId, encounterId] = (response.entry ?? []).map((e) => /^(?:.*\/)?(?:Patient|Encounter)\/([^/]+)\/_history\/1$/.exec(e.response?.location ?? '')?.[1]);
    expect(patientId).toBeDefined();
    expect(encounterId).toBeDefined();

    const stored = typed<Encounter>(await client.read({ resourceType: 'Encounter', id: encounterId as string }));
    expect(stored.subject?.reference).toBe(`Patient/${patientId}`);
    const found = typed<Bundle<Patient>>(await client.search({ resourceType: 'Patient', searchParams: { identifier: `${memberSystem}|${memberId}` } }));
    expect(found.entry?.map((e) => e.resource?.id)).toEqual([patientId]);
  });

  it('rolls a transaction back whole when one entry is invalid', async () => {
    const { patient, memberId } = newMember();
    // Encounter.status is 1..1: without it the second entry is not valid FHIR.
    const { id: _id, status: _status, ...statusless } = encounter;
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: `urn:uuid:${randomUUID()}`, resource: patient, request: { method: 'POST', url: 'Patient' } },
        { fullUrl: `urn:uuid:${randomUUID()}`, resource: statusless as Encounter, request: { method: 'POST', url: 'Encounter' } },
      ],
    };
    const { status, data } = await rejection(client.transaction({ body: loose(bundle) }));
    expect([400, 422]).toContain(status);
    expect(data.resourceType).toBe('OperationOutcome');
    const found = typed<Bundle>(await client.search({ resourceType: 'Patient', searchParams: { identifier: `${memberSystem}|${memberId}` } }));
    expect(found.entry ?? []).toEqual([]);
  });
});
