import { describe, expect, it } from 'vitest';
import { getAllSearchParameters, getResourceTypes } from '../../../src/fhir/definitions.ts';
import { searchParam, searchParamsOf } from '../../../src/fhir/search/parameters.ts';

describe('searchParamsOf', () => {
  it('knows every R4 SearchParameter with an expression for every resource type', () => {
    let expected = 0;
    let known = 0;
    for (const type of getResourceTypes()) {
      const params = searchParamsOf(type);
      for (const sp of getAllSearchParameters()) {
        const bases = sp.base as string[];
        const applies = bases.includes(type) || bases.includes('Resource') || (bases.includes('DomainResource') && !['Bundle', 'Binary', 'Parameters'].includes(type));
        if (!applies || !sp.expression || sp.type === 'special') continue;
        expected++;
        if (params.has(sp.code as string)) known++;
      }
    }
    expect(expected).toBeGreaterThan(2400);
    expect(known).toBe(expected);
  });

  it.each([
    ['Observation', 'code', { table: 'token', codes: ['code'] }],
    ['Observation', 'combo-code', { table: 'token', codes: ['code', 'component-code'] }],
    ['Observation', 'combo-value-quantity', { table: 'quantity', codes: ['component-value-quantity', 'value-quantity'] }],
    ['Observation', 'patient', { table: 'reference', codes: ['subject'], targetType: 'Patient' }],
    ['Patient', 'phonetic', { table: 'string', codes: ['name'] }],
    ['AuditEvent', 'patient', { table: 'reference', codes: ['agent', 'entity'], targetType: 'Patient' }],
    ['Coverage', 'beneficiary', { table: 'reference', codes: ['beneficiary'] }],
  ])('%s %s reads %j', (type, code, rows) => {
    expect(searchParam(type, code)?.rows).toEqual(rows);
  });

  it('extracts only parameters that own their rows', () => {
    expect(searchParam('Observation', 'code')?.evaluate).toBeDefined();
    expect(searchParam('Observation', 'combo-code')?.evaluate).toBeUndefined();
    expect(searchParam('Observation', 'patient')?.evaluate).toBeUndefined();
  });

  it('answers a composite over the resource from its components, and a composite over an element from its own rows', () => {
    expect(searchParam('Observation', 'code-value-quantity')?.composite).toEqual([
      {
        kind: 'and',
        components: [
          { table: 'token', codes: ['code'] },
          { table: 'quantity', codes: ['value-quantity'] },
        ],
      },
    ]);
    const rows = {
      kind: 'rows',
      components: [
        { table: 'token', code: 'component-code-value-quantity#0' },
        { table: 'quantity', code: 'component-code-value-quantity#1' },
      ],
    };
    expect(searchParam('Observation', 'component-code-value-quantity')?.composite).toEqual([rows]);
    expect(searchParam('Observation', 'combo-code-value-quantity')?.composite).toEqual([searchParam('Observation', 'code-value-quantity')?.composite?.[0], rows]);
  });

  it('keeps _id and _lastUpdated on the resources table', () => {
    expect(searchParam('Patient', '_id')).toMatchObject({ column: 'id', type: 'token' });
    expect(searchParam('Patient', '_lastUpdated')).toMatchObject({ column: 'last_updated', type: 'date' });
  });

  it('does not give DomainResource parameters to Bundle, Binary and Parameters', () => {
    expect(searchParam('Bundle', '_text')).toBeUndefined();
    expect(searchParam('Bundle', '_tag')).toBeDefined();
  });
});
