import type { Random } from './random.ts';
import { RATES } from './rates.ts';
import type { City, SeedTables } from './tables.ts';

/** A US postal address as USPS Publication 28 writes it (abbreviated suffixes and units). */
export interface StreetAddress {
  line: string[];
  city: string;
  state: string;
  postalCode: string;
}

/** House numbers are mostly short: log-uniform between 1 and 19,999. */
function houseNumber(rng: Random): number {
  return Math.max(1, Math.floor(Math.exp(rng.between(0, Math.log(20_000)))));
}

export function drawAddress(rng: Random, tables: SeedTables, city: City = tables.cities.draw(rng)): StreetAddress {
  const directional = rng.chance(RATES.directional) ? `${rng.pick(tables.directionals)} ` : '';
  const line = [`${houseNumber(rng)} ${directional}${rng.pick(tables.streets)} ${tables.suffixes.draw(rng)}`];
  if (rng.chance(RATES.unit)) {
    const designator = tables.units.draw(rng);
    const unit = rng.chance(0.3) ? `${rng.int(1, 20)}${String.fromCharCode(65 + rng.int(0, 5))}` : String(rng.int(1, 450));
    line.push(designator === '#' ? `# ${unit}` : `${designator} ${unit}`);
  }
  const zip5 = `${rng.pick(city.zip3)}${String(rng.int(1, 99)).padStart(2, '0')}`;
  const postalCode = rng.chance(RATES.zipPlus4) ? `${zip5}-${String(rng.int(1, 9999)).padStart(4, '0')}` : zip5;
  return { line, city: city.city, state: city.state, postalCode };
}

/** A NANP number in one of the city's area codes: exchange 2-9XX, never N11 or 555. */
export function drawPhone(rng: Random, city: City): string {
  let exchange = rng.int(200, 999);
  while (exchange % 100 === 11 || exchange === 555) exchange = rng.int(200, 999);
  return `${rng.pick(city.areaCodes)}-${exchange}-${String(rng.int(0, 9999)).padStart(4, '0')}`;
}

/** Addresses on reserved example domains only (RFC 2606), so no real mailbox is ever named. */
const EMAIL_DOMAINS = ['example.com', 'example.net', 'example.org'];

export function drawEmail(rng: Random, given: string, family: string): string {
  const clean = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');
  const first = clean(given);
  const last = clean(family);
  const styles = [`${first}.${last}`, `${first}${last}${rng.int(1, 99)}`, `${first[0]}${last}`, `${first}_${last}`, `${last}${first[0]}${rng.int(10, 99)}`];
  return `${rng.pick(styles)}@${rng.pick(EMAIL_DOMAINS)}`;
}
