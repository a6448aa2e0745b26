import type { Organization } from '@medplum/fhirtypes';
import type { Config } from '../config.ts';
import { type FhirContext, update } from './interactions.ts';

/** The id of the Organization that stands for the payer this Baton serves. */
export const OWN_ORGANIZATION_ID = 'baton-payer';

/** Ensures the payer's own Organization matches configuration (a no-op when unchanged). */
export async function ensureOwnOrganization(ctx: FhirContext, payer: Config['payer']): Promise<Organization> {
  const organization: Organization = {
    resourceType: 'Organization',
    id: OWN_ORGANIZATION_ID,
    active: true,
    type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'pay', display: 'Payer' }] }],
    name: payer.name,
    identifier: payer.identifiers.map((i) => ({ system: i.system, value: i.value })),
  };
  await update(ctx, 'Organization', OWN_ORGANIZATION_ID, organization);
  return organization;
}
