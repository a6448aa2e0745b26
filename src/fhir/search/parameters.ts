import type { SearchParameter } from '@medplum/fhirtypes';
import { getAllSearchParameters } from '../definitions.ts';
import { compileForType, compileRelative, type PathEvaluator } from './fhirpath.ts';

/**
 * The R4 SearchParameters of each resource type, compiled once per type on first use: what the
 * indexer extracts and what the query parser accepts come from this one table.
 */
export type ParamType = 'number' | 'date' | 'string' | 'token' | 'reference' | 'composite' | 'quantity' | 'uri';

export interface SearchParam {
  code: string;
  type: ParamType;
  /** _id and _lastUpdated are columns of `resources`, not index rows. */
  column?: 'id' | 'last_updated';
  /** Extracts the values to index; absent for column parameters. */
  evaluate?: PathEvaluator;
  /** Resource types a reference parameter may point at. */
  targets: string[];
  /** Composite parameters: each component's type, stored code and expression (relative to the composite's element). */
  components?: CompositeComponent[];
}

export interface CompositeComponent {
  type: Exclude<ParamType, 'composite'>;
  /** `<composite code>#<index>`: the code its rows are stored under. */
  code: string;
  /** Evaluator for the element type a composite value comes from (compiled on first use per type). */
  evaluatorFor(contextType: string): PathEvaluator;
}

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

function buildParams(resourceType: string): Map<string, SearchParam> {
  const all = getAllSearchParameters();
  const byUrl = new Map(all.map((sp) => [sp.url, sp]));
  const params = new Map<string, SearchParam>();
  for (const sp of all) {
    if (!appliesTo(sp, resourceType) || !sp.expression || sp.type === 'special') continue;
    const code = sp.code as string;
    const type = sp.type as ParamType;
    const column = COLUMN_PARAMS[code];
    if (column) {
      params.set(code, { code, type, column, targets: [] });
      continue;
    }
    const evaluate = compileForType(resourceType, sp.expression);
    if (!evaluate) continue;
    const param: SearchParam = { code, type, evaluate, targets: (sp.target as string[] | undefined) ?? [] };
    if (type === 'composite') {
      const components = compositeComponents(sp, byUrl);
      if (!components) continue;
      param.components = components;
    }
    params.set(code, param);
  }
  return params;
}

function compositeComponents(sp: SearchParameter, byUrl: Map<string | undefined, SearchParameter>): CompositeComponent[] | undefined {
  const components: CompositeComponent[] = [];
  for (const [index, component] of (sp.component ?? []).entries()) {
    const definition = byUrl.get(component.definition);
    if (!definition || definition.type === 'composite' || definition.type === 'special' || !component.expression) return undefined;
    const expression = component.expression;
    const compiled = new Map<string, PathEvaluator>();
    components.push({
      type: definition.type as CompositeComponent['type'],
      code: `${sp.code}#${index}`,
      evaluatorFor(contextType) {
        let evaluate = compiled.get(contextType);
        if (!evaluate) {
          evaluate = compileRelative(contextType, expression);
          compiled.set(contextType, evaluate);
        }
        return evaluate;
      },
    });
  }
  return components.length >= 2 ? components : undefined;
}
