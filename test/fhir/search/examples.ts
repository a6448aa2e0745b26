import { existsSync, readFileSync } from 'node:fs';
import type { Observation, Resource, RiskAssessment } from '@medplum/fhirtypes';

/**
 * Test data for search: the Da Vinci PDex and HRex examples from ../shared/fixtures (read at
 * test time, never copied here), and the FHIR R4 specification's own Observation and
 * RiskAssessment examples, which the fixtures lack, re-pointed at the fixtures' patients.
 */
export const PDEX_DIR = new URL('../../../../shared/fixtures/davinci/ig/pdex-2.2.0-ci/', import.meta.url);
export const fixturesPresent = existsSync(PDEX_DIR);

export function pdex<T extends Resource = Resource>(name: string): T {
  return JSON.parse(readFileSync(new URL(`${name}.json`, PDEX_DIR), 'utf8')) as T;
}

/** R4 observation-example-bloodpressure (http://hl7.org/fhir/R4/observation-example-bloodpressure.json.html). */
export const bloodPressure: Observation = {
  resourceType: 'Observation',
  id: 'blood-pressure',
  meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] },
  identifier: [{ system: 'urn:ietf:rfc:3986', value: 'urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281' }],
  basedOn: [{ identifier: { system: 'https://acme.org/identifiers', value: '1234' } }],
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] }],
  code: { coding: [{ system: 'http://loinc.org', code: '85354-9', display: 'Blood pressure panel with all children optional' }], text: 'Blood pressure systolic & diastolic' },
  subject: { reference: 'Patient/1' },
  effectiveDateTime: '2012-09-17',
  performer: [{ reference: 'Practitioner/example' }],
  interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'L', display: 'low' }], text: 'Below low normal' }],
  bodySite: { coding: [{ system: 'http://snomed.info/sct', code: '368209003', display: 'Right arm' }] },
  component: [
    {
      code: { coding: [{ system: 'http://loinc.org', code: '8480-6', display: 'Systolic blood pressure' }] },
      valueQuantity: { value: 107, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
    },
    {
      code: { coding: [{ system: 'http://loinc.org', code: '8462-4', display: 'Diastolic blood pressure' }] },
      valueQuantity: { value: 60, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
    },
  ],
};

/** R4 observation-example-heart-rate. */
export const heartRate: Observation = {
  resourceType: 'Observation',
  id: 'heart-rate',
  meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] },
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }], text: 'Vital Signs' }],
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' },
  subject: { reference: 'Patient/1001' },
  effectiveDateTime: '1999-07-02',
  valueQuantity: { value: 44, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
};

/** R4 observation-example-f001-glucose: an open-ended effectivePeriod. */
export const glucose: Observation = {
  resourceType: 'Observation',
  id: 'f001',
  identifier: [{ use: 'official', system: 'http://www.bmc.nl/zorgportal/identifiers/observations', value: '6323' }],
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '15074-8', display: 'Glucose [Moles/volume] in Blood' }] },
  subject: { reference: 'Patient/2002', display: 'P. van de Heuvel' },
  effectivePeriod: { start: '2013-04-02T09:30:10+01:00' },
  issued: '2013-04-03T15:30:10+01:00',
  performer: [{ reference: 'Practitioner/f005', display: 'A. Langeveld' }],
  valueQuantity: { value: 6.3, unit: 'mmol/l', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
  interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'H', display: 'High' }] }],
};

/** R4 observation-example-eye-color, its subject written as an absolute URL under our base. */
export function eyeColor(baseUrl: string): Observation {
  return {
    resourceType: 'Observation',
    id: 'eye-color',
    status: 'final',
    code: { text: 'eye color' },
    subject: { reference: `${baseUrl}/Patient/patient-2` },
    effectiveDateTime: '2016-05-18',
    valueString: 'blue',
  };
}

/** R4 riskassessment-example-prognosis (probabilityDecimal) and a variant with a probabilityRange. */
export const prognosis: RiskAssessment = {
  resourceType: 'RiskAssessment',
  id: 'prognosis',
  status: 'final',
  subject: { reference: 'Patient/1' },
  occurrenceDateTime: '2010-11-22',
  prediction: [{ outcome: { coding: [{ system: 'http://snomed.info/sct', code: '249943000:363698007=72098002,260868000=6934004' }], text: 'permanent weakness of the left arm' }, probabilityDecimal: 0.02 }],
};

export const rangedRisk: RiskAssessment = {
  resourceType: 'RiskAssessment',
  id: 'ranged-risk',
  status: 'final',
  subject: { reference: 'Patient/1001' },
  prediction: [
    {
      outcome: { text: 'readmission' },
      // ras-1: a probability range is in percent.
      probabilityRange: {
        low: { value: 10, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
        high: { value: 30, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
      },
    },
  ],
};
