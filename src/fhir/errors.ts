import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';

export type IssueCode = OperationOutcomeIssue['code'];

/**
 * The one error type: an HTTP status and the OperationOutcome that explains it. Thrown from
 * anywhere; one handler in app.ts renders it. Messages name what is wrong, never PHI.
 */
export class FhirError extends Error {
  readonly status: number;
  readonly outcome: OperationOutcome;
  readonly headers: Record<string, string>;

  constructor(status: number, outcome: OperationOutcome, headers: Record<string, string> = {}) {
    super(outcome.issue?.[0]?.diagnostics ?? outcome.issue?.[0]?.details?.text ?? `HTTP ${status}`);
    this.status = status;
    this.outcome = outcome;
    this.headers = headers;
  }
}

export function outcome(severity: OperationOutcomeIssue['severity'], code: IssueCode, diagnostics: string, expression?: string[]): OperationOutcome {
  const issue: OperationOutcomeIssue = { severity, code, diagnostics };
  if (expression?.length) issue.expression = expression;
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

export function informational(diagnostics: string): OperationOutcome {
  return outcome('information', 'informational', diagnostics);
}

export const badRequest = (diagnostics: string, expression?: string[]): FhirError =>
  new FhirError(400, outcome('error', 'invalid', diagnostics, expression));
export const notFound = (diagnostics: string): FhirError => new FhirError(404, outcome('error', 'not-found', diagnostics));
export const gone = (diagnostics: string): FhirError => new FhirError(410, outcome('error', 'deleted', diagnostics));
export const conflict = (diagnostics: string): FhirError => new FhirError(409, outcome('error', 'conflict', diagnostics));
export const preconditionFailed = (diagnostics: string): FhirError => new FhirError(412, outcome('error', 'conflict', diagnostics));
export const unprocessable = (diagnostics: string, expression?: string[]): FhirError =>
  new FhirError(422, outcome('error', 'processing', diagnostics, expression));
export const methodNotAllowed = (diagnostics: string, allow: string[]): FhirError =>
  new FhirError(405, outcome('error', 'not-supported', diagnostics), { Allow: allow.join(', ') });
export const notSupported = (diagnostics: string): FhirError => new FhirError(400, outcome('error', 'not-supported', diagnostics));
