import { describe, expect, it } from 'vitest';
import { chooseRoute, inCanary, parseRuleSet, type RuleSet, RuleSetError } from '../../src/workflow/routing.ts';

const RULES: RuleSet = parseRuleSet({
  rules: [
    { id: 'acme-medicare-bulk', when: { payer: ['urn:naic|12345'], lineOfBusiness: ['medicare'], requestType: ['bulk'] }, endpoint: 'Endpoint/acme-bulk' },
    { id: 'acme-east', when: { payer: ['urn:naic|12345'], region: ['MA', 'NY'] }, endpoint: 'Endpoint/acme-east' },
    { id: 'acme', when: { payer: ['urn:naic|12345', 'http://hl7.org/fhir/sid/us-npi|1999999984'] }, endpoint: 'Endpoint/acme' },
  ],
});

const facts = (over: Partial<Parameters<typeof chooseRoute>[1]> = {}) => ({ payer: ['urn:naic|12345'], lineOfBusiness: [], region: [], requestType: undefined, ...over });

describe('routing rules', () => {
  it.each([
    ['every condition of the first rule holds', facts({ lineOfBusiness: ['medicare'], requestType: 'bulk' as const }), 'acme-medicare-bulk'],
    ['one condition of the first rule fails: the next that applies', facts({ lineOfBusiness: ['medicare'], requestType: 'single-member' as const, region: ['NY'] }), 'acme-east'],
    ['only the payer is known', facts(), 'acme'],
    ['the payer by another of its identifiers', facts({ payer: ['http://hl7.org/fhir/sid/us-npi|1999999984'] }), 'acme'],
    ['no rule names the payer', facts({ payer: ['urn:naic|99999'] }), undefined],
  ])('chooses by the first rule that applies: %s', (_case, given, expected) => {
    expect(chooseRoute(RULES, given)?.id).toBe(expected);
  });

  it.each([
    [{}, 'A rule set is'],
    [{ rules: [{ id: '', endpoint: 'Endpoint/a' }] }, 'rules[0].id'],
    [{ rules: [{ id: 'a', endpoint: 'Endpoint/a' }, { id: 'a', endpoint: 'Endpoint/b' }] }, 'used twice'],
    [{ rules: [{ id: 'a', endpoint: 'Organization/a' }] }, 'rules[0].endpoint'],
    [{ rules: [{ id: 'a', when: { state: ['MA'] }, endpoint: 'Endpoint/a' }] }, 'not a routing condition'],
    [{ rules: [{ id: 'a', when: { region: [] }, endpoint: 'Endpoint/a' }] }, 'non-empty list'],
    [{ rules: [{ id: 'a', when: { requestType: ['fax'] }, endpoint: 'Endpoint/a' }] }, 'requestType'],
    [{ rules: [{ id: 'a', when: { payer: ['12345'] }, endpoint: 'Endpoint/a' }] }, 'system|value'],
  ])('refuses an invalid rule set %#, saying where', (value, message) => {
    expect(() => parseRuleSet(value)).toThrow(RuleSetError);
    expect(() => parseRuleSet(value)).toThrow(message);
  });

  it('puts a stable share of requests in a canary', () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => `task-${i}`);
    const share = ids.filter((id) => inCanary(id, 10)).length / ids.length;
    expect(share).toBeGreaterThan(0.08);
    expect(share).toBeLessThan(0.12);
    // The same request stays on the same side, on every retry and in every process.
    expect(ids.filter((id) => inCanary(id, 10))).toEqual(ids.filter((id) => inCanary(id, 10)));
    expect(ids.every((id) => !inCanary(id, 0) && inCanary(id, 100))).toBe(true);
  });
});
