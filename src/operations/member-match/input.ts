import type { Consent, Coverage, OperationOutcomeIssue, Parameters, Patient, Resource } from '@medplum/fhirtypes';
import { FhirError } from '../../fhir/errors.ts';
import type { ResourceValidator } from '../../fhir/validation.ts';

/**
 * The inputs of $member-match (HRex hrex-parameters-member-match-in): MemberPatient 1..1,
 * CoverageToMatch 1..1, CoverageToLink 0..1, Consent 0..1 (1..1 in HRex 1.0.0 and PDex
 * payer-to-payer, hence `consentRequired`). The profile's slicing is closed: nothing else may
 * come. Problems are reported all at once, each naming the parameter and the rule, never the
 * values: they are a person's demographics.
 */
export interface MemberMatchInput {
  memberPatient: Patient & { id: string };
  coverageToMatch: Coverage;
  coverageToLink?: Coverage;
  consent?: Consent;
}

const INPUTS = { MemberPatient: 'Patient', CoverageToMatch: 'Coverage', CoverageToLink: 'Coverage', Consent: 'Consent' } as const;
type InputName = keyof typeof INPUTS;
const BIRTH_SEX = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex';
const FHIR_DATE = /^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$/;

const at = (name: string, path = '') => `Parameters.parameter.where(name='${name}').resource${path}`;

class Problems {
  readonly issues: OperationOutcomeIssue[] = [];
  add(code: OperationOutcomeIssue['code'], diagnostics: string, expression: string): void {
    this.issues.push({ severity: 'error', code, diagnostics, expression: [expression] });
  }
}

export function parseMemberMatchInput(body: unknown, options: { consentRequired: boolean; validator: ResourceValidator }): MemberMatchInput {
  const parameters = body as Parameters;
  if (typeof body !== 'object' || body === null || parameters.resourceType !== 'Parameters') {
    throw invalid(400, [{ severity: 'error', code: 'structure', diagnostics: '$member-match takes a Parameters resource', expression: ['Parameters'] }]);
  }
  const structural = new Problems();
  const found = new Map<InputName, Resource>();
  (Array.isArray(parameters.parameter) ? parameters.parameter : []).forEach((parameter, index) => {
    const name = typeof parameter?.name === 'string' ? parameter.name : '';
    if (!Object.hasOwn(INPUTS, name)) {
      structural.add('structure', `Parameter ${index + 1} ("${name.slice(0, 40)}") is not an input of $member-match: MemberPatient, CoverageToMatch, CoverageToLink and Consent are`, `Parameters.parameter[${index}].name`);
      return;
    }
    const input = name as InputName;
    if (found.has(input)) structural.add('structure', `${input} may be given once`, at(input));
    else if (parameter.resource?.resourceType !== INPUTS[input]) structural.add('structure', `${input} must carry a ${INPUTS[input]} resource`, at(input));
    else found.set(input, parameter.resource);
  });
  for (const required of ['MemberPatient', 'CoverageToMatch', ...(options.consentRequired ? ['Consent' as const] : [])] as InputName[]) {
    if (!found.has(required) && !structural.issues.some((issue) => issue.expression?.[0] === at(required))) structural.add('required', `${required} is required`, at(required));
  }
  if (structural.issues.length > 0) throw invalid(400, structural.issues);

  const validity = new Problems();
  for (const [name, resource] of found) checkValid(name, resource, options.validator, validity);
  if (validity.issues.length > 0) throw invalid(400, validity.issues);

  const memberPatient = found.get('MemberPatient') as Patient;
  const rules = new Problems();
  checkDemographics(memberPatient, rules);
  const patientReference = memberPatient.id ? `Patient/${memberPatient.id}` : undefined;
  if (!patientReference) rules.add('required', 'MemberPatient needs an id: CoverageToMatch.beneficiary and Consent.patient refer to it (HRex mm-6)', at('MemberPatient', '.id'));
  for (const name of ['CoverageToMatch', 'CoverageToLink'] as const) {
    const coverage = found.get(name) as Coverage | undefined;
    if (!coverage) continue;
    if (patientReference && coverage.beneficiary?.reference !== patientReference) {
      rules.add('invariant', `${name}.beneficiary must be the local reference Patient/<MemberPatient.id> (HRex mm-6)`, at(name, '.beneficiary'));
    }
    if (name === 'CoverageToMatch' && (coverage.payor?.length ?? 0) !== 1) rules.add('invariant', 'CoverageToMatch.payor must name the one payer of the card (HRex Coverage: payor 1..1)', at(name, '.payor'));
  }
  if (rules.issues.length > 0) throw invalid(422, rules.issues);

  const consent = found.get('Consent') as Consent | undefined;
  const coverageToLink = found.get('CoverageToLink') as Coverage | undefined;
  return {
    memberPatient: memberPatient as Patient & { id: string },
    coverageToMatch: found.get('CoverageToMatch') as Coverage,
    ...(coverageToLink ? { coverageToLink } : {}),
    ...(consent ? { consent } : {}),
  };
}

/** HRex patient demographics: family 1..1, given 1..*, birthDate 1..1, gender or US Core birth sex. */
function checkDemographics(patient: Patient, problems: Problems): void {
  const names = patient.name ?? [];
  if (!names.some((name) => typeof name.family === 'string' && name.family.trim() !== '')) problems.add('required', 'MemberPatient.name needs a family name (HRex patient demographics)', at('MemberPatient', '.name.family'));
  if (!names.some((name) => (name.given ?? []).some((given) => typeof given === 'string' && given.trim() !== ''))) {
    problems.add('required', 'MemberPatient.name needs a given name (HRex patient demographics)', at('MemberPatient', '.name.given'));
  }
  if (!patient.birthDate) problems.add('required', 'MemberPatient.birthDate is required (HRex patient demographics)', at('MemberPatient', '.birthDate'));
  else if (!FHIR_DATE.test(patient.birthDate)) problems.add('value', 'MemberPatient.birthDate must be a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)', at('MemberPatient', '.birthDate'));
  if (!patient.gender && !(patient.extension ?? []).some((extension) => extension.url === BIRTH_SEX)) {
    problems.add('required', 'MemberPatient needs gender or the US Core birth sex extension (HRex patient demographics)', at('MemberPatient', '.gender'));
  }
}

/**
 * Base R4 validity. The validator's messages can quote the offending value, which here is a
 * person's data: quoted text is replaced, the element path and the rule are kept.
 */
function checkValid(name: InputName, resource: Resource, validator: ResourceValidator, problems: Problems): void {
  try {
    validator.validate(resource);
  } catch (error) {
    if (!(error instanceof FhirError)) throw error;
    for (const issue of error.outcome.issue ?? []) {
      const text = (issue.diagnostics ?? 'invalid').replace(/"[^"]*"|'[^']*'/g, '(value)');
      problems.add(issue.code, `${name}: ${text}`, at(name, issue.expression?.[0] ? ` (${issue.expression[0]})` : ''));
    }
  }
}

function invalid(status: 400 | 422, issues: OperationOutcomeIssue[]): FhirError {
  return new FhirError(status, { resourceType: 'OperationOutcome', issue: issues });
}
