import { describe, expect, it } from 'vitest';
import { FhirError } from '../../../src/fhir/errors.ts';
import { parseSearchRequest } from '../../../src/fhir/search/parse.ts';
import type { Filter, SearchRequest } from '../../../src/fhir/search/request.ts';

const BASE = 'http://baton.test/fhir';

function parse(type: string, query: string, strict = false): SearchRequest {
  return parseSearchRequest(type, new URLSearchParams(query), { strict, baseUrl: BASE });
}

function onlyFilter(type: string, query: string): Filter {
  const request = parse(type, query);
  expect(request.filters).toHaveLength(1);
  return request.filters[0];
}

function rejection(type: string, query: string, strict = false): FhirError {
  try {
    parse(type, query, strict);
  } catch (error) {
    if (error instanceof FhirError) return error;
    throw error;
  }
  throw new Error(`${query} was accepted`);
}

describe('parseSearchRequest: filters', () => {
  it.each([
    ['identifier=http://x|123', { system: 'http://x', code: '123' }],
    ['identifier=|123', { system: null, code: '123' }],
    ['identifier=http://x|', { system: 'http://x', code: undefined }],
    ['identifier=123', { system: undefined, code: '123' }],
    ['identifier=urn:oid:1.2\\|3|a\\,b', { system: 'urn:oid:1.2|3', code: 'a,b' }],
  ])('token %s', (query, token) => {
    expect(onlyFilter('Patient', query)).toEqual({ kind: 'index', rows: { table: 'token', codes: ['identifier'] }, predicates: [{ type: 'token', ...token }], negate: false });
  });

  it('reads :not with alternatives as "none of them"', () => {
    expect(onlyFilter('Patient', 'gender:not=male,female')).toMatchObject({ negate: true, predicates: [{ code: 'male' }, { code: 'female' }] });
  });

  it.each([
    ['name=Müller', { mode: 'prefix', value: 'muller' }],
    ['name:exact=Müller', { mode: 'exact', value: 'Müller' }],
    ['name:contains=ÜLL', { mode: 'contains', value: 'ull' }],
  ])('string %s', (query, predicate) => {
    expect(onlyFilter('Patient', query)).toMatchObject({ rows: { table: 'string', codes: ['name'] }, predicates: [{ type: 'string', ...predicate }] });
  });

  it.each([
    ['birthdate=1986', 'eq', '1986-01-01T00:00:00.000Z', '1986-12-31T23:59:59.999Z'],
    ['birthdate=ge2000-02', 'ge', '2000-02-01T00:00:00.000Z', '2000-02-29T23:59:59.999Z'],
    ['birthdate=sa2000-01-01', 'sa', '2000-01-01T00:00:00.000Z', '2000-01-01T23:59:59.999Z'],
  ])('date %s', (query, prefix, start, end) => {
    expect(onlyFilter('Patient', query)).toMatchObject({ predicates: [{ type: 'date', prefix, range: { start, end } }] });
  });

  it.each([
    ['value-quantity=5.4', { prefix: 'eq', value: '5.4', half: '5e-2' }],
    ['value-quantity=100', { prefix: 'eq', value: '100', half: '5e-1' }],
    ['value-quantity=1e2', { prefix: 'eq', value: '1e2', half: '5e1' }],
    ['value-quantity=gt5.4|http://unitsofmeasure.org|mg', { prefix: 'gt', value: '5.4', system: 'http://unitsofmeasure.org', unit: 'mg' }],
    ['value-quantity=le5.4||mg', { prefix: 'le', value: '5.4', system: undefined, unit: 'mg' }],
  ])('quantity %s', (query, predicate) => {
    expect(onlyFilter('Observation', query)).toMatchObject({ rows: { table: 'quantity' }, predicates: [{ type: 'number', ...predicate }] });
  });

  it.each([
    ['subject=Patient/1', { targetType: 'Patient', id: '1' }],
    ['subject=1', { id: '1' }],
    ['subject:Patient=1', { targetType: 'Patient', id: '1' }],
    ['subject=Patient/1/_history/2', { targetType: 'Patient', id: '1' }],
    [`subject=${BASE}/Patient/1`, { targetType: 'Patient', id: '1' }],
    ['subject=https://partner.example/fhir/Patient/1', { url: 'https://partner.example/fhir/Patient/1' }],
    ['subject=urn:uuid:2b6b4c1a-1d0e-4b8f-9d3a-0f5e9a1b2c3d', { url: 'urn:uuid:2b6b4c1a-1d0e-4b8f-9d3a-0f5e9a1b2c3d' }],
  ])('reference %s', (query, predicate) => {
    expect(onlyFilter('Observation', query)).toEqual({ kind: 'index', rows: { table: 'reference', codes: ['subject'] }, predicates: [{ type: 'reference', ...predicate }], negate: false });
  });

  it('searches patient as the subjects that are Patients', () => {
    expect(onlyFilter('Observation', 'patient=1')).toMatchObject({
      rows: { table: 'reference', codes: ['subject'], targetType: 'Patient' },
      predicates: [{ type: 'reference', targetType: 'Patient', id: '1' }],
    });
  });

  it('searches combo-code as the union of code and component-code', () => {
    expect(onlyFilter('Observation', 'combo-code=8480-6')).toMatchObject({ rows: { table: 'token', codes: ['code', 'component-code'] } });
  });

  it('reads :identifier on a reference as a token on the logical identifier', () => {
    expect(onlyFilter('Coverage', 'payor:identifier=http://hl7.org/fhir/sid/us-npi|9876543210')).toEqual({
      kind: 'index',
      rows: { table: 'token', codes: ['payor:identifier'] },
      predicates: [{ type: 'token', system: 'http://hl7.org/fhir/sid/us-npi', code: '9876543210' }],
      negate: false,
    });
  });

  it('reads a chain into the target type', () => {
    expect(onlyFilter('Observation', 'subject:Patient.identifier=http://x|1')).toEqual({
      kind: 'chain',
      rows: { table: 'reference', codes: ['subject'] },
      targets: [{ type: 'Patient', filter: { kind: 'index', rows: { table: 'token', codes: ['identifier'] }, predicates: [{ type: 'token', system: 'http://x', code: '1' }], negate: false } }],
    });
  });

  it('chains without a type into every target type that has the parameter', () => {
    const filter = onlyFilter('Observation', 'subject.name=smith');
    expect(filter.kind === 'chain' && filter.targets.map((t) => t.type).sort()).toEqual(['Location', 'Patient']);
  });

  it('reads _has as a reverse chain', () => {
    expect(onlyFilter('Patient', '_has:Observation:patient:code=8867-4')).toMatchObject({
      kind: 'has',
      type: 'Observation',
      rows: { table: 'reference', codes: ['subject'], targetType: 'Patient' },
      filter: { kind: 'index', rows: { codes: ['code'] } },
    });
  });

  it('reads a composite value per component type', () => {
    expect(onlyFilter('Observation', 'component-code-value-quantity=http://loinc.org|8480-6$gt100')).toMatchObject({
      kind: 'composite',
      alternatives: [
        [
          { type: 'token', system: 'http://loinc.org', code: '8480-6' },
          { type: 'number', prefix: 'gt', value: '100' },
        ],
      ],
    });
  });

  it.each([
    ['code:missing=true', true],
    ['code:missing=false', false],
  ])('%s', (query, missing) => {
    expect(onlyFilter('Observation', query)).toEqual({ kind: 'missing', present: [[{ table: 'token', codes: ['code'] }]], missing });
  });

  it('reads _id and _lastUpdated as columns of the resource', () => {
    const request = parse('Patient', '_id=a,b&_lastUpdated=gt2024');
    expect(request.filters).toEqual([
      {
        kind: 'column',
        column: 'id',
        predicates: [
          { type: 'id', id: 'a' },
          { type: 'id', id: 'b' },
        ],
      },
      { kind: 'column', column: 'last_updated', predicates: [{ type: 'date', prefix: 'gt', range: { start: '2024-01-01T00:00:00.000Z', end: '2024-12-31T23:59:59.999Z' } }] },
    ]);
  });

  it('ANDs repeated parameters', () => {
    expect(parse('Patient', 'birthdate=ge1950&birthdate=lt1960').filters).toHaveLength(2);
  });
});

describe('parseSearchRequest: result parameters', () => {
  it('reads paging, sorting, totals, representation and includes', () => {
    const request = parse(
      'Observation',
      '_count=5&_offset=10&_sort=-date,_id,patient&_total=accurate&_summary=true&_elements=code,Observation.status&_include=Observation:patient&_revinclude=Provenance:target&_include:iterate=Patient:organization',
    );
    expect(request).toMatchObject({
      count: 5,
      offset: 10,
      total: 'accurate',
      summary: 'true',
      elements: ['code', 'status'],
      sort: [
        { rows: { table: 'date', codes: ['date'] }, descending: true },
        { column: 'id', descending: false },
        { rows: { codes: ['subject'], targetType: 'Patient' }, descending: false },
      ],
      include: [
        { sourceType: 'Observation', refs: [{ codes: ['subject'], targetType: 'Patient' }], iterate: false },
        { sourceType: 'Patient', refs: [{ codes: ['organization'] }], iterate: true },
      ],
      revinclude: [{ sourceType: 'Provenance', refs: [{ codes: ['target'] }], iterate: false }],
    });
  });

  it('defaults to 20 per page and caps _count at 1000', () => {
    expect(parse('Patient', '').count).toBe(20);
    expect(parse('Patient', '_count=5000').count).toBe(1000);
    expect(parse('Patient', '_count=0').count).toBe(0);
  });

  it('ignores and lists unknown parameters, keeping them out of what was applied', () => {
    const request = parse('Patient', 'foo=bar&name=smith&_format=json&_pretty=true&_contained=true');
    expect(request.ignored).toEqual(['foo', '_contained']);
    expect(request.applied).toEqual([['name', 'smith']]);
  });

  it('ignores an unknown chained parameter like any unknown parameter', () => {
    expect(parse('Observation', 'subject:Patient.nonsense=1').ignored).toEqual(['subject:Patient.nonsense']);
  });
});

describe('parseSearchRequest: malformed input is a 400 naming the parameter', () => {
  it.each([
    ['Patient', 'birthdate=2020-13-01', 'birthdate'],
    ['Patient', 'birthdate=xx2020', 'birthdate'],
    ['Patient', 'birthdate=yesterday', 'birthdate'],
    ['Patient', '_lastUpdated=gt2020-02-30', '_lastUpdated'],
    ['Patient', '_count=-1', '_count'],
    ['Patient', '_count=ten', '_count'],
    ['Patient', '_offset=-3', '_offset'],
    ['Patient', '_sort=nonsense', '_sort'],
    ['Patient', '_sort=name,-nonsense', '_sort'],
    ['Patient', '_total=sometimes', '_total'],
    ['Patient', '_summary=maybe', '_summary'],
    ['Patient', 'name:sounds-like=smith', 'name:sounds-like'],
    ['Patient', 'birthdate:exact=2020', 'birthdate:exact'],
    ['Patient', 'identifier:in=http://vs', 'identifier:in'],
    ['Patient', 'identifier:of-type=a|b', 'identifier:of-type'],
    ['Patient', 'name=', 'name'],
    ['Patient', 'name=smith,', 'name'],
    ['Patient', 'active:missing=maybe', 'active:missing'],
    ['Patient', 'identifier=|', 'identifier'],
    ['Observation', 'value-quantity=lots', 'value-quantity'],
    ['Observation', 'value-quantity=zz5', 'value-quantity'],
    ['Observation', 'value-quantity=5|http://unitsofmeasure.org', 'value-quantity'],
    ['Observation', 'status.name=x', 'status.name'],
    ['Observation', 'subject:Nonsense.name=x', 'subject:Nonsense.name'],
    ['Observation', 'subject.organization.partof.name=x', 'subject.organization.partof.name'],
    ['Observation', 'subject=not a reference!', 'subject'],
    ['Observation', 'subject:Organization=1', 'subject:Organization'],
    ['Observation', 'patient=Group/1', 'patient'],
    ['Observation', 'component-code-value-quantity=8480-6', 'component-code-value-quantity'],
    ['Observation', 'component-code-value-quantity=8480-6$', 'component-code-value-quantity'],
    ['Patient', '_has:Observation:patient=x', '_has:Observation:patient'],
    ['Patient', '_has:Nonsense:patient:code=x', '_has:Nonsense:patient:code'],
    ['Patient', '_has:Observation:code:status=final', '_has:Observation:code:status'],
    ['Patient', '_include=Nonsense:link', '_include'],
    ['Patient', '_include=Patient:gender', '_include'],
    ['Patient', '_include=Observation:subject', '_include'],
    ['Patient', '_revinclude=Observation', '_revinclude'],
  ])('%s?%s', (type, query, name) => {
    const error = rejection(type, query);
    expect(error.status).toBe(400);
    expect(error.outcome.issue?.[0].expression?.[0]).toContain(name);
  });

  it('rejects more values than one statement can bind', () => {
    const ids = Array.from({ length: 5001 }, (_, i) => `p${i}`).join(',');
    const error = rejection('Patient', `_id=${ids}`);
    expect(error.status).toBe(400);
    expect(error.outcome.issue?.[0].code).toBe('too-costly');
    expect(parse('Patient', `_id=${ids.split(',').slice(0, 5000).join(',')}`).filters).toHaveLength(1);
  });

  it('rejects NUL characters', () => {
    expect(rejection('Patient', 'name=a%00b').status).toBe(400);
  });

  it('rejects unknown parameters when strict', () => {
    const error = rejection('Patient', 'foo=bar', true);
    expect(error.status).toBe(400);
    expect(error.outcome.issue?.[0].expression).toEqual(['foo']);
  });
});
