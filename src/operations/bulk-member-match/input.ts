import type { Coverage, OperationOutcomeIssue, Parameters, ParametersParameter, Patient } from '@medplum/fhirtypes';
import { FhirError } from '../../fhir/errors.ts';
import type { ResourceValidator } from '../../fhir/validation.ts';

/**
 * The request of $bulk-member-match (PDex pdex-parameters-multi-member-match-bundle-in): one
 * `MemberBundle` parameter per member, each with parts MemberPatient 1..1, CoverageToMatch
 * 1..1, CoverageToLink 0..1 and Consent 1..1 (closed slicing), each part a resource of its
 * type that is valid FHIR R4.
 *
 * What breaks that shape is the requester's software, not a member's data, so it fails the
 * whole request (400, every problem at once, each naming its part by position and never
 * quoting a value). What the shape allows but HRex rules refuse (demographics, mm-6
 * references, a consent Baton cannot honour) is one member's failure: $member-match's own
 * parser and consent rules judge it per member later.
 */
export interface MemberBundle {
  /** Position of the MemberBundle among the request's parameters. */
  index: number;
  /** The member's parts as a $member-match request. */
  request: Parameters;
  memberPatient: Patient;
  coverageToMatch: Coverage;
}

const PARTS = { MemberPatient: 'Patient', CoverageToMatch: 'Coverage', CoverageToLink: 'Coverage', Consent: 'Consent' } as const;
type PartName = keyof typeof PARTS;
const REQUIRED: PartName[] = ['MemberPatient', 'CoverageToMatch', 'Consent'];

export function parseBulkMemberMatchInput(body: unknown, validator: ResourceValidator): MemberBundle[] {
  const parameters = body as Parameters;
  if (typeof body !== 'object' || body === null || parameters.resourceType !== 'Parameters') {
    throw invalid([issue('structure', '$bulk-member-match takes a Parameters resource', 'Parameters')]);
  }
  const issues: OperationOutcomeIssue[] = [];
  const bundles: MemberBundle[] = [];
  const list = Array.isArray(parameters.parameter) ? parameters.parameter : [];
  list.forEach((parameter, index) => {
    const at = `Parameters.parameter[${index}]`;
    if (parameter?.name !== 'MemberBundle') {
      issues.push(issue('structure', `Parameter ${index + 1} is not a MemberBundle: $bulk-member-match takes MemberBundle parameters only`, `${at}.name`));
      return;
    }
    const bundle = memberBundle(parameter, index, validator, issues);
    if (bundle) bundles.push(bundle);
  });
  if (list.length === 0) issues.push(issue('required', 'At least one MemberBundle is required', 'Parameters.parameter'));
  if (issues.length > 0) throw invalid(issues);
  return bundles;
}

function memberBundle(parameter: ParametersParameter, index: number, validator: ResourceValidator, issues: OperationOutcomeIssue[]): MemberBundle | undefined {
  const at = `Parameters.parameter[${index}]`;
  const before = issues.length;
  const found = new Map<PartName, ParametersParameter>();
  const named = new Set<string>();
  (Array.isArray(parameter.part) ? parameter.part : []).forEach((part, p) => {
    const name = typeof part?.name === 'string' ? part.name : '';
    const where = `${at}.part[${p}]`;
    if (!Object.hasOwn(PARTS, name)) {
      issues.push(issue('structure', `MemberBundle ${index + 1}: part ${p + 1} ("${name.slice(0, 40)}") is not MemberPatient, CoverageToMatch, CoverageToLink or Consent`, `${where}.name`));
      return;
    }
    const partName = name as PartName;
    const repeated = named.has(partName);
    named.add(partName);
    if (repeated) issues.push(issue('structure', `MemberBundle ${index + 1}: ${partName} may be given once`, where));
    else if (part.resource?.resourceType !== PARTS[partName]) issues.push(issue('structure', `MemberBundle ${index + 1}: ${partName} must carry a ${PARTS[partName]} resource`, `${where}.resource`));
    else {
      found.set(partName, part);
      validate(part, `${where}.resource`, `MemberBundle ${index + 1}: ${partName}`, validator, issues);
    }
  });
  for (const required of REQUIRED) {
    if (!named.has(required)) {
      issues.push(issue('required', `MemberBundle ${index + 1}: ${required} is required`, `${at}.part`));
    }
  }
  if (issues.length > before) return undefined;
  return {
    index,
    request: { resourceType: 'Parameters', parameter: [...found.values()].map((part) => ({ name: part.name, resource: part.resource })) },
    memberPatient: found.get('MemberPatient')?.resource as Patient,
    coverageToMatch: found.get('CoverageToMatch')?.resource as Coverage,
  };
}

/**
 * Base R4 validity. The submitted Patient and CoverageToMatch are kept in a stored Group, so they must be valid FHIR;
 * the validator's messages can quote values (a person's data): quoted text is replaced.
 */
function validate(part: ParametersParameter, expression: string, label: string, validator: ResourceValidator, issues: OperationOutcomeIssue[]): void {
  try {
    validator.validate(part.resource as NonNullable<ParametersParameter['resource']>);
  } catch (error) {
    if (!(error instanceof FhirError)) throw error;
    for (const found of error.outcome.issue ?? []) {
      const text = (found.diagnostics ?? 'invalid').replace(/"[^"]*"|'[^']*'/g, '(value)');
      issues.push(issue(found.code, `${label}: ${text}`, `${expression}${found.expression?.[0] ? ` (${found.expression[0]})` : ''}`));
    }
  }
}

function issue(code: OperationOutcomeIssue['code'], diagnostics: string, expression: string): OperationOutcomeIssue {
  return { severity: 'error', code, diagnostics, expression: [expression] };
}

function invalid(issues: OperationOutcomeIssue[]): FhirError {
  return new FhirError(400, { resourceType: 'OperationOutcome', issue: issues });
}
