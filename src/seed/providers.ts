import type { Organization } from '@medplum/fhirtypes';
import { drawAddress, drawPhone } from './contact.ts';
import { npi } from './identifiers.ts';
import { Random } from './random.ts';
import type { SeedTables } from './tables.ts';

/** The providers that bill the population's claims: Organization ids, clinics and hospitals apart. */
export interface ProviderDirectory {
  clinics: string[];
  hospitals: string[];
}

/** One provider per 250 members, at least four and at most 200; every fourth is a hospital. */
function providerCount(members: number): number {
  return Math.min(200, Math.max(4, Math.ceil(members / 250)));
}

const CLINIC_KINDS = ['Family Medicine', 'Internal Medicine', 'Pediatrics', 'Primary Care Associates', 'Medical Group', 'Health Center'];
const HOSPITAL_KINDS = ['General Hospital', 'Regional Medical Center', 'Community Hospital', 'Memorial Hospital'];

export function providerOrganizations(seed: number, idPrefix: string, members: number, tables: SeedTables): { organizations: Organization[]; directory: ProviderDirectory } {
  const organizations: Organization[] = [];
  const directory: ProviderDirectory = { clinics: [], hospitals: [] };
  for (let k = 1; k <= providerCount(members); k++) {
    const rng = new Random(seed, idPrefix, 'provider', k);
    const hospital = k % 4 === 1;
    const city = tables.cities.draw(rng);
    const address = drawAddress(rng, tables, city);
    const id = `${idPrefix}-provider-${k}`;
    const name = hospital ? `${city.city} ${rng.pick(HOSPITAL_KINDS)}` : `${rng.chance(0.5) ? city.city : rng.pick(tables.streets)} ${rng.pick(CLINIC_KINDS)}`;
    organizations.push({
      resourceType: 'Organization',
      id,
      identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: npi(rng.int(100_000_000, 199_999_999)) }],
      active: true,
      type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'prov', display: 'Healthcare Provider' }] }],
      name,
      telecom: [{ system: 'phone', value: drawPhone(rng, city), use: 'work' }],
      address: [{ use: 'work', line: address.line, city: address.city, state: address.state, postalCode: address.postalCode }],
    });
    (hospital ? directory.hospitals : directory.clinics).push(id);
  }
  return { organizations, directory };
}
