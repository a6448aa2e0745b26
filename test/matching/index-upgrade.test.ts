import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BLOCKING_KEY_VERSION } from '../../src/matching/blocking-keys.ts';
import { catchUp } from '../../src/matching/index-store.ts';
import { queueStaleIndexEntries } from '../../src/matching/index-upgrade.ts';
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
