import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { FhirError } from './errors.ts';
import { loadDefinitions } from './definitions.ts';

/**
 * Checks a resource about to be stored against the base R4 StructureDefinitions (failure: 400,
 * it is not valid FHIR) and against each loaded profile its meta.profile names (failure: 422,
 * it violates a profile: FHIR http §3.1.0.4).
 */
export interface ResourceValidator {
  validate(resource: Resource): void;
}

export function createBaseValidator(): ResourceValidator {
  loadDefinitions();
  return {
    validate(resource) {
      throwOnErrors(400, validationIssues(resource));
    },
  };
}

export function throwOnErrors(status: number, issues: OperationOutcomeIssue[]): void {
  const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
  if (errors.length === 0) return;
  throw new FhirError(status, {
    resourceType: 'OperationOutcome',
    issue: errors.map((i) => ({ ...i, code: i.code === 'structure' || i.code === 'value' ? i.code : 'invalid' })),
  });
}

/** Medplum's validator throws on the first failing resource; the issues are what we answer with. */
export function validationIssues(resource: Resource, options?: Parameters<typeof validateResource>[1]): OperationOutcomeIssue[] {
  try {
    return validateResource(resource, options);
  } catch (error) {
    if (error instanceof OperationOutcomeError) return error.outcome.issue ?? [];
    throw error;
  }
}
