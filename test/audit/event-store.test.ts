import type { AuditEvent } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrayLiteral } from '../../src/audit/event-index.ts';
import { eventIndexEntry, predicateKeys } from '../../src/audit/event-keys.ts';
import { verifyAuditTrail } from '../../src/audit/verify.ts';
import { BASE_URL, body, startBaton, type TestBaton } from '../support/baton.ts';
import { auditEvent, recordEvents, tamper } from './sealed-trail.ts';

/**
 * AuditEvent read, history and search answered from the sealed trail and its index
 * (src/audit/event-store.ts), with the meaning FHIR search gives each parameter elsewhere.
 */

let baton: TestBaton;
let auditor: string;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 10, 12);

type Shape = (e: AuditEvent & { id: string }) => void;
const event = (id: string, patient: string, dayOffset: number, shape: Shape = () => undefined) => {
  const e = auditEvent(patient, id);
  e.recorded = new Date(T0 + dayOffset * DAY).toISOString();
  shape(e);
  return e;
};
const by = (client: string): Shape => (e) => {
  (e.agent ?? [])[0].who = { identifier: { system: 'http://baton.test/clients', value: client } };
};

const EVENTS = [
  event('es-1', 'es-member-a', 0, by('es-client-1')),
  event('es-2', 'es-member-a', 1, (e) => {
    by('es-client-1')(e);
    e.outcome = '4';
    e.action = 'C';
  }),
  event('es-3', 'es-member-b', 2, (e) => {
    by('es-client-2')(e);
    e.outcome = '8';
    (e.agent ?? [])[0].network = { address: '203.0.113.9', type: '2' };
    (e.agent ?? [])[0].policy = ['urn:ietf:params:oauth:jti:es-token-1'];
  }),
  // References as absolute URLs: under our base (one of ours) and a partner's (not ours).
  event('es-4', 'unused', 3, (e) => {
    (e.entity ?? [])[0].what = { reference: `${BASE_URL}/Patient/es-member-a` };
    delete (e.agent ?? [])[0].network;
  }),
  event('es-5', 'unused', 4, (e) => {
    (e.entity ?? [])[0].what = { reference: 'https://partner.example/fhir/Patient/es-member-a' };
  }),
];

const search = async (query: string) => baton.request(`/fhir/AuditEvent?${query}`, { token: auditor });
const ids = async (query: string): Promise<string[]> => {
  const response = await search(query);
  expect(response.status, query).toBe(200);
  return ((await body(response)).entry ?? []).map((e: { resource: { id: string } }) => e.resource.id);
};

beforeAll(async () => {
  baton = await startBaton();
  auditor = await baton.token({ clientId: 'es-auditor', scopes: ['system/AuditEvent.rs'] });
  await recordEvents(baton.db, EVENTS);
  await baton.sealAudit();
});
afterAll(() => baton?.close());

describe('AuditEvent search', () => {
  it('finds by token, with or without a system, and by system alone', async () => {
    expect(await ids('patient=Patient/es-member-a&outcome=4')).toEqual(['es-2']);
    expect(await ids('_id=es-1,es-2,es-3&outcome=4,8&_sort=date')).toEqual(['es-2', 'es-3']);
    expect(await ids('_id=es-1&subtype=http://hl7.org/fhir/restful-interaction|read')).toEqual(['es-1']);
    expect(await ids('_id=es-1&subtype=http://hl7.org/fhir/restful-interaction|')).toEqual(['es-1']);
    expect(await ids('_id=es-1&subtype=http://other.example|read')).toEqual([]);
    expect(await ids('_id=es-1&subtype=|read')).toEqual([]);
    expect(await ids('agent:identifier=http://baton.test/clients|es-client-1&_sort=-date')).toEqual(['es-2', 'es-1']);
    expect(await ids('patient=Patient/es-member-a&action:not=R')).toEqual(['es-2']);
  });

  it('tells our references from a partner\'s: relative or under our base are ours', async () => {
    expect(await ids('patient=Patient/es-member-a&_sort=date')).toEqual(['es-1', 'es-2', 'es-4']);
    expect(await ids('patient=es-member-a&_sort=date')).toEqual(['es-1', 'es-2', 'es-4']);
    expect(await ids(`entity=${BASE_URL}/Patient/es-member-a&_sort=date`)).toEqual(['es-1', 'es-2', 'es-4']);
    expect(await ids('entity=https://partner.example/fhir/Patient/es-member-a')).toEqual(['es-5']);
    expect(await ids('entity=Practitioner/es-member-a')).toEqual([]);
  });

  it('matches strings by prefix, :exact and :contains, and uris by value', async () => {
    expect(await ids('address=203.0&_id=es-1,es-3')).toEqual(['es-3']);
    expect(await ids('address:exact=203.0.113.9')).toEqual(['es-3']);
    expect(await ids('address:exact=203.0')).toEqual([]);
    expect(await ids('address:contains=0.113&_id=es-1,es-3')).toEqual(['es-3']);
    expect(await ids('policy=urn:ietf:params:oauth:jti:es-token-1')).toEqual(['es-3']);
  });

  it('compares the recorded instant with every prefix, and sorts by it', async () => {
    const day = (offset: number) => new Date(T0 + offset * DAY).toISOString().slice(0, 10);
    expect(await ids(`date=ge${day(1)}&date=lt${day(3)}&_id=es-1,es-2,es-3,es-4&_sort=date`)).toEqual(['es-2', 'es-3']);
    expect(await ids(`date=${day(2)}&_id=es-1,es-2,es-3`)).toEqual(['es-3']);
    expect(await ids(`date=le${day(1)}&_id=es-1,es-2,es-3&_sort=-date`)).toEqual(['es-2', 'es-1']);
    expect(await ids(`date=gt${day(3)}&_id=es-4,es-5`)).toEqual(['es-5']);
    expect(await ids(`_lastUpdated=lt${day(1)}&_id=es-1,es-2`)).toEqual(['es-1']);
    expect(await ids('_id=es-1,es-2,es-3&_sort=-_lastUpdated')).toEqual(['es-3', 'es-2', 'es-1']);
  });

  it('combines keys with a few days or with a wide span of dates alike', async () => {
    const day = (offset: number) => new Date(T0 + offset * DAY).toISOString().slice(0, 10);
    const client = `agent:identifier=${encodeURIComponent('http://baton.test/clients|es-client-1')}`;
    // A day: the dates are met in their index with the keys; a year, or no end: the keys first.
    expect(await ids(`${client}&outcome=4,8,12&date=ge${day(1)}&date=lt${day(2)}&_sort=-date`)).toEqual(['es-2']);
    expect(await ids(`${client}&date=ge${day(0)}&date=lt${day(1)}`)).toEqual(['es-1']);
    expect(await ids(`${client}&date=ge${day(-200)}&date=lt${day(165)}&_sort=-date`)).toEqual(['es-2', 'es-1']);
    expect(await ids(`${client}&date=ge${day(1)}&_sort=-date`)).toEqual(['es-2']);
    expect(await ids(`${client}&date=ge${day(1)},lt${day(0)}&_sort=date`)).toEqual(['es-2']);
  });

  it('answers :missing for a parameter and for a reference narrowed to a type', async () => {
    expect(await ids('_id=es-1,es-4&address:missing=true')).toEqual(['es-4']);
    expect(await ids('_id=es-1,es-4&address:missing=false')).toEqual(['es-1']);
    expect(await ids('_id=es-1,es-5&patient:missing=false&_sort=date')).toEqual(['es-1', 'es-5']);
  });

  it('counts, pages and estimates', async () => {
    const count = await body(await search('patient=Patient/es-member-a&_summary=count'));
    expect(count).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 3 });
    expect(count.entry).toBeUndefined();
    const first = await body(await search('patient=Patient/es-member-a&_sort=date&_count=2&_total=accurate'));
    expect(first.total).toBe(3);
    expect(first.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual(['es-1', 'es-2']);
    const next = new URL(first.link.find((l: { relation: string }) => l.relation === 'next').url);
    expect(await ids(next.search.slice(1))).toEqual(['es-4']);
    expect((await body(await search('patient=Patient/es-member-a&_total=estimate'))).total).toBe(3);
  });

  it('serves each event as version 1, last updated when recorded, with fullUrl', async () => {
    const bundle = await body(await search('_id=es-3'));
    expect(bundle.entry[0].fullUrl).toBe(`${BASE_URL}/AuditEvent/es-3`);
    expect(bundle.entry[0].resource.meta).toMatchObject({ versionId: '1', lastUpdated: EVENTS[2].recorded });
  });

  it.each([
    ['patient.name=x', /Chained search parameters/],
    ['_has:Patient:link:name=x', /_has/],
    ['type:text=rest', /:text modifier/],
    ['policy:below=urn:ietf', /:below modifier/],
    ['_sort=action', /sort by date, _lastUpdated or _id/],
    ['_include=AuditEvent:patient', /_include and _revinclude are not supported on AuditEvent/],
  ])('refuses %s with 400 and says why', async (query, reason) => {
    const response = await search(query);
    expect(response.status).toBe(400);
    const outcome = await body(response);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].diagnostics).toMatch(reason);
  });

  it('refuses to reverse-include AuditEvents into another type\'s search', async () => {
    const token = await baton.token({ scopes: ['system/Patient.rs', 'system/AuditEvent.rs'] });
    const response = await baton.request('/fhir/Patient?_revinclude=AuditEvent:patient', { token });
    expect(response.status).toBe(400);
    expect((await body(response)).issue[0].diagnostics).toMatch(/AuditEvent cannot be reverse-included/);
  });
});

describe('AuditEvent read and history', () => {
  it('reads and vreads version 1, and nothing else', async () => {
    const read = await baton.request('/fhir/AuditEvent/es-1', { token: auditor });
    expect(read.status).toBe(200);
    expect(read.headers.get('etag')).toBe('W/"1"');
    expect((await body(read)).outcome).toBe('0');
    expect((await baton.request('/fhir/AuditEvent/es-1/_history/1', { token: auditor })).status).toBe(200);
    expect((await baton.request('/fhir/AuditEvent/es-1/_history/2', { token: auditor })).status).toBe(404);
    expect((await baton.request('/fhir/AuditEvent/es-none', { token: auditor })).status).toBe(404);
  });

  it('has an instance history of one version and a type history newest first, paged', async () => {
    const instance = await body(await baton.request('/fhir/AuditEvent/es-2/_history', { token: auditor }));
    expect(instance.entry).toHaveLength(1);
    expect(instance.entry[0]).toMatchObject({ request: { method: 'POST' }, response: { status: '201 Created', etag: 'W/"1"' } });
    const page = await body(await baton.request('/fhir/AuditEvent/_history?_count=2', { token: auditor }));
    expect(page.entry).toHaveLength(2);
    const next = page.link.find((l: { relation: string }) => l.relation === 'next').url as string;
    const second = await body(await baton.request(new URL(next).pathname.replace(/^\//, '/') + new URL(next).search, { token: auditor }));
    const first = page.entry.map((e: { resource: { id: string } }) => e.resource.id);
    expect(second.entry.map((e: { resource: { id: string } }) => e.resource.id).some((id: string) => first.includes(id))).toBe(false);
  });

  it('is kept from callers without an AuditEvent scope', async () => {
    const other = await baton.token({ scopes: ['system/*.rs'] });
    expect((await baton.request('/fhir/AuditEvent/es-1', { token: other })).status).toBe(403);
    expect((await baton.request('/fhir/AuditEvent/_history', { token: other })).status).toBe(403);
  });
});

describe('the CapabilityStatement', () => {
  it('claims no _include on AuditEvent and no AuditEvent reverse includes', async () => {
    const statement = await body(await baton.request('/fhir/metadata'));
    const resources = statement.rest[0].resource as { type: string; searchInclude?: string[]; searchRevInclude?: string[]; searchParam?: { name: string }[] }[];
    const auditEvent = resources.find((r) => r.type === 'AuditEvent');
    expect(auditEvent?.searchInclude).toBeUndefined();
    expect(auditEvent?.searchParam?.map((p) => p.name)).toEqual(expect.arrayContaining(['date', 'patient', 'agent', 'entity', 'policy', 'outcome', 'address']));
    expect(resources.find((r) => r.type === 'Patient')?.searchRevInclude?.filter((r) => r.startsWith('AuditEvent:'))).toEqual([]);
  });
});

describe('search keys', () => {
  const e = auditEvent('k-member');
  const keys = new Set(eventIndexEntry(e).keys);
  const holds = (found: string[] | undefined) => (found ?? []).some((k) => keys.has(k));

  it('answer the equality predicates of the parameters they were extracted for', () => {
    expect(holds(predicateKeys({ table: 'token', codes: ['outcome'] }, { type: 'token', system: undefined, code: '0' }, BASE_URL))).toBe(true);
    expect(holds(predicateKeys({ table: 'token', codes: ['outcome'] }, { type: 'token', system: undefined, code: '4' }, BASE_URL))).toBe(false);
    expect(holds(predicateKeys({ table: 'token', codes: ['action'] }, { type: 'token', system: undefined, code: '0' }, BASE_URL))).toBe(false);
    expect(holds(predicateKeys({ table: 'reference', codes: ['entity'], targetType: 'Patient' }, { type: 'reference', id: 'k-member' }, BASE_URL))).toBe(true);
    expect(holds(predicateKeys({ table: 'reference', codes: ['entity'] }, { type: 'reference', targetType: 'Group', id: 'k-member' }, BASE_URL))).toBe(false);
  });

  it('tell a reference\'s base from its target, versioned or not', () => {
    const referencing = (reference: string) => {
      const e = auditEvent('k-member');
      (e.entity ?? [])[0].what = { reference };
      return new Set(eventIndexEntry(e).keys);
    };
    const ours = (found: Set<string>) => predicateKeys({ table: 'reference', codes: ['entity'], targetType: 'Patient' }, { type: 'reference', id: 'k-1.a' }, BASE_URL)?.some((k) => found.has(k));
    expect(ours(referencing('Patient/k-1.a'))).toBe(true);
    expect(ours(referencing('Patient/k-1.a/_history/3'))).toBe(true);
    expect(ours(referencing(`${BASE_URL}/Patient/k-1.a/_history/3`))).toBe(true);
    expect(ours(referencing('https://partner.example/fhir/Patient/k-1.a'))).toBe(false);
    // Not a base before the target: the id must follow a whole path segment.
    expect(ours(referencing('Patient/xk-1.a'))).toBe(false);
    expect(ours(referencing('https://x.example/fhir/XPatient/k-1.a'))).toBe(false);
    expect(ours(referencing('urn:uuid:6a3c5f0e-1d2b-4c3a-9e8f-7a6b5c4d3e2f'))).toBe(false);
  });

  it('leave to other means what equality cannot answer', () => {
    expect(predicateKeys({ table: 'token', codes: ['type'] }, { type: 'token-text', text: 'rest' }, BASE_URL)).toBeUndefined();
    expect(predicateKeys({ table: 'uri', codes: ['policy'] }, { type: 'uri', mode: 'below', value: 'urn:' }, BASE_URL)).toBeUndefined();
  });
});

describe('a trail sealed before the index existed', () => {
  it('is indexed at the next sealing pass, and searchable again', async () => {
    // As migration 0025 leaves an older trail: chained, not indexed.
    const before = await ids('_sort=date&_count=1000');
    await tamper(baton.db, sql`DELETE FROM audit_index_strings`, sql`DELETE FROM audit_index`);
    expect(await ids('patient=Patient/es-member-a&_sort=date')).toEqual([]);
    await baton.sealAudit();
    expect(await ids('patient=Patient/es-member-a&_sort=date')).toEqual(['es-1', 'es-2', 'es-4']);
    expect((await ids('_sort=date&_count=1000')).slice(0, before.length)).toEqual(before);
    expect(await verifyAuditTrail(baton.db)).toMatchObject({ verified: true });
  });
});

describe('index columns as array literals (the bulk load path)', () => {
  it('reach the database as the values themselves, quotes, backslashes and separators included', async () => {
    const values = ['plain', 'a "quoted" word', 'back\\slash\\', '', 'NULL', '{braces},commas', 'record\u001eseparator'];
    const [row] = await baton.db.execute<{ values: string[] }>(sql`SELECT ${sql.param(arrayLiteral(values))}::text[] AS values`);
    expect(row.values).toEqual(values);
  });
});

describe('the keys index', () => {
  it('keeps the pending list every search scans short', async () => {
    const [row] = await baton.db.execute<{ options: string[] }>(sql`SELECT reloptions AS options FROM pg_class WHERE relname = 'audit_index_keys_idx'`);
    expect(row.options).toEqual(['gin_pending_list_limit=512']);
  });
});
