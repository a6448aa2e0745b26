import type { Group, Parameters, ParametersParameter } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/auth/clients.ts';
import { BULK_MEMBER_MATCH } from '../../src/operations/bulk-member-match.ts';
import { BATCH_SYSTEM, RESULT_SYSTEM } from '../../src/operations/bulk-member-match/groups.ts';
import { MEMBER_MATCH } from '../../src/operations/member-match.ts';
import { body, type TestBaton } from '../support/baton.ts';
import { download, drain, get, type Manifest, startExportBaton, worker } from './export-support.ts';
import { consentFor, matchRequest, NEW_PAYER_NPI, putMember } from './member-match-support.ts';

/**
 * Issue 6, PDex $bulk-member-match over HTTP as a new payer calls it: three members (one
 * match, one unknown, one matched with an expired consent) sorted into the three result
 * Groups, delivered through the export manifest (2.2) or as Parameters (2.1), the grant of the
 * match, Group searches, isolation from other partners, and the 400s of a malformed request.
 */

const MATCH_EXT = 'http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/base-ext-match-parameters';
const COVERAGE_EXT = 'http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/base-ext-match-coverage';
const OTHER_NPI = { system: 'http://hl7.org/fhir/sid/us-npi', value: '1111111112' };
const OKAFOR = { family: 'Okafor', given: ['Margaret'], birthDate: '1979-04-09', gender: 'female' as const, cardId: 'W123456789-01' };
const BRANDT = { family: 'Brandt', given: ['Oskar'], birthDate: '1961-03-02', gender: 'male' as const, cardId: 'B4440001' };
const NOBODY = { family: 'Nemo', given: ['Nadia'], birthDate: '1990-02-02', gender: 'female' as const, cardId: 'Z0000000' };
const EXPIRED = { period: { start: '2020-01-01', end: '2021-01-01' } };

let baton: Awaited<ReturnType<typeof startExportBaton>>;
let partner: Partner;
let other: Partner;

interface Partner {
  clientId: string;
  token: () => Promise<string>;
}

async function partnerOf(b: TestBaton, name: string, npi: { system: string; value: string }): Promise<Partner> {
  const scopes = ['system/*.rs', MEMBER_MATCH, BULK_MEMBER_MATCH];
  const jwks = { keys: [{ kty: 'EC', crv: 'P-384', x: 'x', y: 'y', kid: 'k' }] };
  const { client_id: clientId } = await createClient(b.db, { name, kind: 'partner', organizationIdentifiers: [npi], jwks, jwksUri: undefined, scopes });
  return { clientId, token: () => b.token({ clientId, kind: 'partner', scopes, organization: [npi] }) };
}

const memberBundle = (request: Parameters): ParametersParameter => ({ name: 'MemberBundle', part: request.parameter });
const threeMembers = (): Parameters => ({
  resourceType: 'Parameters',
  parameter: [
    memberBundle(matchRequest(OKAFOR, { coverageToLink: true })),
    memberBundle(matchRequest(NOBODY)),
    memberBundle(matchRequest(BRANDT, { consent: consentFor('Patient/req-1', EXPIRED) })),
  ],
});
const bulk = async (json: unknown, options: { token?: string; async?: boolean } = {}) =>
  baton.request('/fhir/Group/$bulk-member-match', {
    method: 'POST',
    json,
    headers: options.async === false ? {} : { prefer: 'respond-async' },
    token: options.token ?? (await partner.token()),
  });
const codeOf = (group: Group) => group.code?.coding?.[0]?.code;
const search = async (query: string, token: string) => ((await body(await baton.request(`/fhir/Group?${query}`, { token }))).entry ?? []).map((e: any) => e.resource as Group);

beforeAll(async () => {
  baton = await startExportBaton();
  partner = await partnerOf(baton, 'New Health Plan', NEW_PAYER_NPI);
  other = await partnerOf(baton, 'Third Health Plan', OTHER_NPI);
  await putMember(baton, { id: 'okafor', ...OKAFOR, memberId: 'W123456789-01', subscriberId: 'W123456789' });
  await putMember(baton, { id: 'brandt', ...BRANDT, memberId: 'B4440001', subscriberId: 'B4440001' });
});
afterAll(async () => {
  await baton?.close();
});

describe('three members: one match, one unknown, one with an expired consent (PDex 2.2, async)', () => {
  let groups: Group[];
  let batch: string;

  it('answers 202 with a status URL whose manifest lists the three Groups as Group NDJSON', async () => {
    const started = await bulk(threeMembers());
    expect(started.status, await started.clone().text()).toBe(202);
    const statusUrl = started.headers.get('content-location') as string;
    expect(statusUrl).toMatch(/^http.*\$export-status\//);
    await drain(baton);
    const status = await get(baton, statusUrl, { token: await partner.token() });
    expect(status.status, await status.clone().text()).toBe(200);
    const manifest = (await status.json()) as Manifest;
    expect(manifest.request).toMatch(/\/Group\/\$bulk-member-match$/);
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([['Group', 3]]);
    groups = await download<Group>(baton, manifest.output[0].url, { token: await partner.token() });
    expect(groups.map(codeOf).sort()).toEqual(['consentconstraint', 'match', 'nomatch']);
    batch = groups[0].identifier?.find((i) => i.system === BATCH_SYSTEM)?.value as string;
    expect(groups.every((g) => g.identifier?.some((i) => i.system === BATCH_SYSTEM && i.value === batch))).toBe(true);
  });

  it('shapes each Group as PDex does: person, actual, this payer managing, the requester as characteristic', () => {
    for (const group of groups) {
      expect(group).toMatchObject({ type: 'person', actual: true, managingEntity: { reference: 'Organization/baton-payer' } });
      expect(group.code?.coding?.[0]?.system).toBe(RESULT_SYSTEM);
      expect(group.characteristic).toEqual([{ code: group.code, valueReference: { identifier: NEW_PAYER_NPI }, exclude: false, period: { start: new Date().toISOString().slice(0, 10) } }]);
      expect(group.identifier).toContainEqual(NEW_PAYER_NPI);
    }
  });

  it('puts the matched member in the match Group by reference, with the submitted demographics contained', () => {
    const match = groups.find((g) => codeOf(g) === 'match') as Group;
    expect(match.meta?.profile).toEqual(['http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-match-group']);
    expect(match.member).toHaveLength(1);
    const entity = match.member?.[0].entity;
    expect(entity?.reference).toBe('Patient/okafor');
    const pointer = entity?.extension?.find((e) => e.url === MATCH_EXT)?.valueReference?.reference as string;
    const contained = match.contained?.find((r) => `#${r.id}` === pointer) as any;
    expect(contained).toMatchObject({ resourceType: 'Patient', name: [{ family: 'Okafor' }], birthDate: OKAFOR.birthDate });
  });

  it.each([
    ['nomatch', NOBODY.family],
    ['consentconstraint', BRANDT.family],
  ])('puts the %s member in its Group as a contained copy only, saying nothing of why', (code, family) => {
    const group = groups.find((g) => codeOf(g) === code) as Group;
    expect(group.meta?.profile).toEqual(['http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-no-match-group']);
    expect(group.member).toHaveLength(1);
    const entity = group.member?.[0].entity;
    expect(entity?.reference).toMatch(/^#/);
    expect(entity?.extension).toEqual([
      { url: MATCH_EXT, valueReference: { reference: entity?.reference } },
      { url: COVERAGE_EXT, valueReference: { reference: '#coverage-1' } },
    ]);
    expect(group.contained).toEqual([
      expect.objectContaining({ resourceType: 'Patient', id: entity?.reference?.slice(1), name: [{ family, given: expect.any(Array) }] }),
      expect.objectContaining({ resourceType: 'Coverage', id: 'coverage-1', beneficiary: { reference: entity?.reference } }),
    ]);
    expect(JSON.stringify(group)).not.toMatch(/expired|consent-[a-z]|"Consent"|provision/);
  });

  it('points each member at the CoverageToMatch it was submitted with, contained, its beneficiary the contained Patient (base-ext-match-coverage)', () => {
    const cards = new Map([
      ['Okafor', OKAFOR.cardId],
      ['Nemo', NOBODY.cardId],
      ['Brandt', BRANDT.cardId],
    ]);
    for (const group of groups) {
      for (const { entity } of group.member ?? []) {
        const pointer = (url: string) => entity.extension?.find((e) => e.url === url)?.valueReference?.reference as string;
        const patient = group.contained?.find((r) => `#${r.id}` === pointer(MATCH_EXT)) as any;
        const coverage = group.contained?.find((r) => `#${r.id}` === pointer(COVERAGE_EXT)) as any;
        expect(coverage).toMatchObject({ resourceType: 'Coverage', status: 'active', beneficiary: { reference: pointer(MATCH_EXT) } });
        expect(coverage.identifier[0].value).toBe(cards.get(patient.name[0].family));
        expect(coverage.meta).toBeUndefined();
      }
    }
  });

  it('grants the partner the matched member only', async () => {
    const grants = await baton.db.execute<{ patient_id: string }>(sql`SELECT patient_id FROM access_grants WHERE client_id = ${partner.clientId}`);
    expect(grants.map((g) => g.patient_id)).toEqual(['okafor']);
    expect((await baton.request('/fhir/Patient/okafor', { token: await partner.token() })).status).toBe(200);
    expect((await baton.request('/fhir/Patient/brandt', { token: await partner.token() })).status).toBe(404);
  });

  it('finds the Groups by identifier, code and characteristic', async () => {
    const token = await partner.token();
    expect((await search(`identifier=${encodeURIComponent(`${BATCH_SYSTEM}|${batch}`)}`, token)).map(codeOf).sort()).toEqual(['consentconstraint', 'match', 'nomatch']);
    expect((await search(`identifier=${encodeURIComponent(`${BATCH_SYSTEM}|${batch}`)}&code=${encodeURIComponent(`${RESULT_SYSTEM}|nomatch`)}`, token)).map(codeOf)).toEqual(['nomatch']);
    expect((await search(`identifier=${encodeURIComponent(`${BATCH_SYSTEM}|${batch}`)}&characteristic=${encodeURIComponent(`${RESULT_SYSTEM}|match`)}`, token)).map(codeOf)).toEqual(['match']);
  });

  it('hides the Groups from another partner, even the ones with no local member', async () => {
    const token = await other.token();
    expect(await search(`identifier=${encodeURIComponent(`${BATCH_SYSTEM}|${batch}`)}`, token)).toEqual([]);
    for (const group of groups) expect((await baton.request(`/fhir/Group/${group.id}`, { token })).status).toBe(404);
    expect((await baton.request(`/fhir/Group/${groups[0].id}`, { token: await partner.token() })).status).toBe(200);
  });
});

describe('the async request is a durable job', () => {
  const jobOf = async (statusUrl: string) =>
    (await baton.db.execute<{ status: string; parameters: string }>(sql`SELECT status, parameters::text AS parameters FROM export_jobs WHERE id = ${statusUrl.split('/').pop()}`))[0];
  const batchOf = (text: string) => /\|([0-9a-f-]{36})\)/.exec(text)?.[1] as string;
  const groupsOfBatch = async (batch: string) =>
    (await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM sp_token WHERE resource_type = 'Group' AND code = 'identifier' AND system = ${BATCH_SYSTEM} AND value = ${batch}`))[0].n;

  it('answers 202 before matching anyone: the worker matches, stores the Groups and then drops the demographics from the job', async () => {
    await baton.db.execute(sql`DELETE FROM access_grants WHERE client_id = ${partner.clientId}`);
    const started = await bulk(threeMembers());
    expect(started.status).toBe(202);
    const accepted = await started.text();
    expect(accepted).not.toMatch(/Okafor|Brandt|Nemo/);
    const statusUrl = started.headers.get('content-location') as string;
    const batch = batchOf(accepted);
    // Nothing matched yet: no Group, no grant, and the status says what is under way.
    expect(await groupsOfBatch(batch)).toBe(0);
    expect(await baton.db.execute(sql`SELECT 1 FROM access_grants WHERE client_id = ${partner.clientId}`)).toHaveLength(0);
    const waiting = await get(baton, statusUrl, { token: await partner.token() });
    expect(waiting.status).toBe(202);
    expect(waiting.headers.get('x-progress')).toBe('queued');
    expect((await jobOf(statusUrl)).parameters).toContain('Okafor');

    await drain(baton);
    expect(await groupsOfBatch(batch)).toBe(3);
    const job = await jobOf(statusUrl);
    expect(job.status).toBe('completed');
    expect(job.parameters).not.toMatch(/Okafor|Brandt|Nemo|membersToMatch/);
    await new Promise((resolve) => setTimeout(resolve, baton.exportConfig.pollSeconds * 1000));
    const manifest = (await (await get(baton, statusUrl, { token: await partner.token() })).json()) as Manifest;
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([['Group', 3]]);
  });

  it('stores the Groups once when a worker that lost the job finishes matching after another completed it', async () => {
    const started = await bulk(threeMembers());
    const statusUrl = started.headers.get('content-location') as string;
    const batch = batchOf(await started.text());
    const late = worker(baton);
    const job = await late.claim();
    expect(job?.parameters.membersToMatch).toBeDefined();
    // Its lease runs out (a long pause, a partition); another worker takes the job over and completes it.
    await baton.db.execute(sql`UPDATE export_jobs SET lease_until = now() - interval '1 second' WHERE id = ${job?.id}`);
    expect(await worker(baton).runPending()).toBe(1);
    expect(await groupsOfBatch(batch)).toBe(3);
    // The first worker's matching runs to its end, but the Groups and the step commit together or not at all.
    expect(await late.step(job as NonNullable<typeof job>)).toEqual({ lost: true });
    expect(await groupsOfBatch(batch)).toBe(3);
    expect((await jobOf(statusUrl)).status).toBe('completed');
    const grants = await baton.db.execute<{ patient_id: string }>(sql`SELECT patient_id FROM access_grants WHERE client_id = ${partner.clientId}`);
    expect(grants.map((g) => g.patient_id)).toEqual(['okafor']);
  });
});

describe('PDex 2.1 clients (no Prefer: respond-async)', () => {
  it('answers Parameters MatchedMembers, NonMatchedMembers and ConsentConstrainedMembers', async () => {
    const response = await bulk(threeMembers(), { async: false });
    expect(response.status, await response.clone().text()).toBe(200);
    const parameters = await body<Parameters>(response);
    expect(parameters.parameter?.map((p) => [p.name, codeOf(p.resource as Group)])).toEqual([
      ['MatchedMembers', 'match'],
      ['NonMatchedMembers', 'nomatch'],
      ['ConsentConstrainedMembers', 'consentconstraint'],
    ]);
    expect((parameters.parameter?.[0].resource as Group).member?.[0].entity?.reference).toBe('Patient/okafor');
  });

  it('answers an empty match Group when nobody matches (MatchedMembers is 1..1)', async () => {
    const parameters = await body<Parameters>(await bulk({ resourceType: 'Parameters', parameter: [memberBundle(matchRequest(NOBODY))] }, { async: false }));
    expect(parameters.parameter?.map((p) => [p.name, (p.resource as Group).member?.length ?? 0])).toEqual([
      ['MatchedMembers', 0],
      ['NonMatchedMembers', 1],
    ]);
  });
});

describe('the same patient submitted with two coverages (PDex §pdex-139d)', () => {
  it('answers two entries, each with the coverage it was submitted with', async () => {
    const known = matchRequest(OKAFOR);
    const unknown = matchRequest({ ...OKAFOR, cardId: 'W999999999-09' });
    const parameters = await body<Parameters>(await bulk({ resourceType: 'Parameters', parameter: [memberBundle(known), memberBundle(unknown)] }, { async: false }));
    const entries = (parameters.parameter ?? []).flatMap((p) => {
      const group = p.resource as Group;
      return (group.member ?? []).map(({ entity }) => {
        const coverageRef = entity.extension?.find((e) => e.url === COVERAGE_EXT)?.valueReference?.reference;
        const coverage = group.contained?.find((r) => `#${r.id}` === coverageRef) as any;
        return `${codeOf(group)} ${coverage?.identifier?.[0]?.value}`;
      });
    });
    expect(entries).toHaveLength(2);
    expect(entries.map((e) => e.split(' ')[1]).sort()).toEqual([OKAFOR.cardId, 'W999999999-09']);
  });
});

describe('one member failing HRex rules fails only that member', () => {
  it('puts a member without a birth date in nomatch and still matches the other', async () => {
    const noBirthDate = matchRequest(OKAFOR);
    delete (noBirthDate.parameter?.[0].resource as any).birthDate;
    const parameters = await body<Parameters>(await bulk({ resourceType: 'Parameters', parameter: [memberBundle(noBirthDate), memberBundle(matchRequest(OKAFOR))] }, { async: false }));
    expect(parameters.parameter?.map((p) => [p.name, (p.resource as Group).member?.length])).toEqual([
      ['MatchedMembers', 1],
      ['NonMatchedMembers', 1],
    ]);
  });
});

describe('a malformed request', () => {
  const okafor = () => matchRequest(OKAFOR).parameter as ParametersParameter[];
  it.each([
    ['not Parameters', { resourceType: 'Patient' }, 'Parameters'],
    ['no MemberBundle', { resourceType: 'Parameters', parameter: [] }, 'Parameters.parameter'],
    ['another parameter', { resourceType: 'Parameters', parameter: [{ name: 'MemberPatient', resource: okafor()[0].resource }] }, 'Parameters.parameter[0].name'],
    ['a MemberBundle without Consent', { resourceType: 'Parameters', parameter: [{ name: 'MemberBundle', part: okafor().slice(0, 2) }] }, 'Parameters.parameter[0].part'],
    ['an unknown part', { resourceType: 'Parameters', parameter: [{ name: 'MemberBundle', part: [...okafor(), { name: 'Extra', valueString: 'x' }] }] }, 'Parameters.parameter[0].part[3].name'],
    ['a part of the wrong type', { resourceType: 'Parameters', parameter: [{ name: 'MemberBundle', part: okafor().map((p) => (p.name === 'CoverageToMatch' ? { ...p, resource: okafor()[0].resource } : p)) }] }, 'Parameters.parameter[0].part[1].resource'],
  ])('is refused with 400 naming the part: %s', async (_, request, expression) => {
    const response = await bulk(request);
    expect(response.status).toBe(400);
    const outcome = await body(response);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue.map((i: any) => i.expression?.[0])).toContain(expression);
  });

  it('refuses a client without the operation scope (403)', async () => {
    const token = await baton.token({ clientId: partner.clientId, kind: 'partner', scopes: ['system/*.rs', MEMBER_MATCH], organization: [NEW_PAYER_NPI] });
    expect((await bulk(threeMembers(), { token })).status).toBe(403);
  });
});
