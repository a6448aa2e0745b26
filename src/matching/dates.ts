/** A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD; the date part of a dateTime), validated. */
export interface FhirDate {
  year: number;
  month?: number;
  day?: number;
}

const FHIR_DATE = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T.*)?$/;

export function parseFhirDate(value: string | undefined): FhirDate | undefined {
  const match = value === undefined ? null : FHIR_DATE.exec(value.trim());
  if (!match) return undefined;
  const year = Number(match[1]);
  if (match[2] === undefined) return { year };
  const month = Number(match[2]);
  if (month < 1 || month > 12) return undefined;
  if (match[3] === undefined) return { year, month };
  const day = Number(match[3]);
  if (day < 1 || day > daysInMonth(year, month)) return undefined;
  return { year, month, day };
}

export function formatFhirDate(date: FhirDate): string {
  const parts = [String(date.year).padStart(4, '0')];
  if (date.month !== undefined) parts.push(String(date.month).padStart(2, '0'));
  if (date.day !== undefined) parts.push(String(date.day).padStart(2, '0'));
  return parts.join('-');
}

/**
 * The date with day and month exchanged, when that is also a valid, different date: what a
 * DD/MM form read as MM/DD produces (1986-03-04 ↔ 1986-04-03).
 */
export function swapDayMonth(date: FhirDate): FhirDate | undefined {
  if (date.month === undefined || date.day === undefined || date.day > 12 || date.day === date.month) return undefined;
  return { year: date.year, month: date.day, day: date.month };
}

export function isFullDate(date: FhirDate): date is Required<FhirDate> {
  return date.month !== undefined && date.day !== undefined;
}

export function sameDate(a: FhirDate, b: FhirDate): boolean {
  return a.year === b.year && a.month === b.month && a.day === b.day;
}

/** Whole days between two full dates. */
export function daysBetween(a: Required<FhirDate>, b: Required<FhirDate>): number {
  return Math.abs(Date.UTC(a.year, a.month - 1, a.day) - Date.UTC(b.year, b.month - 1, b.day)) / 86_400_000;
}

/**
 * True when the YYYYMMDD digits differ by one keystroke: one digit replaced (1986 → 1988, 14 →
 * 17) or two neighbours exchanged (1968 → 1986, 12 → 21); or when only the year is off by one
 * (1979 → 1980), the usual slip when a year is worked out from an age.
 */
export function isOneSlipApart(a: Required<FhirDate>, b: Required<FhirDate>): boolean {
  if (a.month === b.month && a.day === b.day && Math.abs(a.year - b.year) === 1) return true;
  const x = formatFhirDate(a).replaceAll('-', '');
  const y = formatFhirDate(b).replaceAll('-', '');
  const differences: number[] = [];
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) differences.push(i);
  if (differences.length === 1) return true;
  if (differences.length !== 2) return false;
  const [i, j] = differences;
  return j === i + 1 && x[i] === y[j] && x[j] === y[i];
}

/** Agreement of two dates as far as the less precise one goes (1986 vs 1986-01-01). */
export function agreeToCommonPrecision(a: FhirDate, b: FhirDate): boolean {
  return a.year === b.year && (a.month === undefined || b.month === undefined || a.month === b.month) && (a.day === undefined || b.day === undefined || a.day === b.day);
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}
