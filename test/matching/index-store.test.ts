import type { Patient } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryFromMemberMatch } from '../../src/matching/from-fhir.ts';
import { candidateBlockingKeys } from '../../src/matching/blocking-keys.ts';
import { catchUp, findCandidates, keyHash, termFrequenciesFor } from '../../src/matching/index-store.ts';
import type { NormalizedCandidate } from '../../src/matching/normalize.ts';
import { groundTruth } from '../../src/seed/ground-truth.ts';
import { loadPopulation } from '../../src/seed/load.ts';
import { populationOptions } from '../../src/seed/population.ts';
import { body, startBaton, type TestBaton } from '../support/baton.ts';

/*
 * The blocking index over a loaded population: a backlog much larger than one batch is drained
 * by several batches at once on PostgreSQL (one after another on PGlite), and what it leaves
 * (records, keys, term counts) is what indexing each member alone would leave.
 */

const OPTIONS = populationOptions({ members: 240, seed: 11, idPrefix: 'ix', clinical: false });
const truth = [...groundTruth(OPTIONS)];
let baton: TestBaton;

beforeAll(async () => {
  baton = await startBaton();
  await loadPopulation(baton.db, OPTIONS);
});
afterAll(async () => {
  await baton?.close();
});

const count = async (query: ReturnType<typeof sql>) => Number((await baton.db.execute<{ n: number }>(query))[0].n);

/** Term counts recounted from the records, as field → value → members. */
async function recount(): Promise<Map<string, number>> {
  const rows = await baton.db.execute<{ field: string; value: string; n: number }>(sql`
    SELECT 'family' AS field, f AS value, count(*)::integer AS n FROM match_index_records, unnest(families) AS f GROUP BY f
    UNION ALL SELECT 'given', g, count(*)::integer FROM match_index_records, unnest(givens) AS g GROUP BY g
    UNION ALL SELECT '*', '', count(*)::integer FROM match_index_records`);
  return new Map(rows.map((row) => [`${row.field}|${row.value}`, Number(row.n)]));
}

async function storedCounts(): Promise<Map<string, number>> {
  const rows = await baton.db.execute<{ field: string; value: string; members: number }>(sql`SELECT field, value, members FROM match_term_counts WHERE members <> 0`);
  return new Map(rows.map((row) => [`${row.field}|${row.value}`, Number(row.members)]));
}

describe('catching up the blocking index', () => {
  it('indexes a backlog of many batches once each, with term counts equal to a recount', async () => {
    expect(await count(sql`SELECT count(*)::integer AS n FROM match_index_queue`)).toBe(240);
    expect(await catchUp(baton.db, 16)).toBe(240);
    expect(await count(sql`SELECT count(*)::integer AS n FROM match_index_queue`)).toBe(0);
    expect(await count(sql`SELECT count(*)::integer AS n FROM match_index_records`)).toBe(240);
    expect(await count(sql`SELECT count(DISTINCT patient_id)::integer AS n FROM match_index_keys`)).toBe(240);
    expect(await storedCounts()).toEqual(await recount());
    expect(await catchUp(baton.db)).toBe(0);
  });

  it('finds a member by their card and demographics, with the shares of their names', async () => {
    const member = truth[17];
    const name = member.names[0];
    const patient: Patient = { resourceType: 'Patient', id: '1', name: [{ family: name.family, given: name.given }], birthDate: member.birthDate, gender: member.gender };
    const query = queryFromMemberMatch(patient, { resourceType: 'Coverage', status: 'active', identifier: [{ value: member.memberId }], beneficiary: { reference: 'Patient/1' }, payor: [{ display: 'old plan' }] });
    const found = await findCandidates(baton.db, query);
    expect(found.candidates.map((c) => c.id)).toContain(member.patientId);
    const shares = await termFrequenciesFor(baton.db, query);
    const family = truth.filter((m) => m.names[0].family === name.family).length;
    expect([...(shares.family ?? new Map()).values()]).toEqual([expect.closeTo(family / 240, 5)]);
  });

  it('reads no record of a member sharing keys of one kind only (the birth date), and counts it as passed over', async () => {
    const member = truth[21];
    const query = queryFromMemberMatch(
      { resourceType: 'Patient', id: '1', name: [{ family: 'Vandersloot', given: ['Xiomara'] }], birthDate: member.birthDate, gender: member.gender },
      { resourceType: 'Coverage', status: 'active', beneficiary: { reference: 'Patient/1' }, payor: [{ display: 'old plan' }] },
    );
    const found = await findCandidates(baton.db, query);
    expect(found.candidates.map((c) => c.id)).not.toContain(member.patientId);
    expect(found.passedOver).toBeGreaterThanOrEqual(1);
    const withCard = queryFromMemberMatch(
      { resourceType: 'Patient', id: '1', name: [{ family: 'Vandersloot', given: ['Xiomara'] }], birthDate: member.birthDate, gender: member.gender },
      { resourceType: 'Coverage', status: 'active', identifier: [{ value: member.memberId }], beneficiary: { reference: 'Patient/1' }, payor: [{ display: 'old plan' }] },
    );
    expect((await findCandidates(baton.db, withCard)).candidates.map((c) => c.id)).toContain(member.patientId);
  });

  it('moves the counts when a member changes name, and follows the new name', async () => {
    const member = truth[3];
    const patient = await body(await baton.request(`/fhir/Patient/${member.patientId}`));
    const renamed = { ...patient, name: [{ family: 'Quillfeather', given: ['Odalys'] }] };
    expect((await baton.request(`/fhir/Patient/${member.patientId}`, { method: 'PUT', json: renamed })).status).toBe(200);
    expect(await catchUp(baton.db)).toBe(1);
    const counts = await storedCounts();
    expect(counts).toEqual(await recount());
    expect(counts.get('family|quillfeather')).toBe(1);
    expect(counts.get('*|')).toBe(240);
    // Its key rows are exactly the keys of its record now: the old name's stay (history), the new name's were added.
    const [{ record }] = await baton.db.execute<{ record: string }>(sql`SELECT record FROM match_index_records WHERE patient_id = ${member.patientId}`);
    const rows = await baton.db.execute<{ hash: string }>(sql`SELECT key_hash::text AS hash FROM match_index_keys WHERE patient_id = ${member.patientId}`);
    expect(rows.map((row) => row.hash).sort()).toEqual([...new Set(candidateBlockingKeys(JSON.parse(record) as NormalizedCandidate).map(keyHash))].sort());
    const query = queryFromMemberMatch({ resourceType: 'Patient', id: '1', name: [{ family: 'Quillfeather', given: ['Odalys'] }], birthDate: member.birthDate }, { resourceType: 'Coverage', status: 'active', beneficiary: { reference: 'Patient/1' }, payor: [{ display: 'old plan' }] });
    expect((await findCandidates(baton.db, query)).candidates.map((c) => c.id)).toContain(member.patientId);
  });

  it('drops a member whose Patient is deleted', async () => {
    const member = truth[5];
    expect((await baton.request(`/fhir/Patient/${member.patientId}`, { method: 'DELETE' })).status).toBeLessThan(300);
    expect(await catchUp(baton.db)).toBe(1);
    expect(await count(sql`SELECT count(*)::integer AS n FROM match_index_keys WHERE patient_id = ${member.patientId}`)).toBe(0);
    expect(await count(sql`SELECT count(*)::integer AS n FROM match_index_records WHERE patient_id = ${member.patientId}`)).toBe(0);
    expect(await storedCounts()).toEqual(await recount());
  });
});
