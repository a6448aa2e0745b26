import type { Resource } from '@medplum/fhirtypes';
import type { TypedItem } from './fhirpath.ts';
import { type SearchParam, searchParamsOf } from './parameters.ts';
import { canonicalUrl, dateRange, indexable, normalizeString, OPEN_END, OPEN_START, referenceTarget } from './values.ts';

/**
 * What a resource puts in the search index: for every SearchParameter of its type, the values
 * its expression selects, converted to the rows of the sp_* table of the parameter's type
 * (search.html, "Search Parameter Types"). Pure: the writer stores what this returns.
 *
 * Every row starts with resource_type, resource_id, code and grp (the element instance of a
 * composite's components; null otherwise), followed by the table's own columns in the order
 * of INDEX_COLUMNS.
 */
export type Cell = string | number | null;
export type Row = Cell[];
export type IndexTable = 'string' | 'token' | 'date' | 'number' | 'quantity' | 'reference' | 'uri';
export type IndexRows = Record<IndexTable, Row[]>;

/** Column names and PostgreSQL types after the common four, per table. */
export const INDEX_COLUMNS: Record<IndexTable, [string, string][]> = {
  string: [
    ['value', 'text'],
    ['exact', 'text'],
  ],
  token: [
    ['system', 'text'],
    ['value', 'text'],
    ['text', 'text'],
    ['type_system', 'text'],
    ['type_code', 'text'],
  ],
  date: [
    ['start', 'timestamptz'],
    ['end', 'timestamptz'],
  ],
  number: [
    ['low', 'numeric'],
    ['high', 'numeric'],
  ],
  quantity: [
    ['low', 'numeric'],
    ['high', 'numeric'],
    ['system', 'text'],
    ['unit_code', 'text'],
    ['unit', 'text'],
  ],
  reference: [
    ['target_type', 'text'],
    ['target_id', 'text'],
    ['reference', 'text'],
  ],
  uri: [['value', 'text']],
};

export const INDEX_TABLES = Object.keys(INDEX_COLUMNS) as IndexTable[];

export function emptyRows(): IndexRows {
  return { string: [], token: [], date: [], number: [], quantity: [], reference: [], uri: [] };
}

const indexedByType = new Map<string, SearchParam[]>();

function indexedParams(resourceType: string): SearchParam[] {
  let params = indexedByType.get(resourceType);
  if (!params) {
    params = [...searchParamsOf(resourceType).values()].filter((p) => p.evaluate !== undefined);
    indexedByType.set(resourceType, params);
  }
  return params;
}

/** Appends the index rows of `resource` (which carries its id) to `rows`. */
export function extractIndexRows(resource: Resource & { id: string }, rows: IndexRows = emptyRows()): IndexRows {
  const key: RowKey = { type: resource.resourceType, id: resource.id };
  const root: TypedItem[] = [{ type: resource.resourceType, value: resource }];
  let grp = 0;
  for (const param of indexedParams(resource.resourceType)) {
    const items = (param.evaluate as NonNullable<SearchParam['evaluate']>)(root, resource);
    if (items.length === 0) continue;
    if (param.components) {
      for (const group of items) {
        if (addComposite(rows, key, param, group, grp, resource)) grp++;
      }
    } else {
      addValues(rows, key, param.type as IndexTable, param.code, null, items);
    }
  }
  return rows;
}

interface RowKey {
  type: string;
  id: string;
}

/** One element instance of a composite: rows only when every component has a value, else no combination exists. */
function addComposite(rows: IndexRows, key: RowKey, param: SearchParam, group: TypedItem, grp: number, resource: Resource): boolean {
  const pending = emptyRows();
  for (const component of param.components ?? []) {
    const values = component.evaluatorFor(group.type)([group], resource);
    if (addValues(pending, key, component.type, component.code, grp, values) === 0) return false;
  }
  for (const table of INDEX_TABLES) for (const row of pending[table]) rows[table].push(row);
  return true;
}

/** Converts typed values to rows of the parameter type's table; returns how many rows were added. */
function addValues(rows: IndexRows, key: RowKey, type: IndexTable, code: string, grp: number | null, items: TypedItem[]): number {
  const table = rows[type];
  const before = table.length;
  const push = (...cells: Cell[]): void => {
    table.push([key.type, key.id, code, grp, ...cells]);
  };
  for (const item of items) {
    switch (type) {
      case 'string':
        for (const text of stringsOf(item)) push(indexable(normalizeString(text)), text);
        break;
      case 'token':
        tokensOf(item, push);
        break;
      case 'date':
        for (const range of datesOf(item)) push(range[0], range[1]);
        break;
      case 'number': {
        const range = numberOf(item);
        if (range) push(range[0], range[1]);
        break;
      }
      case 'quantity':
        quantityOf(item, push);
        break;
      case 'reference':
        referenceOf(item, push, (...cells) => rows.token.push([key.type, key.id, `${code}:identifier`, grp, ...cells]));
        break;
      case 'uri':
        if (typeof item.value === 'string') push(indexable(item.value));
        break;
    }
  }
  return table.length - before;
}

function stringsOf(item: TypedItem): string[] {
  const v = item.value;
  if (typeof v === 'string') return [v];
  if (typeof v !== 'object' || v === null) return [];
  if (item.type === 'HumanName') return texts(v.text, v.family, v.given, v.prefix, v.suffix);
  if (item.type === 'Address') return texts(v.text, v.line, v.city, v.district, v.state, v.postalCode, v.country);
  return [];
}

function texts(...parts: unknown[]): string[] {
  const out: string[] = [];
  for (const part of parts) {
    if (typeof part === 'string' && part) out.push(part);
    else if (Array.isArray(part)) for (const p of part) if (typeof p === 'string' && p) out.push(p);
  }
  return out;
}

const str = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null);
const tokenText = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? normalizeString(value) : null);
const tokenValue = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? indexable(value) : null);

/** Token rows are (system, value, text, type_system, type_code) (search.html#token). */
function tokensOf(item: TypedItem, push: (...cells: Cell[]) => void): void {
  const v = item.value;
  switch (item.type) {
    case 'Coding':
      pushCoding(v, push);
      return;
    case 'CodeableConcept': {
      // :text matches CodeableConcept.text or a Coding.display: the text rides on each coding's row.
      const codings: { system?: string; code?: string; display?: string }[] = v.coding ?? [];
      const text = tokenText(v.text);
      if (codings.length === 0 && text !== null) push(null, null, text, null, null);
      for (const coding of codings) pushCoding(coding, push, text);
      return;
    }
    case 'Identifier': {
      const system = tokenValue(v.system);
      const value = tokenValue(v.value);
      const typeCodings: { system?: string; code?: string }[] = v.type?.coding ?? [];
      const text = tokenText(v.type?.text);
      if (system === null && value === null && text === null && typeCodings.length === 0) return;
      if (typeCodings.length === 0) push(system, value, text, null, null);
      for (const t of typeCodings) push(system, value, text, tokenValue(t.system), tokenValue(t.code));
      return;
    }
    case 'ContactPoint':
      if (str(v.value)) push(tokenValue(v.system), tokenValue(v.value), null, null, null);
      return;
    default:
      if (typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') push(null, indexable(String(v)), null, null, null);
  }
}

function pushCoding(coding: { system?: string; code?: string; display?: string } | undefined, push: (...cells: Cell[]) => void, conceptText: string | null = null): void {
  if (!coding) return;
  const system = tokenValue(coding.system);
  const code = tokenValue(coding.code);
  const display = tokenText(coding.display);
  const text = display !== null && conceptText !== null && display !== conceptText ? `${display} ${conceptText}` : (display ?? conceptText);
  if (system !== null || code !== null || text !== null) push(system, code, text, null, null);
}

function datesOf(item: TypedItem): [string, string][] {
  const v = item.value;
  if (typeof v === 'string') {
    const range = dateRange(v);
    return range ? [[range.start, range.end]] : [];
  }
  if (typeof v !== 'object' || v === null) return [];
  if (item.type === 'Period') {
    const start = typeof v.start === 'string' ? dateRange(v.start)?.start : undefined;
    const end = typeof v.end === 'string' ? dateRange(v.end)?.end : undefined;
    return start || end ? [[start ?? OPEN_START, end ?? OPEN_END]] : [];
  }
  if (item.type === 'Timing') {
    const out: [string, string][] = [];
    for (const event of v.event ?? []) {
      const range = typeof event === 'string' ? dateRange(event) : undefined;
      if (range) out.push([range.start, range.end]);
    }
    return out;
  }
  return [];
}

const num = (value: unknown): string | null => (typeof value === 'number' && Number.isFinite(value) ? String(value) : null);

function numberOf(item: TypedItem): [string | null, string | null] | undefined {
  const v = item.value;
  if (typeof v === 'number') return num(v) === null ? undefined : [num(v), num(v)];
  if (typeof v !== 'object' || v === null) return undefined;
  if (item.type === 'Range') {
    const low = num(v.low?.value);
    const high = num(v.high?.value);
    return low === null && high === null ? undefined : [low, high];
  }
  const value = num(v.value);
  return value === null ? undefined : [value, value];
}

const ISO_4217 = 'urn:iso:std:iso:4217';

/** Quantity rows are (low, high, system, unit_code, unit); a Range stores its two ends with the low end's unit. */
function quantityOf(item: TypedItem, push: (...cells: Cell[]) => void): void {
  const v = item.value;
  if (typeof v === 'number') {
    if (num(v) !== null) push(num(v), num(v), null, null, null);
    return;
  }
  if (typeof v !== 'object' || v === null) return;
  if (item.type === 'Range') {
    const low = num(v.low?.value);
    const high = num(v.high?.value);
    const unit = v.low ?? v.high ?? {};
    if (low !== null || high !== null) push(low, high, str(unit.system), str(unit.code), str(unit.unit));
    return;
  }
  const value = num(v.value);
  if (value === null) return;
  if (item.type === 'Money') push(value, value, ISO_4217, str(v.currency), str(v.currency));
  else push(value, value, str(v.system), str(v.code), str(v.unit));
}

/** Reference rows are (target_type, target_id, reference); an identifier-only reference becomes a `<code>:identifier` token. */
function referenceOf(item: TypedItem, push: (...cells: Cell[]) => void, pushIdentifier: (...cells: Cell[]) => void): void {
  const v = item.value;
  if (typeof v === 'string') {
    if (v) push(null, null, indexable(canonicalUrl(v)));
    return;
  }
  if (typeof v !== 'object' || v === null) return;
  if (typeof v.resourceType === 'string') {
    if (typeof v.id === 'string') push(v.resourceType, v.id, `${v.resourceType}/${v.id}`);
    return;
  }
  if (typeof v.reference === 'string' && v.reference) {
    const target = referenceTarget(v.reference);
    push(target?.type ?? null, target?.id ?? null, indexable(v.reference));
  }
  const identifier = v.identifier;
  if (identifier && (str(identifier.system) || str(identifier.value))) {
    const typeCoding = identifier.type?.coding?.[0];
    pushIdentifier(tokenValue(identifier.system), tokenValue(identifier.value), null, tokenValue(typeCoding?.system), tokenValue(typeCoding?.code));
  }
}
