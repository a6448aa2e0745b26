import type { Random } from './random.ts';
import { RATES } from './rates.ts';
import type { Gender, SeedTables } from './tables.ts';

/** A family name: mostly from the frequency table (common names dominate), sometimes rare, sometimes compound. */
export function drawSurname(rng: Random, tables: SeedTables): string {
  if (rng.chance(RATES.rareSurname)) return rng.pick(tables.rareFirstParts) + rng.pick(tables.rareLastParts);
  const surname = tables.surnames.draw(rng);
  if (!tables.compoundCapable.has(surname) || !rng.chance(RATES.compoundSurname)) return surname;
  const second = tables.compoundSurnames.draw(rng);
  return second === surname ? surname : `${surname} ${second}`;
}

/** A family name other than `other`: someone's earlier or later name. */
export function drawOtherSurname(rng: Random, tables: SeedTables, other: string): string {
  let surname = drawSurname(rng, tables);
  while (surname === other) surname = drawSurname(rng, tables);
  return surname;
}

/** A first name as fashionable in the birth year, none of `avoid`, starting with `initial` when asked (best effort). */
function drawFirstName(rng: Random, tables: SeedTables, gender: Gender, birthYear: number, avoid: ReadonlySet<string> = new Set(), initial?: string): string {
  const table = tables.givenNames(gender, birthYear);
  let name = table.draw(rng);
  for (let attempt = 0; attempt < 40 && (avoid.has(name) || (initial !== undefined && name[0] !== initial)); attempt++) name = table.draw(rng);
  // An initial the table rarely offers is given up rather than repeating a sibling's name.
  for (let attempt = 0; attempt < 40 && avoid.has(name); attempt++) name = table.draw(rng);
  return name;
}

/** First name, then a middle name or initial when the person has one. */
export function drawGivenNames(rng: Random, tables: SeedTables, gender: Gender, birthYear: number, avoid?: ReadonlySet<string>, initial?: string): string[] {
  const first = drawFirstName(rng, tables, gender, birthYear, avoid, initial);
  const middleKind = rng.next();
  if (middleKind < RATES.middleName) return [first, drawFirstName(rng, tables, gender, birthYear, new Set([first]))];
  if (middleKind < RATES.middleName + RATES.middleInitial) return [first, drawFirstName(rng, tables, gender, birthYear, new Set([first]))[0]];
  return [first];
}
