import type { Bundle, OperationOutcome, Patient, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { searchParamsOf } from '../../src/fhir/search/parameters.ts';
import { BASE_URL, body, startBaton, type TestBaton } from '../support/baton.ts';
import { bloodPressure, eyeColor, fixturesPresent, glucose, heartRate, pdex, prognosis, rangedRisk } from './search/examples.ts';

/**
 * Search parameter types and modifiers through HTTP (search.html), over the PDex examples and
 * the R4 specification's Observations. Each expectation lists exactly the ids that match.
 */
const FIXTURES = [
  'Patient-1',
  'Patient-1001',
  'Patient-2002',
  'Patient-patient-2',
  'Patient-PatientMemberMatchExample1',
  'Patient-PatientMemberMatchExample2',
  'Coverage-883210',
  'Coverage-Coverage1',
  'Coverage-CoverageMatchExample1',
  'Coverage-coverage-2',
  'Encounter-6',
  'Organization-Payer1',
  'Provenance-1000002',
  'Device-543210',
];

describe.skipIf(!fixturesPresent)('search parameters (needs ../shared/fixtures/davinci)', () => {
  let baton: TestBaton;

  beforeAll(async () => {
    baton = await startBaton();
    const patient1 = pdex<Patient>('Patient-1');
    const mueller: Patient = { ...patient1, id: 'mueller', name: [{ family: 'Müller', given: ['Zoë'] }], identifier: [], telecom: [], meta: { tag: [{ system: 'http://baton.test/tags', code: 'imported' }] } };
    const answers: Resource = {
      resourceType: 'QuestionnaireResponse',
      id: 'answers',
      status: 'completed',
      questionnaire: 'http://hl7.org/fhir/us/davinci-dtr/Questionnaire/home-oxygen|2.0.1',
      subject: { reference: 'Patient/1' },
    } as Resource;
    const resources: Resource[] = [...FIXTURES.map((name) => pdex(name)), mueller, bloodPressure, heartRate, glucose, eyeColor(BASE_URL), prognosis, rangedRisk, answers];
    for (const resource of resources) {
      const response = await baton.request(`/fhir/${resource.resourceType}/${resource.id}`, { method: 'PUT', json: resource });
      expect(response.status, `${resource.resourceType}/${resource.id}`).toBeLessThan(300);
    }
  });

  afterAll(async () => {
    await baton?.close();
  });

  async function search(query: string, init?: RequestInit): Promise<Bundle> {
    const response = await baton.request(`/fhir/${query}`, init);
    expect(response.status, query).toBe(200);
    return body<Bundle>(response);
  }

  async function matches(query: string): Promise<string[]> {
    const bundle = await search(query);
    return (bundle.entry ?? [])
      .filter((e) => e.search?.mode === 'match')
      .map((e) => e.resource?.id as string)
      .sort();
  }

  async function rejected(query: string, init?: RequestInit): Promise<OperationOutcome> {
    const response = await baton.request(`/fhir/${query}`, init);
    expect(response.status, query).toBe(400);
    const outcome = await body<OperationOutcome>(response);
    expect(outcome.resourceType).toBe('OperationOutcome');
    return outcome;
  }

  describe('string', () => {
    it.each([
      ['Patient?name=apple', ['1']],
      ['Patient?name=APPLESEED', ['1']],
      ['Patient?name=johnny', ['1']],
      ['Patient?name=muller', ['mueller']],
      ['Patient?name=Müll', ['mueller']],
      ['Patient?given=zoe', ['mueller']],
      ['Patient?family=smith', ['2002', 'patient-2']],
      ['Patient?family:exact=Appleseed', ['1']],
      ['Patient?family:exact=appleseed', []],
      ['Patient?family:exact=Müller', ['mueller']],
      ['Patient?name:contains=LESE', ['1']],
      ['Patient?name:contains=seed', ['1']],
      ['Patient?address-city=pitts', ['1', 'mueller']],
      ['Patient?phonetic=appl', ['1']],
      ['Observation?value-string=blu', ['eye-color']],
    ])('%s', async (query, ids) => {
      expect(await matches(query)).toEqual(ids);
    });
  });

  describe('token', () => {
    it.each([
      ['Patient?identifier=http://example.org/old-payer/identifiers/member|55678', ['1001', 'patient-2']],
      ['Patient?identifier=55678', ['1001', 'patient-2']],
      ['Patient?identifier=http://example.org/old-payer/identifiers/member|', ['1001', '2002', 'patient-2']],
      ['Patient?identifier=|55678', []],
      ['Patient?identifier=http://example.org/other|55678', []],
      ['Patient?identifier=1234-234-1243-12345678901m,45567', ['1', '2002']],
      ['Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|1234-234-1243-12345678901m', ['1']],
      ['Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MB|1234-234-1243-12345678901m', []],
      ['Patient?gender=female', ['1001', '2002', 'PatientMemberMatchExample2']],
      ['Patient?gender:not=male', ['1001', '2002', 'PatientMemberMatchExample2']],
      ['Patient?gender:not=male,female', []],
      ['Patient?active=true', ['1', 'mueller']],
      ['Patient?phone=(443)555-1212', ['1']],
      ['Patient?_tag=http://baton.test/tags|imported', ['mueller']],
      ['Observation?status=|final', ['blood-pressure', 'eye-color', 'f001', 'heart-rate']],
      ['Observation?code=http://loinc.org|8867-4', ['heart-rate']],
      ['Observation?code=http://snomed.info/sct|8867-4', []],
      ['Observation?code:text=glucose', ['f001']],
      ['Observation?code:text=systolic', ['blood-pressure']],
      ['Observation?code:text=eye col', ['eye-color']],
      ['Observation?combo-code=8480-6', ['blood-pressure']],
      ['Observation?combo-code=8867-4', ['heart-rate']],
      ['Observation?category=vital-signs', ['blood-pressure', 'heart-rate']],
      ['Observation?identifier=http://www.bmc.nl/zorgportal/identifiers/observations|6323', ['f001']],
      ['Patient?_id=1,1001,nonexistent', ['1', '1001']],
    ])('%s', async (query, ids) => {
      expect(await matches(query)).toEqual(ids);
    });
  });

  describe(':missing on every type', () => {
    it.each([
      ['Observation?value-quantity:missing=true', ['blood-pressure', 'eye-color']],
      ['Observation?value-quantity:missing=false', ['f001', 'heart-rate']],
      ['Observation?category:missing=true', ['eye-color', 'f001']],
      ['Patient?family:missing=false&family=smith', ['2002', 'patient-2']],
      ['Patient?birthdate:missing=true', []],
      ['Patient?general-practitioner:missing=true&gender=male', ['1', 'PatientMemberMatchExample1', 'mueller', 'patient-2']],
      ['Patient?_profile:missing=false&name=johnny', ['1']],
      ['RiskAssessment?probability:missing=false', ['prognosis', 'ranged-risk']],
      ['Observation?code-value-quantity:missing=false', ['f001', 'heart-rate']],
    ])('%s', async (query, ids) => {
      expect(await matches(query)).toEqual(ids);
    });
  });

  describe('date', () => {
    it.each([
      ['Patient?birthdate=1986', ['1', 'mueller']],
      ['Patient?birthdate=1986-01', ['1', 'mueller']],
      ['Patient?birthdate=1986-01-01', ['1', 'mueller']],
      ['Patient?birthdate=1986-01-02', []],
      ['Patient?birthdate=eq1958-12-25', ['2002']],
      ['Patient?birthdate=ne1986', ['1001', '2002', 'PatientMemberMatchExample1', 'PatientMemberMatchExample2', 'patient-2']],
      ['Patient?birthdate=lt1960', ['2002', 'patient-2']],
      ['Patient?birthdate=le1958-12-25', ['2002']],
      ['Patient?birthdate=gt1978-03-22', ['1', 'mueller']],
      ['Patient?birthdate=ge1978-03-22', ['1', 'PatientMemberMatchExample2', 'mueller']],
      ['Patient?birthdate=ge1958&birthdate=lt1960', ['2002', 'patient-2']],
      ['Observation?date=sa2013-01-01', ['eye-color', 'f001']],
      ['Observation?date=eb2000', ['heart-rate']],
      ['Observation?date=ge2020', ['f001']],
      ['Observation?date=2013-04-02T08:30:10Z', []],
      ['Observation?date=ge2013-04-02T09:30:10%2B01:00', ['eye-color', 'f001']],
      ['Observation?date=lt2012-09-17T12:00:00Z', ['blood-pressure', 'heart-rate']],
      ['Observation?date=2012-09', ['blood-pressure']],
      ['Coverage?_lastUpdated=lt2000', []],
      ['Patient?birthdate=ap0001', []],
      ['Patient?birthdate=ap9999', []],
      ['Patient?birthdate=gt9999-12-31T23:59:59.999Z', []],
    ])('%s', async (query, ids) => {
      expect(await matches(query)).toEqual(ids);
    });

    it('approximates with ap: near values match, far ones do not', async () => {
      const ids = await matches('Observation?date=ap2012-09-17');
      expect(ids).toContain('blood-pressure');
      expect(ids).not.toContain('heart-rate');
    });

    it('finds resources by _lastUpdated', async () => {
      expect(await matches('Device?_lastUpdated=gt2020')).toEqual(['543210']);
      expect(await matches(`Device?_lastUpdated=ge${new Date(Date.now() + 3_600_000).toISOString().slice(0, 16)}Z`)).toEqual([]);
    });
  });

  describe('number and quantity', () => {
    it.each([
      ['RiskAssessment?probability=0.02', ['prognosis']],
      ['RiskAssessment?probability=0.020', ['prognosis']],
      ['RiskAssessment?probability=0.03', []],
      ['RiskAssessment?probability=lt0.05', ['prognosis']],
      ['RiskAssessment?probability=gt0.05', ['ranged-risk']],
      ['RiskAssessment?probability=ge0.3', ['ranged-risk']],
      ['RiskAssessment?probability=sa0.05', ['ranged-risk']],
      ['RiskAssessment?probability=eb0.05', ['prognosis']],
      ['RiskAssessment?probability=ne0.02', ['ranged-risk']],
      ['Observation?value-quantity=44', ['heart-rate']],
      ['Observation?value-quantity=6.3', ['f001']],
      ['Observation?value-quantity=6', ['f001']],
      ['Observation?value-quantity=6.0', []],
      ['Observation?value-quantity=ap6.0', ['f001']],
      ['Observation?value-quantity=gt6|http://unitsofmeasure.org|mmol/L', ['f001']],
      ['Observation?value-quantity=gt6|http://unitsofmeasure.org|mg', []],
      ['Observation?value-quantity=6.3||mmol/l', ['f001']],
      ['Observation?value-quantity=lt50', ['f001', 'heart-rate']],
      ['Observation?value-quantity=lt50||/min', ['heart-rate']],
      ['Observation?component-value-quantity=107', ['blood-pressure']],
      ['Observation?combo-value-quantity=60||mm[Hg]', ['blood-pressure']],
      ['Observation?combo-value-quantity=44', ['heart-rate']],
    ])('%s', async (query, ids) => {
      expect(await matches(query)).toEqual(ids);
    });
  });

  describe('composite', () => {
    it.each([
      ['Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100', ['blood-pressure']],
      ['Observation?component-code-value-quantity=http://loinc.org|8480-6$lt100', []],
      ['Observation?component-code-value-quantity=8462-4$60', ['blood-pressure']],
      // 60 is the diastolic value: systolic and 60 are in different components, so no match.
      ['Observation?component-code-value-quantity=8480-6$60', []],
      ['Observation?code-value-quantity=http://loinc.org|8867-4$44', ['heart-rate']],
      ['Observation?code-value-quantity=http://loinc.org|8867-4$gt50', []],
      ['Observation?combo-code-value-quantity=8480-6$107,8867-4$44', ['blood-pressure', 'heart-rate']],
      ['Observation?code-value-string=eye$blu', []],
    ])('%s', async (query, ids) => {
      expect(await matches(query)).toEqual(ids);
    });
  });

  describe('reference', () => {
    it.each([
      ['Encounter?subject=Patient/1', ['6']],
      ['Encounter?subject=1', ['6']],
      ['Encounter?subject:Patient=1', ['6']],
      ['Encounter?patient=1', ['6']],
      ['Encounter?patient=Patient/1001', []],
      [`Encounter?subject=${BASE_URL}/Patient/1`, ['6']],
      ['Encounter?subject=https://partner.example/fhir/Patient/1', []],
      ['Observation?subject=Patient/patient-2', ['eye-color']],
      [`Observation?subject=${BASE_URL}/Patient/patient-2`, ['eye-color']],
      ['Observation?patient=Patient/1,Patient/1001', ['blood-pressure', 'heart-rate']],
      ['Coverage?beneficiary=Patient/1', ['883210', 'Coverage1']],
      ['Coverage?payor=Organization/Payer1', ['883210', 'Coverage1']],
      ['Coverage?payor:identifier=http://hl7.org/fhir/sid/us-npi|9876543210', ['CoverageMatchExample1', 'coverage-2']],
      ['Coverage?payor:missing=true', ['CoverageMatchExample1', 'coverage-2']],
      ['Provenance?target=Encounter/6', ['1000002']],
      ['Observation?based-on:identifier=https://acme.org/identifiers|1234', ['blood-pressure']],
      ['QuestionnaireResponse?questionnaire=http://hl7.org/fhir/us/davinci-dtr/Questionnaire/home-oxygen', ['answers']],
      ['QuestionnaireResponse?questionnaire=http://hl7.org/fhir/us/davinci-dtr/Questionnaire/home-oxygen|2.0.1', ['answers']],
      ['QuestionnaireResponse?questionnaire=http://hl7.org/fhir/us/davinci-dtr/Questionnaire/other', []],
      ['Patient?_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient', ['1', '1001', '2002']],
      ['Patient?_profile:below=http://hl7.org/fhir/us/core', ['1', '1001', '2002']],
      ['Patient?_profile:below=http://hl7.org/fhir/us/cor', []],
      ['Patient?_profile:above=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient/more', ['1', '1001', '2002']],
    ])('%s', async (query, ids) => {
      expect(await matches(query)).toEqual(ids);
    });
  });

  describe('chaining and _has', () => {
    it.each([
      ['Encounter?subject:Patient.identifier=https://www.xxxhealthplan.com/fhir/medicalrecordnumber|1234-234-1243-12345678901m', ['6']],
      ['Encounter?patient.identifier=1234-234-1243-12345678901m', ['6']],
      ['Observation?patient.name=patricia', ['heart-rate']],
      ['Observation?subject.family=Appleseed', ['blood-pressure']],
      ['Observation?subject:Patient.birthdate=lt1960', ['eye-color', 'f001']],
      ['Coverage?beneficiary.birthdate=1986', ['883210', 'Coverage1']],
      ['Coverage?payor.name=nonexistent', []],
      ['Provenance?target:Encounter.subject:Patient.name=appleseed', ['1000002']],
      ['Patient?_has:Observation:patient:code=http://loinc.org|8867-4', ['1001']],
      ['Patient?_has:Observation:subject:code=8867-4,15074-8', ['1001', '2002']],
      ['Patient?_has:Coverage:beneficiary:status=active', ['1']],
      ['Patient?_has:Coverage:beneficiary:status=cancelled', []],
      ['Encounter?_has:Provenance:target:agent=Organization/Payer1', []],
    ])('%s', async (query, ids) => {
      expect(await matches(query)).toEqual(ids);
    });

    it.each([
      ['Observation?status.name=x', 'status.name'],
      ['Observation?subject:Nonsense.name=x', 'subject:Nonsense.name'],
      ['Encounter?subject:Organization.name=x', 'subject:Organization.name'],
      ['Patient?_has:Observation:patient=x', '_has:Observation:patient'],
      ['Patient?_has:Nonsense:patient:code=x', '_has:Nonsense:patient:code'],
    ])('%s is a 400 naming the parameter', async (query, name) => {
      const outcome = await rejected(query);
      expect(outcome.issue?.[0].expression).toEqual([name]);
    });
  });

  describe('comma is OR, repetition is AND', () => {
    it('ORs alternatives and ANDs repeated parameters', async () => {
      expect(await matches('Patient?family=smith,appleseed')).toEqual(['1', '2002', 'patient-2']);
      expect(await matches('Patient?family=smith&gender=male')).toEqual(['patient-2']);
      expect(await matches('Patient?name=smith&name=william&name=john')).toEqual(['2002', 'patient-2']);
    });

    it('reads escaped commas as part of the value', async () => {
      expect(await matches('Patient?family=smith\\,appleseed')).toEqual([]);
    });
  });

  describe('hostile and malformed values', () => {
    it.each(["Patient?name='; DROP TABLE resources;--", "Patient?identifier=x' OR '1'='1", 'Patient?family:contains=%25', 'Patient?family=_', 'Patient?_id=1%27--'])(
      '%s matches nothing and breaks nothing',
      async (query) => {
        expect(await matches(query)).toEqual([]);
        expect(await matches('Patient?_id=1')).toEqual(['1']);
      },
    );

    it.each([
      ['Patient?birthdate=2020-13-01', 'birthdate'],
      ['Patient?birthdate=xx2020', 'birthdate'],
      ['Patient?birthdate=last-week', 'birthdate'],
      ['Patient?birthdate=0000', 'birthdate'],
      ['Observation?value-quantity=1e-20000', 'value-quantity'],
      ['Observation?value-quantity=lots', 'value-quantity'],
      ['Patient?name:soundex=smith', 'name:soundex'],
      ['Patient?identifier:below=http://x|1', 'identifier:below'],
      ['Patient?active:missing=perhaps', 'active:missing'],
      ['Observation?component-code-value-quantity=8480-6', 'component-code-value-quantity'],
      ['Encounter?subject=not a reference', 'subject'],
      ['Patient?name=', 'name'],
    ])('%s is a 400 naming %s', async (query, name) => {
      const outcome = await rejected(query);
      expect(outcome.issue?.[0].expression).toEqual([name]);
      expect(outcome.issue?.[0].diagnostics).toContain(name);
    });

    it('takes 5,000 values in one search and refuses more with 400', async () => {
      const form = (n: number) => ({
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `_id=${['1', ...Array.from({ length: n - 1 }, (_, i) => `x${i}`)].join(',')}`,
      });
      const response = await baton.request('/fhir/Patient/_search', form(5000));
      expect(response.status).toBe(200);
      expect((await body<Bundle>(response)).entry?.map((e) => e.resource?.id)).toEqual(['1']);
      const refused = await baton.request('/fhir/Patient/_search', form(5001));
      expect(refused.status).toBe(400);
      expect((await body<OperationOutcome>(refused)).issue?.[0].code).toBe('too-costly');
    });

    it.each(['Patient', 'Observation', 'Coverage', 'ExplanationOfBenefit'])('answers 200 or 400, never 500, to odd values of every %s parameter and modifier', async (type) => {
      const odd = ["'", '%25', '\\', '|', '||', '$', ',x', 'x,', 'gt', 'ap', 'ne-1', '1e309', '9'.repeat(60), '2020-02-30', 'Patient/', 'http://', '#', 'é'.repeat(400)];
      const statuses = new Set<number>();
      for (const [code] of searchParamsOf(type)) {
        for (const modifier of ['', ':missing', ':not', ':exact', ':contains', ':text', ':of-type', ':identifier', ':below', ':above', ':Patient']) {
          for (const value of odd) {
            const response = await baton.request(`/fhir/${type}?${code}${modifier}=${value}`);
            statuses.add(response.status);
            expect(response.status, `${code}${modifier}=${value}`).toBeLessThan(500);
          }
        }
      }
      expect(statuses).toEqual(new Set([200, 400]));
    });

    it('rejects a NUL in a value with 400', async () => {
      await rejected('Patient?name=a%00b');
    });

    it('answers 404 for an unknown resource type', async () => {
      const response = await baton.request('/fhir/Nonsense?name=x');
      expect(response.status).toBe(404);
      expect((await body<OperationOutcome>(response)).resourceType).toBe('OperationOutcome');
    });
  });

  describe('unknown parameters', () => {
    it('ignores them and says so in an outcome entry, leaving them out of the self link', async () => {
      const bundle = await search('Patient?family=smith&color=blue');
      expect(bundle.entry?.filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id).sort()).toEqual(['2002', 'patient-2']);
      const outcome = bundle.entry?.find((e) => e.search?.mode === 'outcome')?.resource as OperationOutcome;
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue?.[0]).toMatchObject({ severity: 'warning', code: 'not-supported', expression: ['color'] });
      const self = new URL(bundle.link?.find((l) => l.relation === 'self')?.url as string);
      expect([...self.searchParams.keys()]).toEqual(['family']);
    });

    it('rejects them with 400 under Prefer: handling=strict', async () => {
      const outcome = await rejected('Patient?family=smith&color=blue', { headers: { prefer: 'handling=strict' } });
      expect(outcome.issue?.[0].expression).toEqual(['color']);
    });

    it('accepts known parameters under Prefer: handling=strict', async () => {
      expect((await search('Patient?family=smith', { headers: { prefer: 'handling=strict' } })).total).toBe(2);
    });
  });

  describe('POST _search', () => {
    it('finds what GET finds, from the form body and the query together', async () => {
      const response = await baton.request('/fhir/Patient/_search?gender=male', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'family=smith',
      });
      expect(response.status).toBe(200);
      const bundle = await body<Bundle>(response);
      expect(bundle.entry?.map((e) => e.resource?.id)).toEqual(['patient-2']);
      const self = new URL(bundle.link?.find((l) => l.relation === 'self')?.url as string);
      expect(self.pathname).toBe('/fhir/Patient');
      expect(self.searchParams.get('family')).toBe('smith');
      expect(self.searchParams.get('gender')).toBe('male');
    });
  });
});
