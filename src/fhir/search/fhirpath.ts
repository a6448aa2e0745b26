import {
  AsAtom,
  type Atom,
  DotAtom,
  EqualsAtom,
  evalFhirPathTyped,
  FhirPathAtom,
  FunctionAtom,
  getElementDefinition,
  IndexerAtom,
  IsAtom,
  LiteralAtom,
  parseFhirPath,
  SymbolAtom,
  toTypedValue,
  UnionAtom,
} from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { referenceTarget } from './values.ts';

/**
 * SearchParameter expressions compiled to plain JavaScript for one resource type.
 *
 * R4 expressions are unions over many types (`AllergyIntolerance.code | … | Observation.code`);
 * only the branches rooted at the type being indexed are kept. The shapes R4 uses are few:
 * element paths, choice types narrowed with `as`/`ofType`, `where(resolve() is Type)`,
 * `where(field = 'literal')` and `[n]`. Those compile to closures over the element definitions;
 * anything else is evaluated by @medplum/core's FHIRPath engine on the pre-parsed branch.
 */

/** A value with its FHIR type, as FHIRPath sees it (`Quantity`, `dateTime`, `ObservationComponent`…). */
export interface TypedItem {
  type: string;
  value: any;
}

export type PathEvaluator = (input: TypedItem[], resource: Resource) => TypedItem[];

type Step = (items: TypedItem[], resource: Resource) => TypedItem[];

class Unsupported extends Error {}

const BASE_TYPES = new Set(['Resource', 'DomainResource']);

/**
 * The branches of `expression` rooted at `resourceType` (or at Resource/DomainResource, for base
 * parameters). `relative`: the parameter is defined on this type alone, so branches starting at
 * an element (R4's InsurancePlan name is `name | alias`) start at the resource.
 */
export function branchesFor(resourceType: string, expression: string, relative = false): Atom[] {
  return parsedBranches(expression).filter((atom) => {
    const root = rootSymbol(atom);
    if (root === undefined) return false;
    return root === resourceType || BASE_TYPES.has(root) || (relative && /^[a-z]/.test(root));
  });
}

/** Branches of an absolute expression (from branchesFor) as one evaluator over the resource. */
export function compileBranches(resourceType: string, branches: Atom[]): PathEvaluator {
  return union(branches.map((atom) => compileBranch(atom, resourceType, true)));
}

/** An expression evaluated on an element of `contextType` (a composite parameter's component expression). */
export function compileRelative(contextType: string, expression: string): PathEvaluator {
  return union(parsedBranches(expression).map((atom) => compileBranch(atom, contextType, false)));
}

/**
 * A canonical text for a branch, so that parameters selecting the same elements can be recognised:
 * `(Observation.value as Quantity)` and `Observation` + `value.as(Quantity)` both give
 * `Observation.value.as(quantity)`. The root type name is `rootType` for base parameters too.
 */
export function branchKey(atom: Atom, rootType: string): string {
  if (atom instanceof SymbolAtom) {
    if (BASE_TYPES.has(atom.name)) return rootType;
    return /^[a-z]/.test(atom.name) ? `${rootType}.${atom.name}` : atom.name;
  }
  if (atom instanceof DotAtom) return `${branchKey(atom.left, rootType)}.${relativeKey(atom.right)}`;
  if (atom instanceof AsAtom) return `${branchKey(atom.left, rootType)}.as(${atom.right.toString().toLowerCase()})`;
  return atom.toString();
}

/** The keys of a relative expression's branches, appended to the key of the element it starts from. */
export function relativeKeys(baseKey: string, expression: string): string[] {
  return parsedBranches(expression).map((atom) => `${baseKey}.${relativeKey(atom)}`);
}

function relativeKey(atom: Atom): string {
  if (atom instanceof SymbolAtom) return atom.name;
  if (atom instanceof DotAtom) return `${relativeKey(atom.left)}.${relativeKey(atom.right)}`;
  if (atom instanceof AsAtom) return `${relativeKey(atom.left)}.as(${atom.right.toString().toLowerCase()})`;
  if (atom instanceof FunctionAtom && (atom.name === 'as' || atom.name === 'ofType') && atom.args.length === 1) return `as(${atom.args[0].toString().toLowerCase()})`;
  return atom.toString();
}

/** `X.where(resolve() is T)` → X and T: the branch selects the references of X that point at a T. */
export function resolveRestriction(atom: Atom): { inner: Atom; type: string } | undefined {
  if (!(atom instanceof DotAtom) || !(atom.right instanceof FunctionAtom) || atom.right.name !== 'where') return undefined;
  const [arg] = atom.right.args;
  if (!(arg instanceof IsAtom) || !(arg.left instanceof FunctionAtom) || arg.left.name !== 'resolve' || !(arg.right instanceof SymbolAtom)) return undefined;
  return { inner: atom.left, type: arg.right.name };
}

function union(evaluators: PathEvaluator[]): PathEvaluator {
  if (evaluators.length === 1) return evaluators[0];
  return (input, resource) => {
    const out: TypedItem[] = [];
    for (const evaluate of evaluators) for (const item of evaluate(input, resource)) out.push(item);
    return out;
  };
}

/** Parsed once per process: the same union expression serves dozens of resource types. */
const branchCache = new Map<string, Atom[]>();

function parsedBranches(expression: string): Atom[] {
  let branches = branchCache.get(expression);
  if (!branches) {
    branches = unionBranches(parseFhirPath(expression).child);
    branchCache.set(expression, branches);
  }
  return branches;
}

function unionBranches(atom: Atom): Atom[] {
  return atom instanceof UnionAtom ? [...unionBranches(atom.left), ...unionBranches(atom.right)] : [atom];
}

function rootSymbol(atom: Atom): string | undefined {
  let current: Atom = atom;
  for (;;) {
    if (current instanceof SymbolAtom) return current.name;
    if (current instanceof IndexerAtom) current = current.left;
    else if ('left' in current && current.left) current = current.left as Atom;
    else return undefined;
  }
}

function compileBranch(atom: Atom, contextType: string, absolute: boolean): PathEvaluator {
  try {
    const { steps } = compileAtom(atom, new Set([contextType]), absolute ? contextType : undefined);
    return (input, resource) => {
      let items = input;
      for (const step of steps) {
        if (items.length === 0) return items;
        items = step(items, resource);
      }
      return items;
    };
  } catch (error) {
    if (!(error instanceof Unsupported)) throw error;
    return interpreted(atom);
  }
}

/** @medplum/core's evaluator on the pre-parsed branch: for shapes the compiler does not handle. */
function interpreted(atom: Atom): PathEvaluator {
  const parsed = new FhirPathAtom('<search parameter branch>', atom);
  return (input, resource) => {
    const root = toTypedValue(resource);
    return evalFhirPathTyped(parsed, input, { '%resource': root, '%rootResource': root }) as TypedItem[];
  };
}

interface Compiled {
  steps: Step[];
  types: Set<string>;
}

/**
 * `root` is the resource type while the first symbol of an absolute expression is still ahead:
 * there a type name selects the resource itself (`Observation.code`, `Resource.meta`).
 */
function compileAtom(atom: Atom, types: Set<string>, root: string | undefined): Compiled {
  if (atom instanceof SymbolAtom) {
    if (root !== undefined && (atom.name === root || BASE_TYPES.has(atom.name))) return { steps: [], types };
    return field(atom.name, types);
  }
  if (atom instanceof DotAtom) {
    const left = compileAtom(atom.left, types, root);
    const right = compileAtom(atom.right, left.types, undefined);
    return { steps: [...left.steps, ...right.steps], types: right.types };
  }
  if (atom instanceof AsAtom) return narrow(compileAtom(atom.left, types, root), typeName(atom.right));
  if (atom instanceof IndexerAtom) {
    const left = compileAtom(atom.left, types, root);
    if (!(atom.expr instanceof LiteralAtom) || typeof atom.expr.value.value !== 'number') throw new Unsupported();
    const index = atom.expr.value.value;
    return { steps: [...left.steps, (items) => (index < items.length ? [items[index]] : [])], types: left.types };
  }
  if (atom instanceof FunctionAtom) return compileFunction(atom, types);
  throw new Unsupported();
}

function compileFunction(atom: FunctionAtom, types: Set<string>): Compiled {
  const [arg] = atom.args;
  if ((atom.name === 'as' || atom.name === 'ofType') && atom.args.length === 1) return narrow({ steps: [], types }, typeName(arg));
  if (atom.name === 'where' && atom.args.length === 1) {
    // where(resolve() is Patient): decided from the reference string, without resolving it.
    if (arg instanceof IsAtom && arg.left instanceof FunctionAtom && arg.left.name === 'resolve') {
      const target = typeName(arg.right);
      return { steps: [(items, resource) => items.filter((item) => referencedType(item, resource) === target)], types };
    }
    if (arg instanceof EqualsAtom && arg.left instanceof SymbolAtom && arg.right instanceof LiteralAtom) {
      const key = arg.left.name;
      const literal = arg.right.value.value;
      return { steps: [(items) => items.filter((item) => item.value?.[key] === literal)], types };
    }
  }
  throw new Unsupported();
}

function typeName(atom: Atom): string {
  if (!(atom instanceof SymbolAtom)) throw new Unsupported();
  return atom.name;
}

/** `as Quantity` after `value` keeps only valueQuantity; FHIRPath's System types compare case-insensitively (DateTime = dateTime). */
function narrow(compiled: Compiled, type: string): Compiled {
  const wanted = type.toLowerCase();
  const types = new Set([...compiled.types].filter((t) => t.toLowerCase() === wanted));
  if (types.size === 0) return { steps: [() => []], types };
  return { steps: [...compiled.steps, (items) => items.filter((item) => item.type.toLowerCase() === wanted)], types };
}

interface Slot {
  key: string;
  type: string;
}

/** A child element: one key, or one key per type for a choice element (value[x] → valueQuantity, valueString…). */
function field(name: string, types: Set<string>): Compiled {
  const slotsByType = new Map<string, Slot[]>();
  const outTypes = new Set<string>();
  for (const type of types) {
    const element = getElementDefinition(type, name);
    if (!element) continue;
    const choice = element.path.endsWith('[x]');
    const slots = element.type.map((t) => {
      const code = fhirTypeCode(t.code);
      return { key: choice ? name + code[0].toUpperCase() + code.slice(1) : name, type: code };
    });
    slotsByType.set(type, slots);
    for (const slot of slots) outTypes.add(slot.type);
  }
  if (slotsByType.size === 0 || outTypes.has('Resource')) throw new Unsupported();
  const step: Step = (items) => {
    const out: TypedItem[] = [];
    for (const item of items) {
      const slots = slotsByType.get(item.type);
      if (!slots || typeof item.value !== 'object' || item.value === null) continue;
      for (const slot of slots) {
        const value = item.value[slot.key];
        if (value === undefined || value === null) continue;
        if (Array.isArray(value)) {
          for (const v of value) if (v !== null && v !== undefined) out.push({ type: slot.type, value: v });
        } else {
          out.push({ type: slot.type, value });
        }
      }
    }
    return out;
  };
  return { steps: [step], types: outTypes };
}

/** Element types of `Resource.id` and similar are FHIRPath System types in the R4 definitions. */
function fhirTypeCode(code: string): string {
  return code.startsWith('http://hl7.org/fhirpath/System.') ? code.slice('http://hl7.org/fhirpath/System.'.length).toLowerCase() : code;
}

/** The type a Reference points at, read from `Type/id`, `…/Type/id` or a `#contained` resource. */
function referencedType(item: TypedItem, resource: Resource): string | undefined {
  const reference: unknown = item.value?.reference;
  if (typeof reference !== 'string') return undefined;
  if (reference.startsWith('#')) {
    const contained = (resource as { contained?: Resource[] }).contained?.find((r) => r.id === reference.slice(1));
    return contained?.resourceType;
  }
  return referenceTarget(reference)?.type;
}
