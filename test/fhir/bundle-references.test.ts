import { describe, expect, it } from 'vitest';
import { collectReferences, isConditionalReference, isUrn, rewriteReferences } from '../../src/fhir/bundle-references.ts';

const PATIENT_URN = 'urn:uuid:4f2a0c1e-9f0e-4c5e-8d61-1a2b3c4d5e6f';

describe('collectReferences', () => {
  it('finds Reference.reference at any depth, in contained resources and in JSON Patch values', () => {
    const resource = {
      resourceType: 'ExplanationOfBenefit',
      patient: { reference: PATIENT_URN },
      insurance: [{ coverage: { reference: 'Coverage?identifier=a|b' } }],
      contained: [{ resourceType: 'Organization', id: 'o', partOf: { reference: 'Organization/1' } }],
      identifier: [{ system: 'urn:ietf:rfc:3986', value: PATIENT_URN }],
    };
    expect(collectReferences(resource).sort()).toEqual([PATIENT_URN, 'Coverage?identifier=a|b', 'Organization/1'].sort());
    expect(collectReferences([{ op: 'add', path: '/subject', value: { reference: PATIENT_URN } }])).toEqual([PATIENT_URN]);
  });

  it('leaves Bundles inside alone: they are stored as they are', () => {
    expect(collectReferences({ resourceType: 'Bundle', entry: [{ resource: { subject: { reference: PATIENT_URN } } }] })).toEqual([]);
    expect(collectReferences({ resourceType: 'Parameters', parameter: [{ resource: { resourceType: 'Bundle', link: { reference: PATIENT_URN } } }] })).toEqual([]);
  });
});

describe('rewriteReferences', () => {
  it('replaces mapped references and narrative links, and nothing else', () => {
    const resource = {
      resourceType: 'Observation',
      subject: { reference: PATIENT_URN, display: PATIENT_URN },
      performer: [{ reference: 'Practitioner/1' }],
      identifier: [{ value: PATIENT_URN }],
      text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml"><a href="${PATIENT_URN}">member</a><img src="${PATIENT_URN}"/><a href="urn:uuid:other">x</a></div>` },
    };
    rewriteReferences(resource, new Map([[PATIENT_URN, 'Patient/123']]));
    expect(resource.subject).toEqual({ reference: 'Patient/123', display: PATIENT_URN });
    expect(resource.performer).toEqual([{ reference: 'Practitioner/1' }]);
    expect(resource.identifier).toEqual([{ value: PATIENT_URN }]);
    expect(resource.text.div).toBe('<div xmlns="http://www.w3.org/1999/xhtml"><a href="Patient/123">member</a><img src="Patient/123"/><a href="urn:uuid:other">x</a></div>');
  });
});

describe('reference kinds', () => {
  it.each([
    ['urn:uuid:1234', true, false],
    ['urn:oid:1.2.3', true, false],
    ['Patient?identifier=a|b', false, true],
    ['Patient/1', false, false],
    ['http://example.org/fhir/Patient?x=1', false, false],
    ['#contained', false, false],
  ])('%s: urn %s, conditional %s', (reference, urn, conditional) => {
    expect(isUrn(reference)).toBe(urn);
    expect(isConditionalReference(reference)).toBe(conditional);
  });
});
