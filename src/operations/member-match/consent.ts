import type { CodeableConcept, Consent, ConsentProvisionActor, Reference, Resource } from '@medplum/fhirtypes';
import type { SensitiveDataRule } from './sensitive-data.ts';

/**
 * Whether a $member-match request's Consent lets this payer disclose the member's data to the
 * caller, under the HRex Consent profile (hrex-consent, HRex 1.0–1.2: the constraints are the
 * same in all three). Pure: the caller supplies the clock, the identities and the resolver.
 *
 * A Consent is honoured only when every rule holds; anything Baton cannot comply with is
 * refused (HRex mm-11: inability to comply with consent requirements → 422). Refusals carry a
 * code, diagnostics naming the rule and an expression, and never the member's data: no names,
 * birth dates, identifiers, references or consent dates.
 */

export const HREX_CONSENT_POLICY = {
  /** All information except what U.S. state or federal regulation considers sensitive. */
  regular: 'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular',
  /** All information, sensitive included. */
  sensitive: 'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#sensitive',
} as const;

/** Where the Consent sits in the request, for OperationOutcome.issue.expression (FHIRPath). */
export const CONSENT_EXPRESSION = "Parameters.parameter.where(name = 'Consent').resource";

export interface OrganizationIdentifier {
  system: string;
  value: string;
}

export interface ConsentContext {
  now: Date;
  /** Whether the request must carry a Consent (BATON_MEMBER_MATCH_CONSENT). */
  required: boolean;
  /** `Patient/<MemberPatient.id>`: Consent.patient must be exactly this (HRex mm-6). */
  memberPatientReference: string;
  /** The calling partner's registered Organization identifiers: the recipient actor must name one. */
  requester: readonly OrganizationIdentifier[];
  /** This payer's identifiers (BATON_PAYER_IDENTIFIER): the source actor must name one. */
  payer: readonly OrganizationIdentifier[];
  sensitiveData: SensitiveDataRule;
  /** Contained or bundled resources a Reference may point at (`#org1`, `urn:uuid:…`, `Organization/x`). */
  resolve?: (reference: string) => Resource | undefined;
}

/** The consent holds: a grant for the period, hiding the excluded labels. */
export interface ConsentHonoured {
  ok: true;
  policy: 'sensitive' | 'regular';
  /** ISO instants; `end` is exclusive (a date-only end covers its whole day). */
  period: { start: string; end: string };
  /** `system|code` security labels the grant must hide; [] under `#sensitive`. */
  excludedSecurity: string[];
}

/**
 * No Consent was sent and none is required. The member may be matched and identified to the
 * caller, but nothing authorizes releasing their data: the caller creates no grant. (HRex makes
 * Consent optional since 1.1; a payer that released data without one would disclose on the
 * strength of a match alone.)
 */
export interface ConsentAbsent {
  ok: true;
  policy: 'none';
}

export type ConsentRefusal =
  /** Consent is required (BATON_MEMBER_MATCH_CONSENT) and the request has none. */
  | 'consent-missing'
  /** Consent.status is not active. */
  | 'consent-inactive'
  /** Consent.patient is not the local reference to MemberPatient (HRex mm-6). */
  | 'consent-patient-mismatch'
  /** Not a consent to disclose: scope patient-privacy, category IDSCL, provision.type permit and action disclose are required. */
  | 'consent-not-disclosure'
  /** The provision narrows disclosure by elements HRex forbids (securityLabel, purpose, class, code, dataPeriod, data, nested provision): terms expressed outside the policy cannot be honoured. */
  | 'consent-unsupported-terms'
  /** Who consented (performer 1..1) or the source document (sourceReference) is missing. */
  | 'consent-unattested'
  /** The policy is not exactly one of the HRex consent policies, or a policyRule adds terms. */
  | 'consent-policy-unknown'
  /** provision.period lacks a start or an end, is not a FHIR dateTime, or ends before it starts. */
  | 'consent-period-invalid'
  /** provision.period starts after now. */
  | 'consent-not-yet-valid'
  /** provision.period ended. */
  | 'consent-expired'
  /** No IRCP (recipient) actor identifies the calling partner. */
  | 'consent-recipient-mismatch'
  /** No performer (source) actor identifies this payer. */
  | 'consent-source-mismatch'
  /** Policy `#regular`, but this payer's sensitive data rule lists no labels, so sensitive data cannot be withheld. */
  | 'consent-regular-unsupported';

export interface ConsentRefused {
  ok: false;
  code: ConsentRefusal;
  diagnostics: string;
  expression: string[];
}

export type ConsentVerdict = ConsentHonoured | ConsentAbsent | ConsentRefused;

const CONSENT_SCOPE = { system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' };
const DISCLOSURE_CATEGORY = { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IDSCL' };
const DISCLOSE_ACTION = { system: 'http://terminology.hl7.org/CodeSystem/consentaction', code: 'disclose' };
/** actor[source]: the payer authorized to disclose (HRex uses provenance-participant-type#performer for it). */
const SOURCE_ROLE = { system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'performer' };
/** actor[recipient]: the party authorized to receive. */
const RECIPIENT_ROLE = { system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' };
/** Provision elements HRex sets to ..0: "Consent rules are expressed solely in policy." */
const FORBIDDEN_PROVISION_ELEMENTS = ['securityLabel', 'purpose', 'class', 'code', 'dataPeriod', 'data', 'provision'] as const;

export function evaluateConsent(consent: Consent | undefined, context: ConsentContext): ConsentVerdict {
  if (!consent) {
    if (!context.required) return { ok: true, policy: 'none' };
    return { ok: false, code: 'consent-missing', diagnostics: 'This server requires a Consent parameter (HRex Consent profile) to match a member', expression: ['Parameters.parameter'] };
  }
  if (consent.resourceType !== 'Consent') return refuse('consent-not-disclosure', 'The Consent parameter must hold a Consent resource', '');
  if (consent.status !== 'active') return refuse('consent-inactive', "Consent.status must be 'active' (HRex Consent)", 'status');
  if (consent.patient?.reference !== context.memberPatientReference) {
    return refuse('consent-patient-mismatch', 'Consent.patient must be the local reference Patient/<id> of the MemberPatient parameter (HRex mm-6)', 'patient');
  }

  const provision = consent.provision;
  if (!hasCoding(consent.scope, CONSENT_SCOPE)) return refuse('consent-not-disclosure', 'Consent.scope must be consentscope#patient-privacy (HRex Consent)', 'scope');
  if (!consent.category?.some((c) => hasCoding(c, DISCLOSURE_CATEGORY))) return refuse('consent-not-disclosure', 'Consent.category must include v3-ActCode#IDSCL (HRex Consent)', 'category');
  if (!provision) return refuse('consent-not-disclosure', 'Consent.provision is required (HRex Consent)', 'provision');
  if (provision.type !== 'permit') return refuse('consent-not-disclosure', "Consent.provision.type must be 'permit' (HRex Consent)", 'provision.type');
  if (provision.action?.length !== 1 || !hasCoding(provision.action[0], DISCLOSE_ACTION)) {
    return refuse('consent-not-disclosure', 'Consent.provision.action must be exactly one consentaction#disclose (HRex Consent)', 'provision.action');
  }
  for (const element of FORBIDDEN_PROVISION_ELEMENTS) {
    const value = provision[element];
    if (value !== undefined && !(Array.isArray(value) && value.length === 0)) {
      return refuse('consent-unsupported-terms', `Consent.provision.${element} is not allowed: HRex Consent expresses its terms solely in Consent.policy`, `provision.${element}`);
    }
  }

  if (consent.performer?.length !== 1) return refuse('consent-unattested', 'Consent.performer must name exactly one party who gave the consent (HRex Consent)', 'performer');
  if (!consent.sourceReference?.reference && !consent.sourceReference?.identifier) {
    return refuse('consent-unattested', 'Consent.sourceReference must point at the original consent document (HRex Consent)', 'sourceReference');
  }

  const policy = hrexPolicy(consent);
  if (typeof policy !== 'string') return policy;

  const period = consentPeriod(consent, context.now);
  if ('ok' in period) return period;

  if (!someActorIdentifies(provision.actor, RECIPIENT_ROLE, context.requester, context.resolve)) {
    return refuse(
      'consent-recipient-mismatch',
      'No Consent.provision.actor with role v3-ParticipationType#IRCP identifies the requesting organization by an identifier it is registered with (an Organization reference must resolve within the request)',
      'provision.actor',
    );
  }
  if (!someActorIdentifies(provision.actor, SOURCE_ROLE, context.payer, context.resolve)) {
    return refuse(
      'consent-source-mismatch',
      'No Consent.provision.actor with role provenance-participant-type#performer identifies this payer by one of its identifiers (an Organization reference must resolve within the request)',
      'provision.actor',
    );
  }

  if (policy === 'sensitive') return { ok: true, policy, period, excludedSecurity: [] };
  if (context.sensitiveData.labels.length === 0) {
    return refuse('consent-regular-unsupported', 'This payer cannot withhold sensitive data, so a Consent under the HRex #regular policy cannot be honoured; a #sensitive consent can', 'policy');
  }
  return { ok: true, policy, period, excludedSecurity: [...context.sensitiveData.labels] };
}

function refuse(code: ConsentRefusal, diagnostics: string, path: string): ConsentRefused {
  return { ok: false, code, diagnostics, expression: [path ? `${CONSENT_EXPRESSION}.${path}` : CONSENT_EXPRESSION] };
}

function hasCoding(concept: CodeableConcept | undefined, wanted: { system: string; code: string }): boolean {
  return concept?.coding?.some((c) => c.system === wanted.system && c.code === wanted.code) ?? false;
}

/**
 * The one HRex policy the Consent is under. Every policy entry must carry an HRex policy URI and
 * they must agree: another policy, or a policyRule, would add terms Baton does not evaluate.
 * (The profile carries the policy in Consent.policy.uri only; policyRule is not a form of it.)
 */
function hrexPolicy(consent: Consent): 'regular' | 'sensitive' | ConsentRefused {
  if (consent.policyRule) return refuse('consent-policy-unknown', 'Consent.policyRule is not supported: HRex Consent expresses its terms solely in Consent.policy.uri', 'policyRule');
  const found = new Set<'regular' | 'sensitive'>();
  for (const entry of consent.policy ?? []) {
    if (entry.uri === HREX_CONSENT_POLICY.regular) found.add('regular');
    else if (entry.uri === HREX_CONSENT_POLICY.sensitive) found.add('sensitive');
    else return refuse('consent-policy-unknown', 'Every Consent.policy must have a uri from the HRex consent policy value set (…hrex-consent.html#regular or #sensitive)', 'policy');
  }
  if (found.size !== 1) {
    return refuse('consent-policy-unknown', 'Consent.policy must hold exactly one HRex consent policy uri (…hrex-consent.html#regular or #sensitive)', 'policy');
  }
  return [...found][0];
}

/**
 * provision.period as instants, checked against now. A date-only bound covers its whole day in
 * UTC (a partial date its month or year): start at its first instant, end after its last, so
 * the period is [start, end) and a grant with valid_until = end ends exactly then.
 */
function consentPeriod(consent: Consent, now: Date): { start: string; end: string } | ConsentRefused {
  const period = consent.provision?.period;
  const start = dateTimeBounds(period?.start);
  const end = dateTimeBounds(period?.end);
  if (!start || !end || end[1] <= start[0]) {
    return refuse('consent-period-invalid', 'Consent.provision.period must have a start and an end that are FHIR dateTimes, the end not before the start (HRex Consent)', 'provision.period');
  }
  const [from, until] = [start[0], end[1]];
  if (now.getTime() < from) return refuse('consent-not-yet-valid', 'Consent.provision.period has not started yet', 'provision.period.start');
  if (now.getTime() >= until) return refuse('consent-expired', 'Consent.provision.period has ended', 'provision.period.end');
  return { start: new Date(from).toISOString(), end: new Date(until).toISOString() };
}

const DATE_TIME = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))?)?)?$/;

/** The first instant a FHIR dateTime covers and the instant after its last (the instant itself for a full dateTime); undefined when not a valid dateTime. */
function dateTimeBounds(value: string | undefined): [number, number] | undefined {
  const m = value === undefined ? null : DATE_TIME.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, time] = m;
  const year = Number(y);
  const month = mo === undefined ? 1 : Number(mo);
  const day = d === undefined ? 1 : Number(d);
  const first = new Date(Date.UTC(year, month - 1, day));
  // Rejects 2024-02-30 and the like, which Date.UTC would roll into the next month.
  if (first.getUTCFullYear() !== year || first.getUTCMonth() !== month - 1 || first.getUTCDate() !== day) return undefined;
  if (time !== undefined) {
    const instant = Date.parse(value as string);
    return Number.isNaN(instant) ? undefined : [instant, instant];
  }
  const after = d !== undefined ? Date.UTC(year, month - 1, day + 1) : mo !== undefined ? Date.UTC(year, month, 1) : Date.UTC(year + 1, 0, 1);
  return [first.getTime(), after];
}

/**
 * Whether an actor with the role names one of the identities: by Reference.identifier, or by a
 * reference to an Organization (contained or in the request) carrying one of them. A display
 * alone identifies no one.
 */
function someActorIdentifies(
  actors: ConsentProvisionActor[] | undefined,
  role: { system: string; code: string },
  identities: readonly OrganizationIdentifier[],
  resolve: ConsentContext['resolve'],
): boolean {
  const known = (system: string | undefined, value: string | undefined) => identities.some((i) => i.system === system && i.value === value);
  return (actors ?? []).some((actor) => hasCoding(actor.role, role) && referenceIdentifies(actor.reference, known, resolve));
}

function referenceIdentifies(reference: Reference | undefined, known: (system: string | undefined, value: string | undefined) => boolean, resolve: ConsentContext['resolve']): boolean {
  if (!reference) return false;
  if (reference.identifier && known(reference.identifier.system, reference.identifier.value)) return true;
  if (!reference.reference || !resolve) return false;
  const target = resolve(reference.reference);
  return target?.resourceType === 'Organization' && (target.identifier ?? []).some((i) => known(i.system, i.value));
}
