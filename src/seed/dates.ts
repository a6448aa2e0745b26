/**
 * Calendar days as integers (days since 1970-01-01, UTC): the generator does arithmetic on
 * them and turns them into FHIR dates only when it writes a resource.
 */
const DAY_MS = 86_400_000;

export const YEAR_DAYS = 365.25;

export function dayOf(isoDate: string): number {
  return Math.round(Date.parse(`${isoDate}T00:00:00Z`) / DAY_MS);
}

export function isoDate(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

/** A FHIR dateTime at the given minute of the day (UTC). */
export function isoDateTime(day: number, minuteOfDay: number): string {
  return new Date(day * DAY_MS + minuteOfDay * 60_000).toISOString().replace('.000Z', 'Z');
}

/** The same calendar date `years` later (earlier when negative); 29 February becomes 1 March. */
export function addYears(day: number, years: number): number {
  const date = new Date(day * DAY_MS);
  date.setUTCFullYear(date.getUTCFullYear() + years);
  return Math.round(date.getTime() / DAY_MS);
}

export function yearOf(day: number): number {
  return new Date(day * DAY_MS).getUTCFullYear();
}

/** Whole years of age on `day` for someone born on `birth`. */
export function ageOn(birth: number, day: number): number {
  const b = new Date(birth * DAY_MS);
  const d = new Date(day * DAY_MS);
  const age = d.getUTCFullYear() - b.getUTCFullYear();
  const beforeBirthday = d.getUTCMonth() < b.getUTCMonth() || (d.getUTCMonth() === b.getUTCMonth() && d.getUTCDate() < b.getUTCDate());
  return beforeBirthday ? age - 1 : age;
}

/** The first day of the month `day` falls in. */
export function firstOfMonth(day: number): number {
  const date = new Date(day * DAY_MS);
  return Math.round(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1) / DAY_MS);
}

/** The last day of the month `day` falls in. */
export function lastOfMonth(day: number): number {
  const date = new Date(day * DAY_MS);
  return Math.round(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 0) / DAY_MS);
}
