import { existsSync, readFileSync } from 'node:fs';
import type { Coverage, Group, Parameters, Patient, Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { candidateBlockingKeys, queryBlockingKeys } from '../../src/matching/blocking-keys.ts';
import { candidateFromMember, queryFromMemberMatch } from '../../src/matching/from-fhir.ts';
import { defaultPolicy } from '../../src/matching/policy.ts';
import { normalizeCandidate } from '../../src/matching/normalize.ts';
import { resolveMember } from '../../src/matching/resolve.ts';

/*
 * The published HRex/PDex examples and the Inferno PDex kit presets: the example request must
 * find the example member, and the kit's "no match" request must not find anyone.
 */
const FIXTURES = new URL('../../../shared/fixtures/davinci/', import.meta.url);
const fixture = <T extends Resource>(name: string): T => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;
const pdex = <T extends Resource>(name: string) => fixture<T>(`ig/pdex-2.2.0-ci/${name}.json`);

function memberMatchInput(parameters: Parameters): { patient: Patient; coverage: Coverage } {
  const parts = parameters.parameter?.flatMap((p) => (p.name === 'MemberBundle' ? (p.part ?? []) : [p])) ?? [];
  const resource = <T>(name: string) => parts.find((p) => p.name === name)?.resource as T;
  return { patient: resource<Patient>('MemberPatient'), coverage: resource<Coverage>('CoverageToMatch') };
}

describe.skipIf(!existsSync(FIXTURES))('published $member-match examples', () => {
  // The data holder's members: the PDex example Patients with the Coverages naming them beneficiary.
  const population = () => [
    candidateFromMember(pdex<Patient>('Patient-1'), [pdex<Coverage>('Coverage-Coverage1'), pdex<Coverage>('Coverage-883210')]),
    candidateFromMember(pdex<Patient>('Patient-patient-2'), []),
    candidateFromMember(pdex<Patient>('Patient-1001'), []),
    candidateFromMember(pdex<Patient>('Patient-2002'), []),
  ];
  const resolve = (patient: Patient, coverage: Coverage, useCase = 'clinical-history-release') =>
    resolveMember(queryFromMemberMatch(patient, coverage), population().map(normalizeCandidate), { policy: defaultPolicy, useCase });

  it('matches the Inferno preset request to PDex Patient/1 deterministically', () => {
    const { patient, coverage } = memberMatchInput(fixture<Parameters>('inferno/preset-ri-member-match-request.json'));
    const decision = resolve(patient, coverage);
    expect(decision).toMatchObject({ tier: 'deterministic', candidateId: '1' });
    const fields = Object.fromEntries(decision.candidates[0].fields.map((f) => [f.field, f.level]));
    expect(fields).toMatchObject({ identifier: 'exact', family: 'exact', given: 'exact', birthDate: 'exact', address: 'exact', phone: 'exact' });
  });

  it('finds PDex Patient/1 through the blocking keys of the Inferno preset request', () => {
    const { patient, coverage } = memberMatchInput(fixture<Parameters>('inferno/preset-ri-member-match-request.json'));
    const queryKeys = queryBlockingKeys(queryFromMemberMatch(patient, coverage));
    const [appleseed, smith] = population().map((candidate) => candidateBlockingKeys(normalizeCandidate(candidate)));
    expect(queryKeys.filter((key) => appleseed.includes(key))).toEqual(expect.arrayContaining(['id:234567', 'dob:1986-01-01']));
    expect(queryKeys.filter((key) => smith.includes(key))).toEqual([]);
  });

  it('refuses the Inferno "no match" request, although one member shares its member id', () => {
    const { patient, coverage } = memberMatchInput(fixture<Parameters>('inferno/preset-ri-no-member-match-request.json'));
    const decision = resolveMember(queryFromMemberMatch(patient, coverage), population().slice(0, 2).map(normalizeCandidate), { policy: defaultPolicy, useCase: 'coverage-check' });
    expect(decision.tier).toBe('no-match');
    const sharingId = decision.candidates.find((c) => c.candidateId === 'patient-2');
    expect(sharingId?.fields.find((f) => f.field === 'identifier')?.level).toBe('exact');
    expect(sharingId?.status).toBe('excluded');
  });

  it.each([
    ['HRex 1.0.0 member-match request', () => memberMatchInput(fixture<Parameters>('ig/hrex-1.0.0/Parameters-member-match-in.json'))],
    ['PDex multi-member match request', () => memberMatchInput(pdex<Parameters>('Parameters-payer-multi-member-match-in'))],
  ])('matches the %s (Patricia Person) to Patient/1001', (_, input) => {
    const { patient, coverage } = input();
    expect(resolve(patient, coverage)).toMatchObject({ tier: 'deterministic', candidateId: '1001' });
  });

  it('holds for review the PDex example that pairs a male William Smith with a female Patient/2002', () => {
    const output = pdex<Parameters>('Parameters-payer-multi-member-match-out');
    const matched = output.parameter?.find((p) => p.name === 'MatchedMembers')?.resource as Group;
    const william = (matched.contained as Patient[]).find((p) => p.id === '2') as Patient;
    const noCard: Coverage = { resourceType: 'Coverage', status: 'active', beneficiary: { reference: 'Patient/2' }, payor: [{ display: 'Old Health Plan' }] };
    const decision = resolve(william, noCard, 'coverage-check');
    expect(decision.tier).toBe('review');
    expect(decision.reviewCandidateIds).toContain('2002');
    expect(decision.candidates.find((c) => c.candidateId === '2002')?.vetoes).toEqual([{ rule: 'gender-conflict', effect: 'review' }]);
  });

  it('refuses the PDex example non-matched member although it carries Patient/2002’s member id', () => {
    const output = pdex<Parameters>('Parameters-payer-multi-member-match-out');
    const nonMatched = output.parameter?.find((p) => p.name === 'NonMatchedMembers')?.resource as Group;
    const adam = (nonMatched.contained as Patient[])[0];
    const noCard: Coverage = { resourceType: 'Coverage', status: 'active', beneficiary: { reference: 'Patient/3' }, payor: [{ display: 'Old Health Plan' }] };
    expect(resolve(adam, noCard, 'coverage-check').tier).toBe('no-match');
  });
});

describe('FHIR to identity attributes', () => {
  it('reads the card: identifiers, subscriber id (also the person’s own id when relationship is self), dependent, payer', () => {
    const coverage: Coverage = {
      resourceType: 'Coverage',
      status: 'active',
      identifier: [
        { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] }, value: 'W123456789' },
        { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'SN' }] }, value: 'S-77' },
        { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] }, value: 'MRN-1' },
      ],
      subscriberId: 'S-77',
      dependent: '01',
      relationship: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/subscriber-relationship', code: 'self' }] },
      beneficiary: { reference: 'Patient/p' },
      payor: [{ identifier: { system: 'http://hl7.org/fhir/sid/us-npi', value: '9876543210' } }, { reference: 'Organization/x' }],
    };
    const patient: Patient = {
      resourceType: 'Patient',
      id: 'p',
      identifier: [
        { type: { coding: [{ code: 'MB' }] }, value: 'THEIRS-1' },
        { system: 'http://hl7.org/fhir/sid/us-ssn', value: '123-45-6789' },
      ],
      name: [{ family: 'Okafor', given: ['Margaret'] }, { family: 'Eze', given: ['Margaret'], use: 'maiden' }],
      telecom: [{ system: 'phone', value: '217-555-0143' }, { system: 'email', value: 'm@example.org' }],
    };
    const query = queryFromMemberMatch(patient, coverage);
    expect(query.memberIds).toEqual([{ value: 'W123456789', dependent: '01' }, { value: 'S-77' }, { value: 'THEIRS-1', claimed: true }]);
    expect(query.subscriberIds).toEqual([{ value: 'S-77' }, { value: 'S-77' }]);
    expect(query.payers).toEqual([{ system: 'http://hl7.org/fhir/sid/us-npi', value: '9876543210' }]);
    expect(query.phones).toEqual([{ value: '217-555-0143' }]);
    expect(query.names[1]).toMatchObject({ family: 'Eze', historical: true });

    const candidate = candidateFromMember({ ...patient, identifier: [] }, [{ ...coverage, id: 'c1', status: 'cancelled', period: { start: '2020-01-01', end: '2021-12-31' } }]);
    expect(candidate.id).toBe('p');
    expect(candidate.memberIds[0]).toMatchObject({ value: 'W123456789', dependent: '01', source: 'Coverage/c1', historical: true, period: { end: '2021-12-31' } });
    expect(candidate.subscriberIds.map((id) => id.value)).toEqual(['S-77', 'S-77']);
  });
});
