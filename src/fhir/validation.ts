import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { loadDefinitions } from './definitions.ts';
import { FhirError } from './errors.ts';

/**
 * Checks a resource about to be stored against the base R4 StructureDefinitions (failure: 400,
 * it is not valid FHIR) and against each loaded profile its meta.profile names (failure: 422,
 * it violates a profile: FHIR http §3.1.0.4).
 */
export interface ResourceValidator {
  validate(resource: Resource): void;
  /** The profiles enforced when meta.profile names them: what CapabilityStatement.supportedProfile lists. */
  readonly profiles: readonly StructureDefinition[];
}

export function createResourceValidator(profiles: readonly StructureDefinition[]): ResourceValidator {
  loadDefinitions();
  const byUrl = new Map(profiles.map((p) => [p.url, p]));
  return {
    profiles,
    validate(resource) {
      throwOnErrors(400, validationIssues(resource));
      const claimed = resource.meta?.profile ?? [];
      const issues = claimed.flatMap((canonical, index) => {
        const profile = findProfile(byUrl, canonical);
        // A profile Baton does not hold cannot be checked; the resource is accepted on its base
        // validity, as the server is not required to know every profile (http §3.1.0.4).
        return profile ? profileIssues(resource, profile, `${resource.resourceType}.meta.profile[${index}]`) : [];
      });
      throwOnErrors(422, issues);
    },
  };
}

/** `url` or `url|version` (canonical §2.1.0.3); a version that is not the one loaded is not loaded. */
function findProfile(byUrl: Map<string, StructureDefinition>, canonical: string): StructureDefinition | undefined {
  const bar = canonical.indexOf('|');
  const profile = byUrl.get(bar === -1 ? canonical : canonical.slice(0, bar));
  if (!profile || (bar !== -1 && canonical.slice(bar + 1) !== profile.version)) return undefined;
  return profile;
}

function profileIssues(resource: Resource, profile: StructureDefinition, claim: string): OperationOutcomeIssue[] {
  if (profile.type !== resource.resourceType) {
    return [{ severity: 'error', code: 'invalid', diagnostics: `Profile ${profile.url} constrains ${profile.type}, not ${resource.resourceType}`, expression: [claim] }];
  }
  return validationIssues(resource, { profile }).map((issue) => ({ ...issue, diagnostics: `${issue.diagnostics} (profile ${profile.url})` }));
}

function throwOnErrors(status: number, issues: OperationOutcomeIssue[]): void {
  const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
  if (errors.length === 0) return;
  throw new FhirError(status, { resourceType: 'OperationOutcome', issue: errors });
}

/** Issue types Medplum's validator reports that R4 defines; anything else is reported as `invalid`. */
const ISSUE_CODES = new Set(['structure', 'required', 'value', 'invariant', 'invalid', 'processing']);

/**
 * Medplum's issues, restated the way Baton reports errors: the message in `diagnostics`, leading
 * with the element it concerns, so a developer can act on it without reading `expression`.
 * Medplum throws on the first failing resource; its issues are the answer either way.
 */
function validationIssues(resource: Resource, options?: Parameters<typeof validateResource>[1]): OperationOutcomeIssue[] {
  let issues: OperationOutcomeIssue[];
  try {
    issues = validateResource(resource, options);
  } catch (error) {
    if (!(error instanceof OperationOutcomeError)) throw error;
    issues = error.outcome.issue ?? [];
  }
  return issues.map((issue) => {
    const element = issue.expression?.[0];
    const text = issue.details?.text ?? issue.diagnostics ?? 'Invalid';
    return {
      severity: issue.severity,
      code: ISSUE_CODES.has(issue.code) ? issue.code : 'invalid',
      diagnostics: element ? `${element}: ${text}` : text,
      ...(issue.expression ? { expression: issue.expression } : {}),
    };
  });
}
