import type { Atom } from '@medplum/core';
import type { SearchParameter } from '@medplum/fhirtypes';
import { getAllSearchParameters } from '../definitions.ts';
import type { IndexTable } from './extract.ts';
import { branchesFor, branchKey, compileBranches, compileRelative, type PathEvaluator, relativeKeys, resolveRestriction } from './fhirpath.ts';

/**
 * The R4 SearchParameters of each resource type, compiled once per type on first use: what the
 * indexer extracts and what the query parser accepts come from this one table.
 *
 * Many R4 parameters select what others already select, and indexing them again would only
 * multiply rows (an Observation would write each code four times). So a parameter whose
 * branches are the union of other parameters' (`combo-code` = `code` | `component-code`,
 * `phonetic` = `name`) reads their rows; one that narrows another's references by type
 * (`patient` = `subject.where(resolve() is Patient)`) reads them with a target type; and a
 * composite over the resource itself (`code-value-quantity`) is the AND of its components'
 * own parameters. Only what is left is extracted and stored.
 */
export type ParamType = 'number' | 'date' | 'string' | 'token' | 'reference' | 'composite' | 'quantity' | 'uri';

/** Where a parameter's values are: rows of these codes in one table, optionally only references to one type. */
export interface RowSource {
  table: IndexTable;
  codes: string[];
  targetType?: string;
}

/** One way a composite parameter is stored. */
export type CompositeSource =
  /** Component rows under `<code>#<i>`, one `grp` per element instance. */
  | { kind: 'rows'; components: { table: IndexTable; code: string }[] }
  /** The resource is the element: each component is another parameter's rows. */
  | { kind: 'and'; components: RowSource[] };

export interface SearchParam {
  code: string;
  type: ParamType;
  /** _id and _lastUpdated are columns of `resources`, not index rows. */
  column?: 'id' | 'last_updated';
  /** Resource types a reference parameter may point at. */
  targets: string[];
  /** Non-composite parameters (other than columns): where the rows are. */
  rows?: RowSource;
  /** Composite parameters: the alternatives that together hold its values. */
  composite?: CompositeSource[];
  /** Present when this parameter's own rows are written: extracts its values. */
  evaluate?: PathEvaluator;
  /** Stored composites: each component's type, code and expression (relative to the composite's element). */
  components?: CompositeComponent[];
}

export interface CompositeComponent {
  type: Exclude<ParamType, 'composite'>;
  /** `<composite code>#<index>`: the code its rows are stored under. */
  code: string;
  /** Evaluator for the element type a composite value comes from (compiled on first use per type). */
  evaluatorFor(contextType: string): PathEvaluator;
}

/** Branches that select values a parameter type cannot index (a SampledData is not a quantity one can compare). */
const UNINDEXED: Partial<Record<ParamType, RegExp>> = { quantity: /\.as\(sampleddata\)$/ };

const COLUMN_PARAMS: Record<string, SearchParam['column']> = { _id: 'id', _lastUpdated: 'last_updated' };
/** Resources that are not DomainResources, so `_text`-style DomainResource parameters skip them. */
const NOT_DOMAIN = new Set(['Bundle', 'Binary', 'Parameters']);

const byType = new Map<string, Map<string, SearchParam>>();

/** Every search parameter of `resourceType`, by code. */
export function searchParamsOf(resourceType: string): Map<string, SearchParam> {
  let params = byType.get(resourceType);
  if (!params) {
    params = buildParams(resourceType);
    byType.set(resourceType, params);
  }
  return params;
}

export function searchParam(resourceType: string, code: string): SearchParam | undefined {
  return searchParamsOf(resourceType).get(code);
}

function appliesTo(sp: SearchParameter, resourceType: string): boolean {
  const bases = sp.base as string[] | undefined;
  if (!bases) return false;
  if (bases.includes(resourceType) || bases.includes('Resource')) return true;
  return bases.includes('DomainResource') && !NOT_DOMAIN.has(resourceType);
}

interface Candidate {
  sp: SearchParameter;
  code: string;
  type: ParamType;
  branches: Atom[];
  keys: Set<string>;
}

function buildParams(resourceType: string): Map<string, SearchParam> {
  const all = getAllSearchParameters();
  const params = new Map<string, SearchParam>();
  const candidates: Candidate[] = [];
  for (const sp of all) {
    if (!appliesTo(sp, resourceType) || !sp.expression || sp.type === 'special') continue;
    const code = sp.code as string;
    const type = sp.type as ParamType;
    const column = COLUMN_PARAMS[code];
    if (column) {
      params.set(code, { code, type, column, targets: [] });
      continue;
    }
    const ownType = (sp.base as string[]).length === 1 && sp.base?.[0] === resourceType;
    const branches = branchesFor(resourceType, sp.expression, ownType).filter((b) => !UNINDEXED[type]?.test(branchKey(b, resourceType)));
    if (branches.length === 0) continue;
    candidates.push({ sp, code, type, branches, keys: new Set(branches.map((b) => branchKey(b, resourceType))) });
  }
  // Plain paths before type-narrowed references, fewest branches first: the parts of a union
  // or a narrowing are then stored before it is considered.
  const narrowed = (c: Candidate) => (c.branches.some((b) => resolveRestriction(b)) ? 1 : 0);
  candidates.sort((a, b) => narrowed(a) - narrowed(b) || a.keys.size - b.keys.size || a.code.localeCompare(b.code));
  const stored: { code: string; table: IndexTable; keys: Set<string> }[] = [];
  for (const c of candidates.filter((c) => c.type !== 'composite')) {
    const table = c.type as IndexTable;
    const param: SearchParam = { code: c.code, type: c.type, targets: (c.sp.target as string[] | undefined) ?? [] };
    param.rows = derivedRows(c, table, resourceType, stored);
    if (!param.rows) {
      param.rows = { table, codes: [c.code] };
      param.evaluate = compileBranches(resourceType, c.branches);
      stored.push({ code: c.code, table, keys: c.keys });
    }
    params.set(c.code, param);
  }
  const byUrl = new Map(all.map((sp) => [sp.url, sp]));
  const keysByCode = new Map(candidates.map((c) => [c.code, c.keys]));
  const composites: { keys: Set<string>; signature: string; sources: CompositeSource[] }[] = [];
  for (const c of candidates.filter((c) => c.type === 'composite')) {
    const param = compositeParam(c, resourceType, byUrl, params, keysByCode, composites);
    if (param) params.set(c.code, param);
  }
  return params;
}

/** Rows of already stored parameters that hold exactly this parameter's values, if there are such. */
function derivedRows(c: Candidate, table: IndexTable, resourceType: string, stored: { code: string; table: IndexTable; keys: Set<string> }[]): RowSource | undefined {
  const restrictions = c.branches.map(resolveRestriction);
  const restricted = restrictions.every((r) => r !== undefined) && new Set(restrictions.map((r) => r?.type)).size === 1;
  const keys = restricted ? new Set(restrictions.map((r) => branchKey((r as { inner: Atom }).inner, resourceType))) : c.keys;
  const codes = coveringCodes(keys, table, stored);
  if (!codes) return undefined;
  return restricted ? { table, codes, targetType: restrictions[0]?.type } : { table, codes };
}

/** Codes of stored parameters whose branches together are exactly `keys`. */
function coveringCodes(keys: Set<string>, table: IndexTable, stored: { code: string; table: IndexTable; keys: Set<string> }[]): string[] | undefined {
  const parts = stored.filter((s) => s.table === table && [...s.keys].every((k) => keys.has(k)));
  const covered = new Set(parts.flatMap((p) => [...p.keys]));
  return parts.length > 0 && covered.size === keys.size ? parts.map((p) => p.code) : undefined;
}

function compositeParam(
  c: Candidate,
  resourceType: string,
  byUrl: Map<string | undefined, SearchParameter>,
  params: Map<string, SearchParam>,
  keysByCode: Map<string, Set<string>>,
  composites: { keys: Set<string>; signature: string; sources: CompositeSource[] }[],
): SearchParam | undefined {
  const parts = (c.sp.component ?? []).map((component) => ({ definition: byUrl.get(component.definition), expression: component.expression as string }));
  if (parts.length < 2 || parts.some((p) => !p.definition || !p.expression || p.definition.type === 'composite' || p.definition.type === 'special')) return undefined;
  const signature = parts.map((p) => `${p.definition?.type}:${p.expression}`).join(';');
  const param: SearchParam = { code: c.code, type: 'composite', targets: [] };
  const add = (sources: CompositeSource[]): SearchParam => {
    param.composite = sources;
    composites.push({ keys: c.keys, signature, sources });
    return param;
  };

  // The resource itself is the element: every component is then another parameter of the type.
  if (c.keys.size === 1 && c.keys.has(resourceType)) {
    const sources = parts.map((p) => {
      const code = p.definition?.code as string;
      const own = params.get(code);
      const ownKeys = keysByCode.get(code);
      return own?.rows && ownKeys && sameKeys(ownKeys, new Set(relativeKeys(resourceType, p.expression))) ? own.rows : undefined;
    });
    if (sources.every((s) => s !== undefined)) return add([{ kind: 'and', components: sources as RowSource[] }]);
  }

  // A union of composites already known, with the same components (combo-code-value-quantity).
  const unionOf = composites.filter((k) => k.signature === signature && [...k.keys].every((key) => c.keys.has(key)));
  if (unionOf.length > 0 && new Set(unionOf.flatMap((k) => [...k.keys])).size === c.keys.size) return add(unionOf.flatMap((k) => k.sources));

  const components: CompositeComponent[] = parts.map((p, index) => {
    const compiled = new Map<string, PathEvaluator>();
    return {
      type: p.definition?.type as CompositeComponent['type'],
      code: `${c.code}#${index}`,
      evaluatorFor(contextType) {
        let evaluate = compiled.get(contextType);
        if (!evaluate) {
          evaluate = compileRelative(contextType, p.expression);
          compiled.set(contextType, evaluate);
        }
        return evaluate;
      },
    };
  });
  param.evaluate = compileBranches(resourceType, c.branches);
  param.components = components;
  return add([{ kind: 'rows', components: components.map((k) => ({ table: k.type, code: k.code })) }]);
}

function sameKeys(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((k) => b.has(k));
}
