import { describe, expect, it } from 'vitest';
import { covers, grantScopes, isKnownScope } from '../../src/auth/scopes.ts';

describe('covers', () => {
  it.each([
    ['system/Patient.read', 'system/Patient.read', true],
    ['system/*.read', 'system/Patient.read', true],
    ['system/*.read', 'system/Patient.rs', true],
    ['system/Patient.read', 'system/Patient.r', true],
    ['system/Patient.read', 'system/Patient.s', true],
    ['system/Patient.read', 'system/Patient.write', false],
    ['system/Patient.read', 'system/Patient.cruds', false],
    ['system/Patient.read', 'system/Coverage.read', false],
    ['system/Patient.*', 'system/Patient.cruds', true],
    ['system/*.*', 'system/Coverage.write', true],
    ['system/Patient.rs', 'system/Patient.read', true],
    ['system/Patient.rs', 'system/*.rs', false],
    ['system/Patient.cud', 'system/Patient.write', true],
    ['system/Observation.rs?category=laboratory', 'system/Observation.rs', false],
    ['system/Observation.rs', 'system/Observation.rs?category=laboratory', true],
    ['system/Observation.rs?category=laboratory', 'system/Observation.rs?category=laboratory', true],
    ['http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match', 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match', true],
    ['system/*.*', 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match', false],
  ])('%s covers %s: %s', (held, wanted, expected) => {
    expect(covers(held, wanted)).toBe(expected);
  });
});

describe('grantScopes', () => {
  it.each([
    [['system/Patient.read'], ['system/Patient.read'], ['system/Patient.read']],
    [['system/Patient.read'], ['system/*.read'], ['system/Patient.read']],
    [['system/*.read'], ['system/Patient.read', 'system/Coverage.rs'], ['system/Patient.read', 'system/Coverage.rs']],
    [['system/Patient.write'], ['system/Patient.read'], []],
    [['system/Claim.read'], ['system/Patient.read'], []],
    [['system/Patient.read', 'system/Claim.read'], ['system/Patient.read'], ['system/Patient.read']],
    [['launch/patient'], ['system/*.*'], []],
  ])('requested %j with registered %j grants %j', (requested, registered, granted) => {
    expect(grantScopes(requested, registered)).toEqual(granted);
  });
});

describe('isKnownScope', () => {
  it.each([
    ['system/Patient.read', true],
    ['system/*.rs', true],
    ['system/Observation.rs?category=laboratory', true],
    ['system/Patient.sr', false],
    ['system/Patient.read?x=1', false],
    ['user/Patient.read', false],
    ['system/patient.read', false],
    ['http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch', true],
    ['openid', false],
  ])('%s: %s', (scope, expected) => {
    expect(isKnownScope(scope)).toBe(expected);
  });
});
