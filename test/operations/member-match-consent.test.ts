import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Consent, Organization, Parameters, Resource } from '@medplum/fhirtypes';
import { afterAll, describe, expect, it } from 'vitest';
import { CONSENT_EXPRESSION, type ConsentContext, type ConsentRefusal, evaluateConsent, HREX_CONSENT_POLICY } from '../../src/operations/member-match/consent.ts';
import { loadSensitiveDataRule, parseSensitiveDataRule, type SensitiveDataRule, SensitiveDataRuleError } from '../../src/operations/member-match/sensitive-data.ts';

/*
 * Issue 5, consent rules: a $member-match Consent is honoured only under the HRex Consent profile
 * (hrex-consent): active, patient-privacy / IDSCL / permit / disclose, the member's local
 * reference (mm-6), a period covering now, a recipient (IRCP) actor naming the caller and a source
 * (performer) actor naming this payer, policy #sensitive, or #regular when sensitive data can be
 * withheld. Anything else is refused with a code (mm-11).
 */

const NPI = 'http://hl7.org/fhir/sid/us-npi';
const NAIC = 'http://www.naic.org';
const NOW = new Date('2026-06-15T12:00:00Z');
const RULE: SensitiveDataRule = loadSensitiveDataRule();
const PAYER = [{ system: NPI, value: '1234567893' }];
const PARTNER = [
  { system: NAIC, value: '12345' },
  { system: NPI, value: '1111111112' },
];

function context(overrides: Partial<ConsentContext> = {}): ConsentContext {
  return { now: NOW, required: true, memberPatientReference: 'Patient/1', requester: PARTNER, payer: PAYER, sensitiveData: RULE, ...overrides };
}

const SOURCE_ROLE = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'performer' }] };
const RECIPIENT_ROLE = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] };

/** The HRex example request's Consent (Parameters-member-match-in), with this test's payers and a current period. */
function consent(policy: 'regular' | 'sensitive' = 'sensitive'): Consent {
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IDSCL' }] }],
    patient: { reference: 'Patient/1' },
    performer: [{ reference: 'Patient/1' }],
    sourceReference: { reference: 'http://example.org/DocumentReference/someconsent.pdf' },
    policy: [{ uri: HREX_CONSENT_POLICY[policy] }],
    provision: {
      type: 'permit',
      period: { start: '2026-06-01', end: '2026-12-31' },
      actor: [
        { role: SOURCE_ROLE, reference: { identifier: { system: NPI, value: '1234567893' }, display: 'Old Health Plan' } },
        { role: RECIPIENT_ROLE, reference: { identifier: { system: NAIC, value: '12345' }, display: 'New Health Plan' } },
      ],
      action: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentaction', code: 'disclose' }] }],
    },
  };
}

/** A variant of the base consent: `change` edits a deep copy. */
function variant(change: (c: Record<string, any>) => void, policy: 'regular' | 'sensitive' = 'sensitive'): Consent {
  const c: Record<string, any> = structuredClone(consent(policy));
  change(c);
  return c as Consent;
}

const refusal = (c: Consent | undefined, ctx: ConsentContext = context()) => {
  const verdict = evaluateConsent(c, ctx);
  if (verdict.ok) throw new Error(`expected a refusal, got ${JSON.stringify(verdict)}`);
  return verdict;
};

describe('honoured consents', () => {
  it('honours #sensitive fully: the period as instants, nothing excluded', () => {
    expect(evaluateConsent(consent('sensitive'), context())).toEqual({
      ok: true,
      policy: 'sensitive',
      period: { start: '2026-06-01T00:00:00.000Z', end: '2027-01-01T00:00:00.000Z' },
      excludedSecurity: [],
    });
  });

  it('honours #regular by excluding every label of the sensitive data rule', () => {
    const verdict = evaluateConsent(consent('regular'), context());
    expect(verdict).toMatchObject({ ok: true, policy: 'regular' });
    expect(verdict.ok && verdict.policy === 'regular' && verdict.excludedSecurity).toEqual([...RULE.labels]);
  });

  it('refuses #regular when the rule lists no labels, since sensitive data could not be withheld', () => {
    const none = { ...RULE, labels: [] };
    expect(refusal(consent('regular'), context({ sensitiveData: none })).code).toBe('consent-regular-unsupported');
    expect(evaluateConsent(consent('sensitive'), context({ sensitiveData: none }))).toMatchObject({ ok: true, policy: 'sensitive' });
  });

  it('answers "none" without a consent when none is required, and refuses when one is', () => {
    expect(evaluateConsent(undefined, context({ required: false }))).toEqual({ ok: true, policy: 'none' });
    expect(refusal(undefined)).toEqual({ ok: false, code: 'consent-missing', diagnostics: expect.any(String), expression: ['Parameters.parameter'] });
  });

  it('identifies the partner by any of its registered identifiers, and the payer by any of its own', () => {
    const byNpi = variant((c) => (c.provision.actor[1].reference = { identifier: { system: NPI, value: '1111111112' } }));
    expect(evaluateConsent(byNpi, context()).ok).toBe(true);
    const payerByNaic = context({ payer: [{ system: NAIC, value: '99999' }, ...PAYER] });
    expect(evaluateConsent(consent(), payerByNaic).ok).toBe(true);
  });

  it('accepts a mutual consent listing both payers in both roles', () => {
    const mutual = variant((c) => {
      const [source, recipient] = c.provision.actor;
      c.provision.actor.push({ role: SOURCE_ROLE, reference: recipient.reference }, { role: RECIPIENT_ROLE, reference: source.reference });
    });
    expect(evaluateConsent(mutual, context()).ok).toBe(true);
  });
});

describe('period', () => {
  const withPeriod = (start: string | undefined, end: string | undefined) =>
    variant((c) => {
      c.provision.period = { ...(start ? { start } : {}), ...(end ? { end } : {}) };
    });

  it.each<[string, string | undefined, string | undefined, ConsentRefusal]>([
    ['no end', '2026-01-01', undefined, 'consent-period-invalid'],
    ['no start', undefined, '2026-12-31', 'consent-period-invalid'],
    ['a date that does not exist', '2026-02-30', '2026-12-31', 'consent-period-invalid'],
    ['a time without a zone', '2026-01-01T00:00:00', '2026-12-31', 'consent-period-invalid'],
    ['not a date', 'yesterday', '2026-12-31', 'consent-period-invalid'],
    ['an end before the start', '2026-12-31', '2026-01-01', 'consent-period-invalid'],
    ['a start tomorrow', '2026-06-16', '2026-12-31', 'consent-not-yet-valid'],
    ['a start in an hour', '2026-06-15T13:00:00Z', '2026-12-31', 'consent-not-yet-valid'],
    ['an end yesterday', '2026-01-01', '2026-06-14', 'consent-expired'],
    ['an end an hour ago', '2026-01-01', '2026-06-15T11:00:00Z', 'consent-expired'],
    ['an end exactly now (the end is exclusive)', '2026-01-01', '2026-06-15T12:00:00Z', 'consent-expired'],
    ['an end in a zone where it is already past', '2026-01-01', '2026-06-15T13:00:00+02:00', 'consent-expired'],
  ])('refuses %s', (_name, start, end, code) => {
    const r = refusal(withPeriod(start, end));
    expect(r.code).toBe(code);
    expect(r.expression[0]).toMatch(/^Parameters\.parameter\.where\(name = 'Consent'\)\.resource\.provision\.period/);
  });

  it.each<[string, string, string, { start: string; end: string }]>([
    ['an end today covers the whole day', '2026-06-15', '2026-06-15', { start: '2026-06-15T00:00:00.000Z', end: '2026-06-16T00:00:00.000Z' }],
    ['partial dates cover their month and year', '2026-06', '2026', { start: '2026-06-01T00:00:00.000Z', end: '2027-01-01T00:00:00.000Z' }],
    ['times with zones are instants', '2026-06-15T08:00:00-04:00', '2026-06-15T14:30:00.5+02:00', { start: '2026-06-15T12:00:00.000Z', end: '2026-06-15T12:30:00.500Z' }],
    ['a leap day', '2024-02-29', '2028-02-29', { start: '2024-02-29T00:00:00.000Z', end: '2028-03-01T00:00:00.000Z' }],
  ])('accepts %s', (_name, start, end, period) => {
    expect(evaluateConsent(withPeriod(start, end), context())).toMatchObject({ ok: true, period });
  });
});

describe('refusals, one per rule', () => {
  it.each<[string, (c: Record<string, any>) => void, ConsentRefusal, string]>([
    ['a draft consent', (c) => (c.status = 'draft'), 'consent-inactive', 'status'],
    ['a rejected consent', (c) => (c.status = 'rejected'), 'consent-inactive', 'status'],
    ['another patient', (c) => (c.patient = { reference: 'Patient/2' }), 'consent-patient-mismatch', 'patient'],
    ['an absolute patient reference (mm-6 wants local ones)', (c) => (c.patient = { reference: 'http://example.org/fhir/Patient/1' }), 'consent-patient-mismatch', 'patient'],
    ['a patient by identifier only', (c) => (c.patient = { identifier: { system: 'urn:x', value: '1' } }), 'consent-patient-mismatch', 'patient'],
    ['a research scope', (c) => (c.scope.coding[0].code = 'research'), 'consent-not-disclosure', 'scope'],
    ['no IDSCL category', (c) => (c.category = [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }]), 'consent-not-disclosure', 'category'],
    ['IDSCL under another system', (c) => (c.category[0].coding[0].system = 'http://terminology.hl7.org/CodeSystem/v3-ActReason'), 'consent-not-disclosure', 'category'],
    ['no provision', (c) => delete c.provision, 'consent-not-disclosure', 'provision'],
    ['a deny provision', (c) => (c.provision.type = 'deny'), 'consent-not-disclosure', 'provision.type'],
    ['an access action', (c) => (c.provision.action[0].coding[0].code = 'access'), 'consent-not-disclosure', 'provision.action'],
    ['two actions', (c) => c.provision.action.push({ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentaction', code: 'use' }] }), 'consent-not-disclosure', 'provision.action'],
    ['no action', (c) => delete c.provision.action, 'consent-not-disclosure', 'provision.action'],
    ['a provision narrowed by security label', (c) => (c.provision.securityLabel = [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }]), 'consent-unsupported-terms', 'provision.securityLabel'],
    ['a provision narrowed by purpose', (c) => (c.provision.purpose = [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' }]), 'consent-unsupported-terms', 'provision.purpose'],
    ['a provision narrowed by data period', (c) => (c.provision.dataPeriod = { start: '2020-01-01' }), 'consent-unsupported-terms', 'provision.dataPeriod'],
    ['a nested provision', (c) => (c.provision.provision = [{ type: 'deny' }]), 'consent-unsupported-terms', 'provision.provision'],
    ['no performer', (c) => delete c.performer, 'consent-unattested', 'performer'],
    ['two performers', (c) => c.performer.push({ reference: 'RelatedPerson/x' }), 'consent-unattested', 'performer'],
    ['no source document', (c) => delete c.sourceReference, 'consent-unattested', 'sourceReference'],
    ['no policy', (c) => delete c.policy, 'consent-policy-unknown', 'policy'],
    ['a policy outside the HRex value set', (c) => (c.policy = [{ uri: 'http://example.org/consent-policy#all' }]), 'consent-policy-unknown', 'policy'],
    ['an HRex policy next to another one', (c) => c.policy.push({ uri: 'http://example.org/state-law' }), 'consent-policy-unknown', 'policy'],
    ['both HRex policies at once', (c) => c.policy.push({ uri: HREX_CONSENT_POLICY.regular }), 'consent-policy-unknown', 'policy'],
    ['the policy URI with another fragment', (c) => (c.policy = [{ uri: HREX_CONSENT_POLICY.sensitive.replace('#sensitive', '#everything') }]), 'consent-policy-unknown', 'policy'],
    ['a policy only by authority', (c) => (c.policy = [{ authority: 'https://www.cms.gov' }]), 'consent-policy-unknown', 'policy'],
    ['a policyRule', (c) => (c.policyRule = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] }), 'consent-policy-unknown', 'policyRule'],
    ['a recipient that is another partner', (c) => (c.provision.actor[1].reference.identifier.value = '54321'), 'consent-recipient-mismatch', 'provision.actor'],
    ['a recipient value under another system', (c) => (c.provision.actor[1].reference.identifier.system = NPI), 'consent-recipient-mismatch', 'provision.actor'],
    ['a recipient by display only', (c) => (c.provision.actor[1].reference = { display: 'New Health Plan' }), 'consent-recipient-mismatch', 'provision.actor'],
    ['the partner in the source role only', (c) => (c.provision.actor[1].role = SOURCE_ROLE), 'consent-recipient-mismatch', 'provision.actor'],
    ['the recipient role under another system', (c) => (c.provision.actor[1].role = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-RoleCode', code: 'IRCP' }] }), 'consent-recipient-mismatch', 'provision.actor'],
    ['no actors', (c) => delete c.provision.actor, 'consent-recipient-mismatch', 'provision.actor'],
    ['a source that is another payer', (c) => (c.provision.actor[0].reference.identifier.value = '9876543210'), 'consent-source-mismatch', 'provision.actor'],
    ['this payer as recipient only', (c) => (c.provision.actor[0].role = RECIPIENT_ROLE), 'consent-source-mismatch', 'provision.actor'],
  ])('refuses %s', (_name, change, code, path) => {
    const r = refusal(variant(change));
    expect(r.code).toBe(code);
    expect(r.expression).toEqual([`${CONSENT_EXPRESSION}.${path}`]);
    expect(r.diagnostics.length).toBeGreaterThan(20);
  });

  it('refuses a resource that is not a Consent', () => {
    const r = refusal({ resourceType: 'Patient' } as unknown as Consent);
    expect(r).toMatchObject({ code: 'consent-not-disclosure', expression: [CONSENT_EXPRESSION] });
  });

  it('checks the member before anything else that could be probed: a wrong patient is refused even on an expired consent', () => {
    const r = refusal(
      variant((c) => {
        c.patient = { reference: 'Patient/2' };
        c.provision.period = { start: '2020-01-01', end: '2020-12-31' };
      }),
    );
    expect(r.code).toBe('consent-patient-mismatch');
  });

  it('never echoes the member, the parties or the period in its diagnostics', () => {
    // Every refusal above, on a consent full of distinctive values.
    const member = 'Patient/member-4711-appleseed';
    const ctx = context({ memberPatientReference: member });
    const base = (c: Record<string, any>) => {
      c.patient = { reference: member };
      c.performer = [{ reference: member, display: 'Johnny Appleseed' }];
    };
    const cases: ((c: Record<string, any>) => void)[] = [
      (c) => (c.status = 'inactive'),
      (c) => (c.patient = { reference: 'Patient/other-0815', display: 'Jane Roe' }),
      (c) => (c.provision.type = 'deny'),
      (c) => (c.provision.securityLabel = [{ code: 'PSY' }]),
      (c) => delete c.sourceReference,
      (c) => (c.policy = [{ uri: 'http://example.org/p-31337' }]),
      (c) => (c.provision.period = { start: '2019-03-07', end: '2019-04-01' }),
      (c) => (c.provision.period = { start: '2031-03-07', end: '2031-04-01' }),
      (c) => (c.provision.period = { start: '2031-03-07', end: '2019-04-01' }),
      (c) => (c.provision.actor[1].reference.identifier.value = '55501'),
      (c) => (c.provision.actor[0].reference.identifier.value = '55502'),
    ];
    const secrets = ['4711', 'appleseed', 'Appleseed', '0815', 'Jane', '31337', '2019', '2031', '55501', '55502', '12345', '1234567893', '1111111112'];
    for (const change of cases) {
      const r = refusal(
        variant((c) => {
          base(c);
          change(c);
        }),
        ctx,
      );
      for (const secret of secrets) expect(r.diagnostics, `${r.code}: ${secret}`).not.toContain(secret);
    }
  });
});

describe('actors by reference to an Organization in the request', () => {
  const partnerOrg: Organization = { resourceType: 'Organization', id: 'org1', identifier: [{ system: NAIC, value: '12345' }], name: 'New Health Plan' };
  const payerOrg: Organization = { resourceType: 'Organization', id: 'org2', identifier: [{ system: NPI, value: '1234567893' }], name: 'Old Health Plan' };
  const byReference = (recipient: string, source: string) =>
    variant((c) => {
      c.contained = [partnerOrg, payerOrg];
      c.provision.actor[1].reference = { reference: recipient };
      c.provision.actor[0].reference = { reference: source };
    });
  const resolver =
    (entries: Record<string, Resource>) =>
    (reference: string): Resource | undefined =>
      entries[reference];

  it('identifies both payers through contained Organizations', () => {
    const resolve = resolver({ '#org1': partnerOrg, '#org2': payerOrg });
    expect(evaluateConsent(byReference('#org1', '#org2'), context({ resolve }))).toMatchObject({ ok: true, policy: 'sensitive' });
  });

  it('identifies them through Organizations elsewhere in the request', () => {
    const resolve = resolver({ 'urn:uuid:5c5b0e2c-0b8e-4f3e-9a57-0d7f1b9d2c11': partnerOrg, 'Organization/Payer1': payerOrg });
    expect(evaluateConsent(byReference('urn:uuid:5c5b0e2c-0b8e-4f3e-9a57-0d7f1b9d2c11', 'Organization/Payer1'), context({ resolve })).ok).toBe(true);
  });

  it.each<[string, Record<string, Resource>, ConsentRefusal]>([
    ['does not resolve', { '#org2': payerOrg }, 'consent-recipient-mismatch'],
    ['resolves to an Organization with other identifiers', { '#org1': { ...partnerOrg, identifier: [{ system: NAIC, value: '54321' }] }, '#org2': payerOrg }, 'consent-recipient-mismatch'],
    ['resolves to an Organization without identifiers', { '#org1': { resourceType: 'Organization', name: 'New Health Plan' }, '#org2': payerOrg }, 'consent-recipient-mismatch'],
    ['resolves to something other than an Organization', { '#org1': { resourceType: 'Patient', identifier: [{ system: NAIC, value: '12345' }] }, '#org2': payerOrg }, 'consent-recipient-mismatch'],
    ['names the partner as the source too', { '#org1': partnerOrg, '#org2': partnerOrg }, 'consent-source-mismatch'],
  ])('refuses a reference that %s', (_name, entries, code) => {
    expect(refusal(byReference('#org1', '#org2'), context({ resolve: resolver(entries) })).code).toBe(code);
  });

  it('identifies no one by reference when the caller can resolve nothing', () => {
    expect(refusal(byReference('#org1', '#org2')).code).toBe('consent-recipient-mismatch');
  });

  it('accepts an identifier and a reference on one actor when either identifies the party', () => {
    const both = variant((c) => (c.provision.actor[1].reference = { reference: '#elsewhere', identifier: { system: NAIC, value: '12345' } }));
    expect(evaluateConsent(both, context({ resolve: () => undefined })).ok).toBe(true);
  });
});

const FIXTURES = new URL('../../../shared/fixtures/davinci/', import.meta.url);

describe.skipIf(!existsSync(FIXTURES))('published consents (needs ../shared/fixtures/davinci)', () => {
  const fixture = <T>(name: string): T => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;
  const requestConsent = (name: string) => (fixture<Parameters>(name).parameter ?? []).find((p) => p.name === 'Consent')?.resource as Consent;
  /** The fixture with a period that covers NOW (the published ones ended in 2022 and 2024). */
  const current = (c: Consent): Consent => ({ ...c, provision: { ...c.provision, period: { start: '2026-06-01', end: '2026-06-30' } } });
  const OLD_PLAN = [{ system: NPI, value: '9876543210' }];
  const PROVIDER_ORG = [{ system: NPI, value: '0000000001' }];
  const NEW_PLAN = [{ system: NPI, value: '0123456789' }];

  it("refuses the Inferno spec consent as published: its period ended in January 2022", () => {
    const ctx = context({ memberPatientReference: 'Patient/999', payer: OLD_PLAN, requester: PROVIDER_ORG, now: new Date() });
    expect(refusal(fixture<Consent>('inferno/spec-consent.json'), ctx).code).toBe('consent-expired');
  });

  it('honours the Inferno spec consent (#regular) with a current period, old plan as source and the provider organization as recipient', () => {
    const ctx = context({ memberPatientReference: 'Patient/999', payer: OLD_PLAN, requester: PROVIDER_ORG });
    const verdict = evaluateConsent(current(fixture<Consent>('inferno/spec-consent.json')), ctx);
    expect(verdict).toEqual({ ok: true, policy: 'regular', period: { start: '2026-06-01T00:00:00.000Z', end: '2026-07-01T00:00:00.000Z' }, excludedSecurity: [...RULE.labels] });
  });

  it('refuses the Inferno spec consent from a partner it does not name, or at a payer it does not name', () => {
    const spec = current(fixture<Consent>('inferno/spec-consent.json'));
    expect(refusal(spec, context({ memberPatientReference: 'Patient/999', payer: OLD_PLAN, requester: NEW_PLAN })).code).toBe('consent-recipient-mismatch');
    expect(refusal(spec, context({ memberPatientReference: 'Patient/999', payer: PAYER, requester: PROVIDER_ORG })).code).toBe('consent-source-mismatch');
    expect(refusal(spec, context({ memberPatientReference: 'Patient/1', payer: OLD_PLAN, requester: PROVIDER_ORG })).code).toBe('consent-patient-mismatch');
  });

  it('honours the Inferno preset request consent (#sensitive, PDex profile) with a current period', () => {
    const preset = current(requestConsent('inferno/preset-ri-member-match-request.json'));
    expect(evaluateConsent(preset, context({ payer: OLD_PLAN, requester: NEW_PLAN }))).toMatchObject({ ok: true, policy: 'sensitive', excludedSecurity: [] });
    expect(refusal(requestConsent('inferno/preset-ri-member-match-request.json'), context({ payer: OLD_PLAN, requester: NEW_PLAN, now: new Date() })).code).toBe('consent-expired');
  });

  it('honours the HRex 1.0.0 example request consent with a current period', () => {
    const example = current(requestConsent('ig/hrex-1.0.0/Parameters-member-match-in.json'));
    expect(evaluateConsent(example, context({ payer: OLD_PLAN, requester: NEW_PLAN }))).toMatchObject({ ok: true, policy: 'regular' });
  });

  it('honours the Inferno spec consent when the recipient is a contained Organization carrying the identifier', () => {
    const spec = current(fixture<Consent>('inferno/spec-consent.json'));
    const org: Organization = { resourceType: 'Organization', id: 'recipient', identifier: [{ system: NPI, value: '0000000001' }], name: 'Provider organization' };
    const contained: Consent = {
      ...spec,
      contained: [org],
      provision: { ...spec.provision, actor: spec.provision?.actor?.map((a) => (a.role.coding?.[0].code === 'IRCP' ? { ...a, reference: { reference: '#recipient' } } : a)) },
    };
    const resolve = (reference: string) => (reference === '#recipient' ? (contained.contained?.[0] as Resource) : undefined);
    const ctx = context({ memberPatientReference: 'Patient/999', payer: OLD_PLAN, requester: PROVIDER_ORG });
    expect(evaluateConsent(contained, { ...ctx, resolve })).toMatchObject({ ok: true, policy: 'regular' });
    expect(refusal(contained, ctx).code).toBe('consent-recipient-mismatch');
  });
});

describe('the sensitive data rule', () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-sensitive-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };

  it('ships a rule covering every label the seeded population carries', () => {
    const catalogue = JSON.parse(readFileSync(new URL('../../config/seed/clinical.json', import.meta.url), 'utf8')) as { conditions: { security?: string }[] };
    const seeded = new Set(catalogue.conditions.flatMap((c) => (c.security ? [`http://terminology.hl7.org/CodeSystem/v3-ActCode|${c.security}`] : [])));
    expect(seeded.size).toBeGreaterThanOrEqual(3);
    for (const label of seeded) expect(RULE.labels).toContain(label);
    expect(RULE.version).toBe(1);
  });

  it('loads a rule from a path', () => {
    const path = write('ok.json', JSON.stringify({ version: 2, description: 'HIV only', labels: ['http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV'] }));
    expect(loadSensitiveDataRule(path)).toEqual({ version: 2, description: 'HIV only', labels: ['http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV'] });
  });

  it.each<[string, unknown, RegExp]>([
    ['a label without a system', { version: 1, description: 'd', labels: ['PSY'] }, /labels\[0\] must be "system\|code"/],
    ['a label with a relative system', { version: 1, description: 'd', labels: ['v3-ActCode|PSY'] }, /labels\[0\]/],
    ['a label without a code', { version: 1, description: 'd', labels: ['http://terminology.hl7.org/CodeSystem/v3-ActCode|'] }, /labels\[0\]/],
    ['a label that is not a string', { version: 1, description: 'd', labels: [{ system: 'x', code: 'y' }] }, /labels\[0\]/],
    ['a repeated label', { version: 1, description: 'd', labels: ['urn:x|A', 'urn:x|A'] }, /labels\[1\] repeats urn:x\|A/],
    ['no labels array', { version: 1, description: 'd' }, /"labels" must be an array/],
    ['a version that is not a positive integer', { version: '1', description: 'd', labels: [] }, /"version" must be a positive integer/],
    ['no description', { version: 1, labels: [] }, /"description" must be a non-empty string/],
    ['an unknown setting', { version: 1, description: 'd', labels: [], tags: [] }, /"tags" is not a known setting/],
    ['an array', [], /must be a JSON object/],
  ])('rejects %s with an error naming it', (_name, value, message) => {
    const path = write('bad.json', JSON.stringify(value));
    expect(() => loadSensitiveDataRule(path)).toThrow(SensitiveDataRuleError);
    expect(() => loadSensitiveDataRule(path)).toThrow(message);
  });

  it('names the file when it is missing or not JSON', () => {
    expect(() => loadSensitiveDataRule(join(dir, 'absent.json'))).toThrow(/absent\.json: cannot be read \(ENOENT\)/);
    expect(() => loadSensitiveDataRule(write('broken.json', '{"version": 1,'))).toThrow(/broken\.json: is not JSON/);
  });

  it('accepts an empty list: sensitive data cannot be told apart, so #regular consents are refused', () => {
    const empty = parseSensitiveDataRule({ version: 1, description: 'nothing is labelled here', labels: [] });
    expect(empty.labels).toEqual([]);
    expect(refusal(consent('regular'), context({ sensitiveData: empty })).code).toBe('consent-regular-unsupported');
  });
});
