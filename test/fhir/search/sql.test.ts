import { sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { describe, expect, it } from 'vitest';
import { parseSearchRequest } from '../../../src/fhir/search/parse.ts';
import { SearchSql } from '../../../src/fhir/search/sql.ts';

const dialect = new PgDialect();
const BASE = 'http://baton.test/fhir';

function render(type: string, query: string, namesInline = false): { sql: string; params: unknown[] } {
  const request = parseSearchRequest(type, new URLSearchParams(query), { strict: true, baseUrl: BASE });
  const builder = new SearchSql({ baseUrl: BASE, namesInline });
  return dialect.sqlToQuery(sql`SELECT r.id FROM resources r WHERE ${builder.where(request)} ORDER BY ${builder.orderBy(request.sort)}`);
}

const HOSTILE = "x'); DROP TABLE resources;--";

describe('SearchSql', () => {
  it('writes type names and parameter codes into the statement when asked, binding every value still', () => {
    const { sql: text, params } = render('Patient', `identifier=${encodeURIComponent(`${HOSTILE}|${HOSTILE}`)}`, true);
    expect(text).toContain("r.resource_type = 'Patient' AND r.id IN (SELECT t1.resource_id FROM sp_token t1 WHERE t1.resource_type = 'Patient' AND t1.code = 'identifier' AND");
    expect(params).toEqual([HOSTILE, HOSTILE]);
    expect(text.toUpperCase()).not.toContain('DROP');
    // Bound otherwise: a generic plan costed on a bound name is never kept.
    expect(render('Patient', 'identifier=M1').params).toEqual(['Patient', 'Patient', 'identifier', 'M1']);
  });

  it.each([
    ['Patient', `name=${encodeURIComponent(HOSTILE)}`],
    ['Patient', `name:exact=${encodeURIComponent(HOSTILE)}`],
    ['Patient', `name:contains=${encodeURIComponent(HOSTILE)}`],
    ['Patient', `identifier=${encodeURIComponent(`${HOSTILE}|${HOSTILE}`)}`],
    ['Patient', `_id=${encodeURIComponent(HOSTILE)}`],
    ['Observation', `subject=${encodeURIComponent(`https://partner.example/${HOSTILE}`)}`],
    ['Observation', `patient.name=${encodeURIComponent(HOSTILE)}`],
    ['Patient', `_has:Observation:patient:code=${encodeURIComponent(HOSTILE)}`],
    ['Patient', `_profile:above=${encodeURIComponent(`http://x/${HOSTILE}`)}`],
    ['Observation', `component-code-value-quantity=${encodeURIComponent(`${HOSTILE}$5`)}`],
  ])('binds every value of %s?%s', (type, query) => {
    const { sql: text, params } = render(type, query);
    expect(text.toUpperCase()).not.toContain('DROP');
    expect(params.some((p) => typeof p === 'string' && p.toUpperCase().includes('DROP TABLE'))).toBe(true);
  });

  it('finds a Patient by identifier through the token index, without touching other tables', () => {
    const { sql: text, params } = render('Patient', 'identifier=http://example.org/member|M1');
    expect(text).toContain('r.id IN (SELECT t1.resource_id FROM sp_token t1 WHERE t1.resource_type = $');
    expect(text).not.toContain('sp_string');
    expect(params).toEqual(['Patient', 'Patient', 'identifier', 'M1', 'http://example.org/member']);
  });

  it('reads deleted only when no filter selects the resource by its own index rows', () => {
    expect(render('Patient', 'identifier=M1').sql).not.toContain('deleted');
    expect(render('Patient', 'gender:not=male').sql).toContain('NOT r.deleted');
    expect(render('Patient', '_id=1').sql).toContain('NOT r.deleted');
    expect(render('Patient', '_has:Observation:patient:code=1').sql).toContain('NOT r.deleted');
  });

  it('orders by the sort keys and then by id, so pages are stable', () => {
    expect(render('Patient', '_sort=-birthdate').sql).toMatch(/ORDER BY \(SELECT max\(s\d+\."end"\) FROM sp_date s\d+ .*\) DESC NULLS LAST, r\.id$/);
    expect(render('Patient', '').sql).toMatch(/ORDER BY r\.id$/);
  });
});
