import { isResourceType } from '../definitions.ts';
import { badRequest, FhirError, outcome } from '../errors.ts';
import { parseCount } from '../history.ts';
import { parseElements, parseSummary } from '../representation.ts';
import { type RowSource, type SearchParam, searchParam, searchParamsOf } from './parameters.ts';
import { parseValue, type ValueContext } from './parse-values.ts';
import type { Filter, IncludeRule, Predicate, SearchRequest, SortRule } from './request.ts';
import { splitEscaped, unescapeValue } from './values.ts';

/**
 * Query parameters → SearchRequest (search.html). Pure. Known parameters become filters; result
 * parameters shape the answer; unknown ones are ignored and listed, or rejected when strict
 * (Prefer: handling=strict). Anything malformed is a 400 naming the parameter.
 */
export interface ParseOptions {
  strict: boolean;
  /** Our public base URL: absolute references under it are local. */
  baseUrl: string | undefined;
}

/** Handled by the HTTP layer (http.html#parameters), not search parameters. */
const FORMAT_PARAMS = new Set(['_format', '_pretty']);
/** Chains and _has nest at most this deep (`subject:Patient.organization.name`). */
const MAX_DEPTH = 2;
/** Values in one search, commas included: each becomes bound parameters, and PostgreSQL takes 65,535 per statement. */
const MAX_VALUES = 5000;

const MODIFIERS: Record<string, Set<string>> = {
  string: new Set(['exact', 'contains']),
  token: new Set(['not', 'text', 'of-type']),
  date: new Set(),
  number: new Set(),
  quantity: new Set(),
  reference: new Set(['identifier']),
  uri: new Set(['below', 'above']),
  composite: new Set(),
};

export function parseSearchRequest(resourceType: string, params: URLSearchParams, options: ParseOptions): SearchRequest {
  const request: SearchRequest = {
    resourceType,
    filters: [],
    sort: [],
    count: parseCount(null),
    offset: 0,
    total: undefined,
    summary: undefined,
    elements: undefined,
    include: [],
    revinclude: [],
    applied: [],
    ignored: [],
  };
  let valueCount = 0;
  for (const [key, value] of params) {
    if (FORMAT_PARAMS.has(key)) continue;
    if (key.includes('\0') || value.includes('\0')) throw badRequest('Search parameters may not contain NUL characters');
    valueCount += value.split(',').length;
    if (valueCount > MAX_VALUES) throw new FhirError(400, outcome('error', 'too-costly', `A search may carry at most ${MAX_VALUES} values`));
    if (applyResultParam(request, key, value)) {
      request.applied.push([key, value]);
      continue;
    }
    if (value === '') throw badRequest(`${key} has no value; leave the parameter out to not filter on it`, [key]);
    const filter = parseFilter(resourceType, key, value, { name: key, options, depth: 0 });
    if (filter) {
      request.filters.push(filter);
      request.applied.push([key, value]);
    } else if (options.strict) {
      throw badRequest(`Unknown search parameter "${key.slice(0, 80)}" for ${resourceType} (Prefer: handling=strict)`, [key]);
    } else {
      request.ignored.push(key);
    }
  }
  return request;
}

function applyResultParam(request: SearchRequest, key: string, value: string): boolean {
  switch (key) {
    case '_count':
      request.count = parseCount(value);
      return true;
    case '_offset':
      if (!/^[0-9]{1,9}$/.test(value)) throw badRequest(`_offset must be a non-negative integer; got "${value.slice(0, 20)}"`, ['_offset']);
      request.offset = Number(value);
      return true;
    case '_sort':
      request.sort = parseSort(request.resourceType, value);
      return true;
    case '_total':
      if (value !== 'accurate' && value !== 'estimate' && value !== 'none') throw badRequest(`_total must be accurate, estimate or none; got "${value.slice(0, 20)}"`, ['_total']);
      request.total = value;
      return true;
    case '_summary':
      request.summary = parseSummary(value);
      return true;
    case '_elements':
      request.elements = parseElements(value);
      return true;
    case '_include':
    case '_include:iterate':
    case '_include:recurse':
      request.include.push(parseInclude(request.resourceType, key, value, false));
      return true;
    case '_revinclude':
    case '_revinclude:iterate':
    case '_revinclude:recurse':
      request.revinclude.push(parseInclude(request.resourceType, key, value, true));
      return true;
    default:
      return false;
  }
}

function parseSort(resourceType: string, value: string): SortRule[] {
  return value.split(',').map((raw) => {
    const key = raw.trim();
    const descending = key.startsWith('-');
    const code = descending ? key.slice(1) : key;
    const param = searchParam(resourceType, code);
    if (param?.column) return { column: param.column, descending };
    if (!param?.rows) {
      throw badRequest(`_sort: "${code.slice(0, 60)}" is not a search parameter of ${resourceType} that results can be sorted by`, ['_sort']);
    }
    return { rows: param.rows, descending };
  });
}

function parseInclude(resourceType: string, key: string, value: string, reverse: boolean): IncludeRule {
  const iterate = key.includes(':');
  const bad = (why: string) => badRequest(`${key}=${value.slice(0, 80)}: ${why}`, [key]);
  if (value === '*' && !reverse) return { sourceType: resourceType, refs: referenceRows(resourceType), targetType: undefined, iterate };
  const [sourceType, code, targetType, ...rest] = value.split(':');
  if (rest.length > 0 || code === undefined) throw bad('the form is SourceType:parameter[:TargetType]');
  if (!isResourceType(sourceType)) throw bad(`"${sourceType}" is not a resource type`);
  if (!reverse && !iterate && sourceType !== resourceType) throw bad(`_include follows references of the ${resourceType} matches; use _include:iterate for ${sourceType}`);
  if (targetType !== undefined && !isResourceType(targetType)) throw bad(`"${targetType}" is not a resource type`);
  if (code === '*') return { sourceType, refs: referenceRows(sourceType), targetType, iterate };
  const param = searchParam(sourceType, code);
  if (param?.type !== 'reference' || !param.rows) throw bad(`${sourceType} has no reference search parameter "${code}"`);
  if (targetType !== undefined && param.targets.length > 0 && !param.targets.includes(targetType)) throw bad(`${sourceType}:${code} does not point at ${targetType}`);
  return { sourceType, refs: [param.rows], targetType, iterate };
}

function referenceRows(resourceType: string): RowSource[] {
  return [...searchParamsOf(resourceType).values()].filter((p) => p.type === 'reference' && p.evaluate).map((p) => p.rows as RowSource);
}

/** Where a (possibly nested) parameter is parsed: `name` is the query parameter as the client wrote it, for messages. */
interface Scope {
  name: string;
  options: ParseOptions;
  depth: number;
}

/** One query parameter (or the rest of a chain) → a filter on `resourceType`; undefined when the parameter is unknown there. */
function parseFilter(resourceType: string, key: string, value: string, scope: Scope): Filter | undefined {
  if (key.startsWith('_has:')) return parseHas(resourceType, key, value, scope);
  const dot = key.indexOf('.');
  if (dot > 0) return parseChain(resourceType, key.slice(0, dot), key.slice(dot + 1), value, scope);
  const { name } = scope;
  const colon = key.indexOf(':');
  const code = colon < 0 ? key : key.slice(0, colon);
  const modifier = colon < 0 ? undefined : key.slice(colon + 1);
  const param = searchParam(resourceType, code);
  if (!param) return undefined;
  if (param.column) return parseColumnFilter(param, modifier, value, name);
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw badRequest(`${name} must be true or false`, [name]);
    return { kind: 'missing', present: presenceRows(param), missing: value === 'true' };
  }
  if (param.composite) {
    if (modifier !== undefined) throw unknownModifier(name, modifier);
    return parseComposite(param, value, scope);
  }
  const rows = param.rows as RowSource;
  const type = rows.table;
  let targetType = rows.targetType;
  if (modifier !== undefined && !MODIFIERS[type].has(modifier)) {
    if (type !== 'reference' || !isResourceType(modifier)) throw unknownModifier(name, modifier);
    if (param.targets.length > 0 && !param.targets.includes(modifier)) throw badRequest(`${name}: ${code} does not point at ${modifier}`, [name]);
    targetType = modifier;
  } else if (type === 'reference' && param.targets.length === 1) {
    targetType = param.targets[0];
  }
  const baseUrl = scope.options.baseUrl;
  if (type === 'reference' && modifier === 'identifier') {
    const identifierRows: RowSource = { table: 'token', codes: rows.codes.map((c) => `${c}:identifier`) };
    const context: ValueContext = { name, type: 'token', modifier: undefined, targetType: undefined, baseUrl };
    return { kind: 'index', rows: identifierRows, predicates: values(value, name).map((v) => parseValue(v, context)), negate: false };
  }
  const context: ValueContext = { name, type, modifier, targetType, baseUrl };
  return { kind: 'index', rows, predicates: values(value, name).map((v) => parseValue(v, context)), negate: modifier === 'not' };
}

/** The comma-separated alternatives of a value; an empty one is a mistake, not "anything". */
function values(value: string, name: string): string[] {
  const alternatives = splitEscaped(value, ',');
  if (alternatives.some((v) => v === '')) throw badRequest(`${name} has an empty value between commas`, [name]);
  return alternatives;
}

/**
 * Rows whose presence means the parameter has a value. A stored composite writes its first
 * component only when every component has a value; the AND form needs a row of each component.
 */
function presenceRows(param: SearchParam): RowSource[][] {
  if (param.rows) return [[param.rows]];
  return (param.composite ?? []).map((source) =>
    source.kind === 'and' ? source.components : [{ table: source.components[0].table, codes: [source.components[0].code] }],
  );
}

function unknownModifier(name: string, modifier: string) {
  return badRequest(`${name}: the modifier ":${modifier.slice(0, 40)}" is not supported on this parameter`, [name]);
}

function parseColumnFilter(param: SearchParam, modifier: string | undefined, value: string, name: string): Filter {
  if (modifier !== undefined) throw unknownModifier(name, modifier);
  const alternatives = values(value, name);
  if (param.column === 'id') return { kind: 'column', column: 'id', predicates: alternatives.map((v): Predicate => ({ type: 'id', id: unescapeValue(v) })) };
  const context: ValueContext = { name, type: 'date', modifier: undefined, targetType: undefined, baseUrl: undefined };
  return { kind: 'column', column: 'last_updated', predicates: alternatives.map((v) => parseValue(v, context)) };
}

function parseComposite(param: SearchParam, value: string, scope: Scope): Filter {
  const { name } = scope;
  const sources = param.composite ?? [];
  // Every way a composite is stored has the same component types.
  const types = sources[0].components.map((c) => c.table);
  const alternatives = values(value, name).map((alternative) => {
    const parts = splitEscaped(alternative, '$');
    if (parts.length !== types.length) {
      throw badRequest(`${name} takes ${types.length} components separated by "$" (search.html#composite); got "${alternative.slice(0, 80)}"`, [name]);
    }
    return parts.map((part, i) => {
      if (part === '') throw badRequest(`${name} has an empty component in "${alternative.slice(0, 80)}"`, [name]);
      return parseValue(part, { name, type: types[i], modifier: undefined, targetType: undefined, baseUrl: scope.options.baseUrl });
    });
  });
  return { kind: 'composite', sources, alternatives };
}

function parseChain(resourceType: string, left: string, rest: string, value: string, scope: Scope): Filter | undefined {
  const { name } = scope;
  const [code, typeModifier, ...extra] = left.split(':');
  const param = searchParam(resourceType, code);
  if (!param) return undefined;
  if (!param.rows || param.type !== 'reference' || extra.length > 0) throw badRequest(`${name}: only reference parameters can be chained (search.html#chaining)`, [name]);
  if (scope.depth >= MAX_DEPTH) throw badRequest(`${name}: chains are followed ${MAX_DEPTH} levels deep at most`, [name]);
  let types = param.targets;
  if (typeModifier !== undefined) {
    if (!isResourceType(typeModifier) || (types.length > 0 && !types.includes(typeModifier))) throw badRequest(`${name}: ${code} does not point at "${typeModifier.slice(0, 40)}"`, [name]);
    types = [typeModifier];
  }
  if (types.length === 0) throw badRequest(`${name}: name the target type, as in ${code}:Patient.${rest}`, [name]);
  const targets: { type: string; filter: Filter }[] = [];
  for (const type of types) {
    const filter = parseFilter(type, rest, value, { ...scope, depth: scope.depth + 1 });
    if (filter) targets.push({ type, filter });
  }
  return targets.length > 0 ? { kind: 'chain', rows: param.rows, targets } : undefined;
}

function parseHas(resourceType: string, key: string, value: string, scope: Scope): Filter | undefined {
  const { name } = scope;
  const [, type, code, ...rest] = key.split(':');
  if (code === undefined || rest.length === 0) throw badRequest(`${name}: the form is _has:Type:reference-parameter:parameter=value (search.html#has)`, [name]);
  if (!isResourceType(type)) throw badRequest(`${name}: "${type.slice(0, 40)}" is not a resource type`, [name]);
  if (scope.depth >= MAX_DEPTH) throw badRequest(`${name}: _has nests ${MAX_DEPTH} levels deep at most`, [name]);
  const param = searchParam(type, code);
  if (!param) return undefined;
  if (param.type !== 'reference' || !param.rows) throw badRequest(`${name}: ${type}.${code} is not a reference parameter`, [name]);
  if (param.targets.length > 0 && !param.targets.includes(resourceType)) throw badRequest(`${name}: ${type}.${code} does not point at ${resourceType}`, [name]);
  const filter = parseFilter(type, rest.join(':'), value, { ...scope, depth: scope.depth + 1 });
  return filter ? { kind: 'has', type, rows: param.rows, filter } : undefined;
}
