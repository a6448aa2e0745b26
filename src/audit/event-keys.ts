import { hash } from 'node:crypto';
import type { AuditEvent } from '@medplum/fhirtypes';
import { extractIndexRows } from '../fhir/search/extract.ts';
import type { RowSource } from '../fhir/search/parameters.ts';
import type { Predicate } from '../fhir/search/request.ts';
import { uriAncestors } from '../fhir/search/sql.ts';
import { referenceTarget } from '../fhir/search/values.ts';

/**
 * The search keys of a sealed AuditEvent (audit_index.keys), and the keys a search predicate
 * asks for. Pure. The values come from the same extraction as every other type's search index
 * (src/fhir/search/extract.ts), so a parameter means the same on AuditEvent as elsewhere; each
 * way a search can ask for a value by equality becomes one key:
 * - token `system|code` and `|code` → ['t', code, system | null, value]; `code` → ['t*', code, value];
 *   `system|` → ['ts', code, system]; `:of-type` → ['to', code, type system, type code, value];
 * - a reference to one of our resources (relative, or absolute under a base) → ['r', code, type, id]
 *   and ['r*', code, id] (an id without its type), or ['rb', code, base, type, id] and
 *   ['rb*', code, base, id]; any reference as written → ['ru', code, reference];
 * - uri → ['u', code, value];
 * - a parameter having a value at all (`:missing`) → ['m', code], a reference to a type → ['mt', code, type].
 * Strings (prefix and :contains matches) and the date are kept apart as text and a column.
 * A key is its JSON text; the index stores the MD5 of it as a uuid (keyDigest), which the sealer
 * computes on its thread with the one-shot crypto.hash (23 µs for an event's 60-odd keys, where
 * PostgreSQL's md5() and uuid cast took about 65 µs of the database's CPU), and a search computes
 * the same for its few keys. Keys are Baton's own values and MD5 keeps its preimage resistance,
 * so no value can be made to pass for another's key.
 */
export type Key = string;

/** The one date parameter of AuditEvent (AuditEvent.recorded), kept as audit_index.recorded. */
export const DATE_CODE = 'date';

export interface EventIndexEntry {
  keys: Key[];
  strings: { code: string; value: string; exact: string }[];
}

export function eventIndexEntry(event: AuditEvent & { id: string }): EventIndexEntry {
  const rows = extractIndexRows(event);
  const keys = new Set<Key>();
  const add = (...parts: (string | null)[]) => keys.add(keyOf(parts));
  const present = (code: string) => add('m', code);
  for (const [, , code, , system, value, , typeSystem, typeCode] of rows.token as [string, string, string, unknown, string | null, string | null, unknown, string | null, string | null][]) {
    present(code);
    if (value !== null) {
      add('t', code, system, value);
      add('t*', code, value);
      if (typeSystem !== null && typeCode !== null) add('to', code, typeSystem, typeCode, value);
    }
    if (system !== null) add('ts', code, system);
  }
  for (const [, , code, , targetType, targetId, reference] of rows.reference as [string, string, string, unknown, string | null, string | null, string][]) {
    present(code);
    add('ru', code, reference);
    if (targetType === null || targetId === null) continue;
    add('mt', code, targetType);
    const base = baseOf(reference, targetType, targetId);
    if (base === '') {
      add('r', code, targetType, targetId);
      add('r*', code, targetId);
    } else if (base !== undefined) {
      add('rb', code, base, targetType, targetId);
      add('rb*', code, base, targetId);
    }
  }
  for (const [, , code, , value] of rows.uri as [string, string, string, unknown, string][]) {
    present(code);
    add('u', code, value);
  }
  for (const [, , code] of [...rows.date, ...rows.number, ...rows.quantity]) present(code as string);
  const strings = (rows.string as [string, string, string, unknown, string, string][]).map(([, , code, , value, exact]) => {
    present(code);
    return { code, value, exact };
  });
  return { keys: [...keys], strings };
}

/**
 * The keys any one of which an index row must hold to match `predicate` on the parameter stored
 * as `rows`; an empty list matches nothing. Undefined when the predicate is not an equality the
 * keys answer (token :text, uri :below, strings, numbers and dates).
 */
export function predicateKeys(rows: RowSource, predicate: Predicate, baseUrl: string | undefined): Key[] | undefined {
  const keys: Key[] = [];
  for (const code of rows.codes) {
    const add = (...parts: (string | null)[]) => keys.push(keyOf(parts));
    switch (predicate.type) {
      case 'token':
        if (predicate.code !== undefined) {
          if (predicate.system === undefined) add('t*', code, predicate.code);
          else add('t', code, predicate.system, predicate.code);
        } else if (typeof predicate.system === 'string') {
          add('ts', code, predicate.system);
        }
        break;
      case 'token-of-type':
        add('to', code, predicate.typeSystem, predicate.typeCode, predicate.value);
        break;
      case 'reference': {
        if (predicate.url !== undefined) {
          add('ru', code, predicate.url);
          break;
        }
        const id = predicate.id as string;
        if (rows.targetType !== undefined && predicate.targetType !== undefined && rows.targetType !== predicate.targetType) break;
        const type = predicate.targetType ?? rows.targetType;
        if (type === undefined) {
          add('r*', code, id);
          if (baseUrl) add('rb*', code, baseUrl, id);
        } else {
          add('r', code, type, id);
          if (baseUrl) add('rb', code, baseUrl, type, id);
        }
        break;
      }
      case 'uri':
        if (predicate.mode === 'below') return undefined;
        for (const value of predicate.mode === 'eq' ? [predicate.value] : uriAncestors(predicate.value)) add('u', code, value);
        break;
      default:
        return undefined;
    }
  }
  return keys;
}

/** The key that a parameter stored as `code` has a value; with a target type, a reference to that type. */
export function presenceKey(code: string, targetType?: string): Key {
  return keyOf(targetType === undefined ? ['m', code] : ['mt', code, targetType]);
}

function keyOf(parts: (string | null)[]): Key {
  return JSON.stringify(parts);
}

/** The digest audit_index.keys holds for a key: the MD5 of its text, as a uuid. */
export function keyDigest(key: Key): string {
  const hex = hash('md5', key, 'hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * What precedes `Type/id` in a reference: '' for a relative one, the base URL for an absolute
 * one; undefined when the reference does not end in its target (a URN, a canonical).
 */
function baseOf(reference: string, type: string, id: string): string | undefined {
  if (!referenceTarget(reference)) return undefined;
  const path = reference.replace(HISTORY_SUFFIX, '');
  const target = `${type}/${id}`;
  if (!path.endsWith(target)) return undefined;
  const at = path.length - target.length;
  if (at === 0) return '';
  return path[at - 1] === '/' ? path.slice(0, at - 1) : undefined;
}

const HISTORY_SUFFIX = /\/_history\/[^/]+$/;
