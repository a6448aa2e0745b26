import { isResourceType } from '../definitions.ts';

/**
 * Value rules shared by the indexer (what is stored) and the query builder (what is compared),
 * so both sides normalize the same way.
 */

/** String search is case- and accent-insensitive (search.html#string): "Müller" is found by "muller". */
export function normalizeString(text: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(text) ? text.toLowerCase() : text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

/**
 * B-tree entries are limited to about 2,700 bytes: indexed text is cut to 1,000 UTF-8 bytes, and
 * search values go through the same cut so long values still compare equal.
 */
export function indexable(text: string): string {
  if (text.length <= 250) return text;
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= 1000) return text;
  return bytes.subarray(0, 1000).toString('utf8').replace(/\uFFFD$/, '');
}

/** An inclusive instant range in ISO form; open ends are the PostgreSQL timestamps ±infinity. */
export interface InstantRange {
  start: string;
  end: string;
}

export const OPEN_START = '-infinity';
export const OPEN_END = 'infinity';

const DATE_TIME = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/**
 * The instants a date, dateTime or instant covers at its precision (search.html#date):
 * "2020" is all of 2020, "2020-05-17T10:00:00Z" is that second. Times without a zone are UTC.
 * Undefined when the text is not a valid date.
 */
export function dateRange(text: string): InstantRange | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, fraction, zone] = m;
  const year = Number(y);
  const month = mo === undefined ? 1 : Number(mo);
  const day = d === undefined ? 1 : Number(d);
  const hour = h === undefined ? 0 : Number(h);
  const minute = mi === undefined ? 0 : Number(mi);
  const second = s === undefined ? 0 : Number(s);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) return undefined;
  const digits = fraction ?? '';
  const ms = digits ? Number(digits.slice(0, 3).padEnd(3, '0')) : 0;
  const offsetMinutes = zone === undefined || zone === 'Z' ? 0 : (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)));
  if (zone !== undefined && zone !== 'Z' && (Number(zone.slice(1, 3)) > 14 || Number(zone.slice(4, 6)) > 59)) return undefined;
  const start = utc(year, month, day, hour, minute, second, ms) - offsetMinutes * 60_000;
  if (start < FIRST_INSTANT) return undefined;
  let end: number;
  if (mo === undefined) end = utc(year + 1, 1, 1, 0, 0, 0, 0);
  else if (d === undefined) end = utc(year + (month === 12 ? 1 : 0), month === 12 ? 1 : month + 1, 1, 0, 0, 0, 0);
  else if (h === undefined) end = start + 86_400_000;
  else if (s === undefined) end = start + 60_000;
  else end = start + (digits.length >= 3 ? 1 : 10 ** (3 - digits.length));
  if (end - 1 > LAST_INSTANT) return undefined;
  return { start: new Date(start).toISOString(), end: new Date(end - 1).toISOString() };
}

/** PostgreSQL timestamps (and FHIR dates) run from year 1 to year 9999 here. */
export const FIRST_INSTANT = utc(1, 1, 1, 0, 0, 0, 0);
export const LAST_INSTANT = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

function daysInMonth(year: number, month: number): number {
  return new Date(utc(year, month + 1, 1, 0, 0, 0, 0) - 86_400_000).getUTCDate();
}

/** Date.UTC maps years 0-99 to 1900-1999; FHIR years are literal. */
function utc(year: number, month: number, day: number, hour: number, minute: number, second: number, ms: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  return date.getTime();
}

/** Type and id of a `Type/id` or `…/Type/id[/_history/v]` reference; undefined for URNs, `#contained` and the like. */
export function referenceTarget(reference: string): { type: string; id: string } | undefined {
  const m = /^(?:[a-z][a-z0-9+.-]*:\/\/.*\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(reference);
  if (!m || !isResourceType(m[1])) return undefined;
  return { type: m[1], id: m[2] };
}

/** A canonical's version (`url|1.0`) is not part of what it names. */
export function canonicalUrl(value: string): string {
  const bar = value.indexOf('|');
  return bar < 0 ? value : value.slice(0, bar);
}

/**
 * Splits a search value on an unescaped separator (`,` between alternatives, `|` between
 * system and code, `$` between composite components) and unescapes the parts (search.html#escaping).
 */
export function splitEscaped(text: string, separator: ',' | '|' | '$', limit = Infinity): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      const next = text[i + 1];
      // Only the separators are unescaped here; other escapes stay for the next split.
      current += next === separator ? next : c + next;
      i++;
    } else if (c === separator && parts.length < limit - 1) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

/** Removes the escapes left by splitEscaped once a value is final. */
export function unescapeValue(text: string): string {
  return text.replace(/\\([\\,|$])/g, '$1');
}
