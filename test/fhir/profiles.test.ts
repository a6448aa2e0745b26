import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Coverage } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, startBaton, type TestBaton } from '../support/baton.ts';
import { buildHrexPackages, HAS_HREX, HREX_COVERAGE, HREX_DIR, type HrexPackages } from '../support/hrex-package.ts';

const HREX_PATIENT = 'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-patient-demographics';
const GROUP = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/coverage-class', code: 'group' }] };

describe.skipIf(!HAS_HREX)('validation against loaded profiles (HRex 1.0.0 package from ../shared/fixtures)', () => {
  let hrex: HrexPackages;
  let baton: TestBaton;
  beforeAll(async () => {
    hrex = buildHrexPackages();
    baton = await startBaton({ profilePackages: [hrex.tgz] });
  });
  afterAll(async () => {
    await baton?.close();
    hrex?.remove();
  });

  /** The IG's own conforming example, claiming the HRex Coverage profile. */
  function coverage(changes: Partial<Coverage> = {}, profile: string = HREX_COVERAGE): Coverage {
    const example = JSON.parse(readFileSync(join(HREX_DIR, 'Coverage-full.json'), 'utf8')) as Coverage;
    return { ...example, meta: { profile: [profile] }, ...changes };
  }

  const violations: [string, Partial<Coverage>, string, string][] = [
    ['carries two identifiers (max 1)', { identifier: [{ system: 'urn:x', value: '1' }, { system: 'urn:x', value: '2' }] }, 'Coverage.identifier', 'expected 0..1, but found 2'],
    ['has an identifier without a value', { identifier: [{ system: 'urn:x' }] }, 'Coverage.identifier[0].value', 'Missing required property'],
    ['has neither identifier nor subscriberId (hrex-cov-1)', { identifier: undefined, subscriberId: undefined }, 'Coverage', 'hrex-cov-1'],
    ['names two payors (max 1)', { payor: [{ reference: 'Organization/a' }, { reference: 'Organization/b' }] }, 'Coverage.payor', 'expected 1..1, but found 2'],
    ['has two group classes (slice group max 1)', { class: [{ type: GROUP, value: 'A' }, { type: GROUP, value: 'B' }] }, 'Coverage.class', "slice 'group'"],
  ];

  async function expectProfileViolation(res: Response, element: string, message: string): Promise<void> {
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toContain('application/fhir+json');
    const outcome = await body(res);
    expect(outcome.resourceType).toBe('OperationOutcome');
    const issue = outcome.issue.find((i: any) => i.expression?.[0] === element);
    expect(issue).toMatchObject({ severity: 'error', expression: [element] });
    expect(issue.diagnostics.startsWith(`${element}: `)).toBe(true);
    expect(issue.diagnostics).toContain(message);
    expect(issue.diagnostics.endsWith(`(profile ${HREX_COVERAGE})`)).toBe(true);
  }

  describe('create', () => {
    it('accepts the IG example claiming the profile (201) and keeps meta.profile', async () => {
      const res = await baton.request('/fhir/Coverage', { method: 'POST', json: coverage() });
      expect(res.status).toBe(201);
      expect((await body(res)).meta.profile).toEqual([HREX_COVERAGE]);
    });

    it.each(violations)('answers 422 naming the element when a Coverage claiming the profile %s', async (_case, changes, element, message) => {
      const res = await baton.request('/fhir/Coverage', { method: 'POST', json: coverage(changes) });
      await expectProfileViolation(res, element, message);
    });

    it('validates against a versioned claim when the version is the one loaded', async () => {
      const res = await baton.request('/fhir/Coverage', { method: 'POST', json: coverage(violations[0][1], `${HREX_COVERAGE}|1.0.0`) });
      await expectProfileViolation(res, 'Coverage.identifier', 'expected 0..1');
    });

    it.each([
      ['a profile no package defines', 'http://example.org/StructureDefinition/unknown-coverage'],
      ['a version of the profile that is not loaded', `${HREX_COVERAGE}|9.9.9`],
    ])('accepts, on its base validity, a Coverage claiming %s', async (_case, profile) => {
      const res = await baton.request('/fhir/Coverage', { method: 'POST', json: coverage(violations[0][1], profile) });
      expect(res.status).toBe(201);
    });

    it('answers 422 when the claimed profile constrains another resource type', async () => {
      const res = await baton.request('/fhir/Coverage', { method: 'POST', json: coverage({}, HREX_PATIENT) });
      expect(res.status).toBe(422);
      expect((await body(res)).issue).toEqual([
        expect.objectContaining({ expression: ['Coverage.meta.profile[0]'], diagnostics: `Profile ${HREX_PATIENT} constrains Patient, not Coverage` }),
      ]);
    });

    it.each([
      ['misses beneficiary (base 1..1)', { beneficiary: undefined }, 'Coverage.beneficiary'],
      ['has an element R4 does not define', { memberNumber: '42' } as Partial<Coverage>, 'Coverage.memberNumber'],
      ['has a malformed date', { period: { start: '2024-13-01' } }, 'Coverage.period.start'],
    ])('answers 400, not 422, when a Coverage claiming the profile %s: it is not valid R4', async (_case, changes, element) => {
      const res = await baton.request('/fhir/Coverage', { method: 'POST', json: coverage({ ...violations[0][1], ...changes }) });
      expect(res.status).toBe(400);
      const outcome = await body(res);
      expect(outcome.issue.map((i: any) => i.expression?.[0])).toContain(element);
      expect(outcome.issue.every((i: any) => !i.diagnostics.includes('(profile'))).toBe(true);
    });
  });

  describe('update (PUT)', () => {
    it('creates with a conforming Coverage (201), then refuses a violating update (422) and keeps version 1', async () => {
      const created = await baton.request('/fhir/Coverage/hrex-put', { method: 'PUT', json: coverage({ id: 'hrex-put' }) });
      expect(created.status).toBe(201);
      const violating = await baton.request('/fhir/Coverage/hrex-put', { method: 'PUT', json: coverage({ id: 'hrex-put', ...violations[3][1] }) });
      await expectProfileViolation(violating, 'Coverage.payor', 'expected 1..1, but found 2');
      const current = await body(await baton.request('/fhir/Coverage/hrex-put'));
      expect(current.meta.versionId).toBe('1');
      expect(current.payor).toHaveLength(1);
    });

    it.each(violations)('answers 422 when create-on-update sends a Coverage that %s', async (_case, changes, element, message) => {
      const res = await baton.request('/fhir/Coverage/hrex-put-new', { method: 'PUT', json: coverage({ id: 'hrex-put-new', ...changes }) });
      await expectProfileViolation(res, element, message);
    });

    it('answers 400 when the update is not valid R4', async () => {
      const res = await baton.request('/fhir/Coverage/hrex-put', { method: 'PUT', json: coverage({ id: 'hrex-put', status: 42 as unknown as Coverage['status'] }) });
      expect(res.status).toBe(400);
      expect((await body(res)).issue[0].expression).toEqual(['Coverage.status']);
    });

    it('accepts a conforming update (200, version 2)', async () => {
      const res = await baton.request('/fhir/Coverage/hrex-put', { method: 'PUT', json: coverage({ id: 'hrex-put', subscriberId: '11111' }) });
      expect(res.status).toBe(200);
      expect((await body(res)).meta.versionId).toBe('2');
    });
  });

  it('answers 422 to a JSON Patch that makes a Coverage violate its profile', async () => {
    const created = await body(await baton.request('/fhir/Coverage', { method: 'POST', json: coverage() }));
    const res = await baton.request(`/fhir/Coverage/${created.id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json-patch+json' },
      body: JSON.stringify([{ op: 'add', path: '/payor/-', value: { reference: 'Organization/other' } }]),
    });
    await expectProfileViolation(res, 'Coverage.payor', 'expected 1..1, but found 2');
  });
});
