import type { Coding, ExplanationOfBenefit, ExplanationOfBenefitItemAdjudication } from '@medplum/fhirtypes';

/**
 * A claim as PDex payer-to-payer exchange hands it over: its clinical and service content
 * without provider remittances and enrollee cost-sharing (CMS-0057-F; the "non-financial" EOBs
 * of CARIN for Blue Button's Basis profiles). Left out: the payment, the totals, the benefit
 * balances, every line's unit price, factor and net, and every adjudication's amount; an
 * adjudication left with nothing but its category (a submitted or copay amount) goes too,
 * while one carrying a reason (network status, denial reason) or a value (allowed units)
 * stays. Only claims (`use` claim) are reduced: a prior authorization is not a payment record.
 * The result is tagged SUBSETTED, as FHIR asks of a resource served with elements left out.
 */
export function withoutFinancials(eob: ExplanationOfBenefit): ExplanationOfBenefit {
  if (eob.use !== 'claim') return eob;
  const { payment: _payment, total: _total, benefitBalance: _benefitBalance, ...kept } = eob;
  return {
    ...kept,
    meta: { ...eob.meta, tag: [...(eob.meta?.tag ?? []).filter((tag) => tag.code !== SUBSETTED.code || tag.system !== SUBSETTED.system), SUBSETTED] },
    ...(eob.adjudication ? optional('adjudication', adjudications(eob.adjudication)) : {}),
    ...(eob.item ? { item: eob.item.map(line) } : {}),
    ...(eob.addItem ? { addItem: eob.addItem.map(line) } : {}),
  };
}

const SUBSETTED: Coding = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' };

interface Line {
  unitPrice?: unknown;
  factor?: unknown;
  net?: unknown;
  adjudication?: ExplanationOfBenefitItemAdjudication[];
  detail?: Line[];
  subDetail?: Line[];
}

/** A line (item, added item, their details and sub-details) without its prices and its adjudications' amounts. */
function line<T extends Line>(item: T): T {
  const { unitPrice: _unitPrice, factor: _factor, net: _net, adjudication, detail, subDetail, ...kept } = item;
  return {
    ...kept,
    ...(adjudication ? optional('adjudication', adjudications(adjudication)) : {}),
    ...(detail ? { detail: detail.map(line) } : {}),
    ...(subDetail ? { subDetail: subDetail.map(line) } : {}),
  } as T;
}

function adjudications(list: ExplanationOfBenefitItemAdjudication[]): ExplanationOfBenefitItemAdjudication[] {
  return list.flatMap(({ amount: _amount, ...kept }) => (kept.reason !== undefined || kept.value !== undefined ? [kept] : []));
}

/** `{ [name]: list }`, or nothing for an empty list (FHIR has no empty arrays). */
function optional<K extends string, T>(name: K, list: T[]): { [P in K]?: T[] } {
  return (list.length > 0 ? { [name]: list } : {}) as { [P in K]?: T[] };
}
