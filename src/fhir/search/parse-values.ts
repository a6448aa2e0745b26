import { badRequest } from '../errors.ts';
import type { ParamType } from './parameters.ts';
import type { Predicate, Prefix } from './request.ts';
import { canonicalUrl, dateRange, indexable, normalizeString, referenceTarget, splitEscaped, unescapeValue } from './values.ts';

/**
 * One search value (one of the comma-separated alternatives) → a predicate, per parameter type
 * (search.html "Search Parameter Types"). Malformed values are 400s naming the parameter.
 */
export interface ValueContext {
  /** The parameter as the client wrote it, for messages. */
  name: string;
  type: Exclude<ParamType, 'composite'>;
  modifier: string | undefined;
  /** Reference parameters: the `:Type` modifier or the single target type. */
  targetType: string | undefined;
  baseUrl: string | undefined;
}

const PREFIXES = new Set<Prefix>(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);

export function parseValue(raw: string, ctx: ValueContext): Predicate {
  switch (ctx.type) {
    case 'string':
      return { type: 'string', mode: ctx.modifier === 'exact' ? 'exact' : ctx.modifier === 'contains' ? 'contains' : 'prefix', value: stringValue(raw, ctx) };
    case 'token':
      return tokenValue(raw, ctx);
    case 'date':
      return dateValue(raw, ctx.name);
    case 'number':
      return { type: 'number', ...numberValue(raw, ctx.name) };
    case 'quantity':
      return quantityValue(raw, ctx.name);
    case 'reference':
      return referenceValue(raw, ctx);
    case 'uri':
      return { type: 'uri', mode: ctx.modifier === 'below' ? 'below' : ctx.modifier === 'above' ? 'above' : 'eq', value: indexable(unescapeValue(raw)) };
  }
}

function stringValue(raw: string, ctx: ValueContext): string {
  const value = unescapeValue(raw);
  return ctx.modifier === 'exact' ? value : indexable(normalizeString(value));
}

function tokenValue(raw: string, ctx: ValueContext): Predicate {
  if (ctx.modifier === 'text') return { type: 'token-text', text: normalizeString(unescapeValue(raw)) };
  if (ctx.modifier === 'of-type') {
    const parts = splitEscaped(raw, '|');
    if (parts.length !== 3 || parts.some((p) => p === '')) {
      throw badRequest(`${ctx.name} takes type-system|type-code|value (search.html#token); got "${raw.slice(0, 80)}"`, [ctx.name]);
    }
    const [typeSystem, typeCode, value] = parts.map((p) => indexable(unescapeValue(p)));
    return { type: 'token-of-type', typeSystem, typeCode, value };
  }
  const parts = splitEscaped(raw, '|', 2);
  if (parts.length === 1) return { type: 'token', system: undefined, code: indexable(unescapeValue(parts[0])) };
  const [system, code] = parts.map((p) => unescapeValue(p));
  if (system === '' && code === '') throw badRequest(`${ctx.name} needs a system or a code around "|"`, [ctx.name]);
  return { type: 'token', system: system === '' ? null : indexable(system), code: code === '' ? undefined : indexable(code) };
}

function splitPrefix(raw: string, name: string, what: string): [Prefix, string] {
  const m = /^([a-z]{2})?(.*)$/s.exec(raw) as RegExpExecArray;
  if (m[1] === undefined) return ['eq', raw];
  if (!PREFIXES.has(m[1] as Prefix)) throw badRequest(`${name}: "${m[1]}" is not a search prefix (eq ne gt lt ge le sa eb ap) for a ${what}`, [name]);
  return [m[1] as Prefix, m[2]];
}

function dateValue(raw: string, name: string): Predicate {
  const [prefix, text] = splitPrefix(raw, name, 'date');
  const range = dateRange(text);
  if (!range) throw badRequest(`${name} must be a date such as 2024, 2024-05, 2024-05-01 or 2024-05-01T10:00:00Z, optionally prefixed (ge2024); got "${raw.slice(0, 60)}"`, [name]);
  return { type: 'date', prefix, range };
}

const DECIMAL = /^([+-]?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/** A number and its implicit precision: "100" means [99.5, 100.5), "1e2" means [50, 150) (search.html#number). */
function numberValue(raw: string, name: string): { prefix: Prefix; value: string; half: string } {
  const [prefix, text] = splitPrefix(raw, name, 'number');
  const m = DECIMAL.exec(text);
  if (!m || text.length > 40) throw badRequest(`${name} must be a number such as 5.4 or 1e3, optionally prefixed (gt5.4); got "${raw.slice(0, 60)}"`, [name]);
  const exponent = Number(m[4] ?? '0') - (m[3]?.length ?? 0);
  // PostgreSQL numerics keep at most 16,383 digits after the point.
  if (Math.abs(exponent) > 1000) throw badRequest(`${name}: ${text.slice(0, 40)} is out of range`, [name]);
  return { prefix, value: text, half: `5e${exponent - 1}` };
}

function quantityValue(raw: string, name: string): Predicate {
  const [number, system, code] = splitEscaped(raw, '|', 3).map(unescapeValue);
  const value = numberValue(number, name);
  if (system === undefined) return { type: 'number', ...value };
  if (code === undefined) throw badRequest(`${name} takes number|system|code (search.html#quantity); got "${raw.slice(0, 80)}"`, [name]);
  return { type: 'number', ...value, system: system || undefined, unit: code || undefined };
}

function referenceValue(raw: string, ctx: ValueContext): Predicate {
  const value = unescapeValue(raw);
  if (ctx.baseUrl && value.startsWith(`${ctx.baseUrl}/`)) {
    const local = referenceTarget(value.slice(ctx.baseUrl.length + 1));
    if (local) return localReference(local.type, local.id, ctx);
  }
  // Canonicals are stored without their version (values.canonicalUrl).
  if (value.includes(':')) return { type: 'reference', url: indexable(canonicalUrl(value)) };
  const target = referenceTarget(value);
  if (target) return localReference(target.type, target.id, ctx);
  if (/^[A-Za-z0-9\-.]{1,64}$/.test(value)) return { type: 'reference', targetType: ctx.targetType, id: value };
  throw badRequest(`${ctx.name} must be a reference such as Patient/123, 123 or an absolute URL; got "${raw.slice(0, 80)}"`, [ctx.name]);
}

function localReference(type: string, id: string, ctx: ValueContext): Predicate {
  if (ctx.targetType && ctx.targetType !== type) {
    throw badRequest(`${ctx.name} is restricted to ${ctx.targetType} but the value names a ${type}`, [ctx.name]);
  }
  return { type: 'reference', targetType: type, id };
}
