import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BLOCKING_KEY_VERSION } from '../../src/matching/blocking-keys.ts';
import { catchUp, findCandidates } from '../../src/matching/index-store.ts';
import { queueStaleIndexEntries } from '../../src/matching/index-upgrade.ts';
import { normalizeCandidate } from '../../src/matching/normalize.ts';
import type { CandidateRecord } from '../../src/matching/types.ts';
import { startBaton, type TestBaton } from '../support/baton.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
  for (const id of ['m1', 'm2']) {
    await baton.request(`/fhir/Patient/${id}`, { method: 'PUT', json: { resourceType: 'Patient', id, name: [{ family: 'Rowe', given: ['Ada'] }], birthDate: '1970-01-02', gender: 'female' } });
  }
  await catchUp(baton.db);
});
afterAll(async () => {
  await baton?.close();
});

it('re-indexes members filed under older blocking keys, and only those', async () => {
  expect(await queueStaleIndexEntries(baton.db)).toBe(0);
  await baton.db.execute(sql`UPDATE match_index_records SET key_version = ${BLOCKING_KEY_VERSION - 1} WHERE patient_id = 'm1'`);
  expect(await queueStaleIndexEntries(baton.db)).toBe(1);
  expect(await catchUp(baton.db)).toBe(1);
  const versions = await baton.db.execute<{ keyVersion: number }>(sql`SELECT DISTINCT key_version AS "keyVersion" FROM match_index_records`);
  expect(versions.map((v) => Number(v.keyVersion))).toEqual([BLOCKING_KEY_VERSION]);
});

it('still finds and compares a member filed before records were normalized (key version 2), until it is re-indexed', async () => {
  const raw: CandidateRecord = { id: 'm2', names: [{ family: 'Rowe', given: ['Ada'] }], birthDate: '1970-01-02', gender: 'female', addresses: [], phones: [], memberIds: [], subscriberIds: [], payers: [] };
  await baton.db.execute(sql`UPDATE match_index_records SET key_version = 2, record = ${JSON.stringify(raw)} WHERE patient_id = 'm2'`);
  const { id: _id, ...query } = raw;
  const found = (await findCandidates(baton.db, query)).candidates.find((candidate) => candidate.id === 'm2');
  expect(found).toEqual(normalizeCandidate(raw));
  expect(await queueStaleIndexEntries(baton.db)).toBe(1);
  expect(await catchUp(baton.db)).toBe(1);
  const [{ record }] = await baton.db.execute<{ record: string }>(sql`SELECT record FROM match_index_records WHERE patient_id = 'm2'`);
  expect(JSON.parse(record)).toMatchObject({ id: 'm2', names: [expect.objectContaining({ family: 'rowe', first: 'ada' })] });
});
