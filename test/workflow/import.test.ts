import type { Coverage, Observation } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { localId, localResource } from '../../src/workflow/import.ts';

const TARGET = { partnerBaseUrl: 'https://old.example/fhir', partnerMemberId: 'm-17', memberId: 'here-1' };

describe('a partner resource as stored here', () => {
  it('takes an id derived from the partner and its id, the same every time', () => {
    expect(localId(TARGET.partnerBaseUrl, 'Observation', 'o1')).toBe(localId(TARGET.partnerBaseUrl, 'Observation', 'o1'));
    expect(localId(TARGET.partnerBaseUrl, 'Observation', 'o1')).not.toBe(localId('https://other.example/fhir', 'Observation', 'o1'));
    expect(localId(TARGET.partnerBaseUrl, 'Observation', 'o1')).toMatch(/^p2p-[0-9a-f]{40}$/);
  });

  it('rewrites references: the member to the member here, the partner\'s resources to their local ids, others as they were', () => {
    const observation: Observation = {
      resourceType: 'Observation',
      id: 'o1',
      meta: { versionId: '7', lastUpdated: '2026-01-01T00:00:00Z', profile: ['http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab'] },
      status: 'final',
      code: { text: 'x' },
      subject: { reference: 'Patient/m-17' },
      encounter: { reference: 'https://old.example/fhir/Encounter/e9' },
      performer: [{ reference: 'Practitioner/p3/_history/2' }, { reference: 'https://elsewhere.example/fhir/Organization/z' }, { reference: '#contained' }],
      basedOn: [{ reference: 'urn:uuid:5f0c1f3e-3b7e-4a43-9a53-9f1d2c1d9b11' }],
    };
    const local = localResource(TARGET, observation) as Observation;
    expect(local.id).toBe(localId(TARGET.partnerBaseUrl, 'Observation', 'o1'));
    expect(local.meta).toEqual({ profile: observation.meta!.profile, source: 'https://old.example/fhir/Observation/o1' });
    expect(local.subject?.reference).toBe('Patient/here-1');
    expect(local.encounter?.reference).toBe(`Encounter/${localId(TARGET.partnerBaseUrl, 'Encounter', 'e9')}`);
    expect(local.performer?.map((p) => p.reference)).toEqual([`Practitioner/${localId(TARGET.partnerBaseUrl, 'Practitioner', 'p3')}`, 'https://elsewhere.example/fhir/Organization/z', '#contained']);
    expect(local.basedOn?.[0].reference).toBe(observation.basedOn![0].reference);
  });

  it('leaves another person (a subscriber) at the partner, by absolute reference, since only the member is imported', () => {
    const coverage: Coverage = { resourceType: 'Coverage', id: 'c1', status: 'active', beneficiary: { reference: 'Patient/m-17' }, subscriber: { reference: 'Patient/m-16' }, payor: [{ reference: 'Organization/plan' }] };
    const local = localResource(TARGET, coverage) as Coverage;
    expect(local.beneficiary.reference).toBe('Patient/here-1');
    expect(local.subscriber?.reference).toBe('https://old.example/fhir/Patient/m-16');
    expect(local.payor[0].reference).toBe(`Organization/${localId(TARGET.partnerBaseUrl, 'Organization', 'plan')}`);
    // The key order the store writes, so a re-import compares equal to the stored version.
    expect(Object.keys(local).slice(0, 3)).toEqual(['resourceType', 'id', 'meta']);
  });
});
