import type { ExplanationOfBenefit } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { withoutFinancials } from '../../src/export/non-financial.ts';

const ADJUDICATION = 'http://terminology.hl7.org/CodeSystem/adjudication';
const category = (code: string) => ({ coding: [{ system: ADJUDICATION, code }] });
const usd = (value: number) => ({ value, currency: 'USD' as const });

const claim: ExplanationOfBenefit = {
  resourceType: 'ExplanationOfBenefit',
  id: 'eob-1',
  meta: { versionId: '1', tag: [{ system: 'urn:example', code: 'kept' }] },
  status: 'active',
  type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
  use: 'claim',
  patient: { reference: 'Patient/p1' },
  created: '2025-01-02',
  insurer: { reference: 'Organization/payer' },
  provider: { reference: 'Organization/clinic' },
  outcome: 'complete',
  insurance: [{ focal: true, coverage: { reference: 'Coverage/c1' } }],
  diagnosis: [{ sequence: 1, diagnosisCodeableConcept: { coding: [{ system: 'http://hl7.org/fhir/sid/icd-10-cm', code: 'I10' }] } }],
  adjudication: [
    { category: category('benefit'), amount: usd(90) },
    { category: { coding: [{ system: 'urn:carin', code: 'billingnetworkstatus' }] }, reason: { coding: [{ system: 'urn:carin', code: 'innetwork' }] } },
  ],
  item: [
    {
      sequence: 1,
      productOrService: { coding: [{ system: 'http://www.ama-assn.org/go/cpt', code: '99213' }] },
      servicedDate: '2025-01-01',
      unitPrice: usd(150),
      factor: 1,
      net: usd(150),
      adjudication: [
        { category: category('submitted'), amount: usd(150) },
        { category: category('copay'), amount: usd(20) },
        { category: { coding: [{ system: 'urn:carin', code: 'allowedunits' }] }, value: 1 },
        { category: category('denialreason'), reason: { coding: [{ system: 'urn:x12', code: '45' }] }, amount: usd(10) },
      ],
      detail: [
        {
          sequence: 1,
          productOrService: { text: 'part' },
          net: usd(5),
          adjudication: [{ category: category('eligible'), amount: usd(5) }],
          subDetail: [{ sequence: 1, productOrService: { text: 'sub' }, unitPrice: usd(1) }],
        },
      ],
    },
  ],
  addItem: [{ productOrService: { text: 'added' }, net: usd(3) }],
  total: [{ category: category('submitted'), amount: usd(150) }],
  payment: { date: '2025-01-20', amount: usd(90) },
  benefitBalance: [{ category: { text: 'medical' } }],
};

describe('withoutFinancials', () => {
  const reduced = withoutFinancials(claim);

  it('leaves out the payment, totals, benefit balances, and every price and amount of the lines', () => {
    expect(reduced).not.toHaveProperty('payment');
    expect(reduced).not.toHaveProperty('total');
    expect(reduced).not.toHaveProperty('benefitBalance');
    const item = reduced.item?.[0];
    expect(item).not.toHaveProperty('unitPrice');
    expect(item).not.toHaveProperty('factor');
    expect(item).not.toHaveProperty('net');
    expect(item?.detail?.[0]).not.toHaveProperty('net');
    expect(item?.detail?.[0]).not.toHaveProperty('adjudication');
    expect(item?.detail?.[0].subDetail?.[0]).toEqual({ sequence: 1, productOrService: { text: 'sub' } });
    expect(reduced.addItem).toEqual([{ productOrService: { text: 'added' } }]);
    expect(JSON.stringify(reduced)).not.toMatch(/"amount"|"currency"/);
  });

  it('keeps adjudications that carry a reason or a value, without their amounts, and drops those that were only an amount', () => {
    expect(reduced.item?.[0].adjudication).toEqual([
      { category: { coding: [{ system: 'urn:carin', code: 'allowedunits' }] }, value: 1 },
      { category: category('denialreason'), reason: { coding: [{ system: 'urn:x12', code: '45' }] } },
    ]);
    expect(reduced.adjudication).toEqual([claim.adjudication?.[1]]);
  });

  it('keeps everything else (services, diagnoses, coverage, parties) and tags the claim SUBSETTED', () => {
    const { payment: _p, total: _t, benefitBalance: _b, item: _i, addItem: _a, adjudication: _j, meta: _m, ...rest } = claim;
    expect(reduced).toMatchObject(rest);
    expect(reduced.item?.[0]).toMatchObject({ sequence: 1, productOrService: claim.item?.[0].productOrService, servicedDate: '2025-01-01' });
    expect(reduced.meta).toEqual({
      versionId: '1',
      tag: [
        { system: 'urn:example', code: 'kept' },
        { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' },
      ],
    });
  });

  it('leaves a prior authorization as it is, and does not change what it was given', () => {
    const priorAuth = { ...claim, use: 'preauthorization' as const };
    expect(withoutFinancials(priorAuth)).toBe(priorAuth);
    expect(claim.payment).toBeDefined();
    expect(claim.item?.[0].net).toBeDefined();
  });
});
