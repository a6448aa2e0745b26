import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import policyV1 from '../../config/matching/policy-v1.json' with { type: 'json' };
import type { Database } from '../../src/db/connection.ts';
import { PolicyError } from '../../src/matching/policy.ts';
import {
  listPolicies,
  loadPolicyFiles,
  MEMBER_MATCH_POLICY_ID,
  NoPolicyInForce,
  POLICY_DIRECTORY,
  PolicyFileError,
  policyInForce,
  PolicyVersionConflict,
  savePolicy,
} from '../../src/matching/policy-store.ts';
import { migratedDatabase } from '../support/baton.ts';

type Mutable = Record<string, any>;
/** Policy v1 under another version, with one setting changed so the versions differ. */
function version(n: number, autoThreshold = 28 + n): Mutable {
  const policy = structuredClone(policyV1) as Mutable;
  policy.version = n;
  policy.useCases['coverage-check'].autoThreshold = autoThreshold;
  return policy;
}

let db: Database;
let drop: () => Promise<void>;
const directories: string[] = [];

beforeAll(async () => {
  ({ db, drop } = await migratedDatabase(4));
});
afterAll(async () => {
  await db.close();
  await drop();
  for (const directory of directories) rmSync(directory, { recursive: true, force: true });
});

function policyDirectory(files: Record<string, unknown>): string {
  const directory = mkdtempSync(join(tmpdir(), 'baton-policies-'));
  directories.push(directory);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(directory, name), typeof content === 'string' ? content : JSON.stringify(content));
  return directory;
}

async function clearPolicies(): Promise<void> {
  await db.execute(sql`DELETE FROM matching_policies`);
}

describe('loadPolicyFiles', () => {
  it('stores the shipped policy files once: a second start changes nothing', async () => {
    await clearPolicies();
    const first = await loadPolicyFiles(db);
    expect(first.length).toBeGreaterThan(0);
    expect(first.every((file) => file.result === 'inserted')).toBe(true);
    expect(first.map((file) => file.file)).toContain('policy-v1.json');
    const again = await loadPolicyFiles(db);
    expect(again.map((file) => file.result)).toEqual(first.map(() => 'unchanged'));
    const stored = await listPolicies(db);
    expect(stored.map((p) => p.version)).toEqual(first.map((file) => file.version).sort((a, b) => b - a));
    expect(stored.every((p) => p.createdBy === 'config')).toBe(true);
    expect(stored.at(-1)).toMatchObject({ version: 1, reason: 'config/matching/policy-v1.json' });
    expect(POLICY_DIRECTORY).toMatch(/config\/matching\/$/);
  });

  it('keeps a stored version whose body differs from the file, and stores the versions it lacks, in order', async () => {
    await clearPolicies();
    const directory = policyDirectory({ 'policy-v1.json': version(1), 'policy-v2.json': version(2), 'nicknames.json': { groups: [] } });
    await savePolicy(db, version(1, 40), 'operator', 'stricter');
    const inserted: number[] = [];
    const results = await loadPolicyFiles(db, { directory, onInsert: async (_tx, policy) => void inserted.push(policy.version) });
    expect(results).toEqual([
      { file: 'policy-v1.json', id: MEMBER_MATCH_POLICY_ID, version: 1, result: 'kept-stored' },
      { file: 'policy-v2.json', id: MEMBER_MATCH_POLICY_ID, version: 2, result: 'inserted' },
    ]);
    expect(inserted).toEqual([2]);
    const [row] = await db.execute<{ body: string; created_by: string }>(sql`SELECT body, created_by FROM matching_policies WHERE version = 1`);
    expect(JSON.parse(row.body).useCases['coverage-check'].autoThreshold).toBe(40);
    expect(row.created_by).toBe('operator');
  });

  it('finds a version unchanged when the stored body says the same in another key order and layout', async () => {
    await clearPolicies();
    const policy = version(1);
    const reordered = Object.fromEntries(Object.entries(policy).reverse());
    await db.execute(sql`INSERT INTO matching_policies (id, version, body, created_by) VALUES (${MEMBER_MATCH_POLICY_ID}, 1, ${JSON.stringify(reordered, null, 2)}, 'config')`);
    const results = await loadPolicyFiles(db, { directory: policyDirectory({ 'policy-v1.json': policy }) });
    expect(results.map((r) => r.result)).toEqual(['unchanged']);
  });

  it('inserts nothing when the audit hook fails: the version and its audit record go together', async () => {
    await clearPolicies();
    const directory = policyDirectory({ 'policy-v1.json': version(1) });
    await expect(loadPolicyFiles(db, { directory, onInsert: async () => Promise.reject(new Error('audit down')) })).rejects.toThrow('audit down');
    expect(await listPolicies(db)).toEqual([]);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['an invalid policy, naming the problems', { 'policy-v1.json': { ...version(1), vetoes: { ...version(1).vetoes, twin: 'maybe' } } }, 'policy-v1.json: vetoes.twin: must be "exclude" or "review"'],
    ['a file named for another version', { 'policy-v3.json': version(2) }, 'policy-v3.json: holds version 2; the file name says 3'],
    ['a file that is not JSON', { 'policy-v1.json': '{"id":' }, 'policy-v1.json: '],
  ])('refuses %s and stores nothing', async (_, files, message) => {
    await clearPolicies();
    const load = loadPolicyFiles(db, { directory: policyDirectory(files) });
    await expect(load).rejects.toThrow(PolicyFileError);
    await expect(load).rejects.toThrow(message);
    expect(await listPolicies(db)).toEqual([]);
  });
});

describe('policyInForce', () => {
  it('is the highest stored version, and the new one right after a save', async () => {
    await clearPolicies();
    await loadPolicyFiles(db, { directory: policyDirectory({ 'policy-v1.json': version(1) }) });
    const before = await policyInForce(db);
    expect(before.version).toBe(1);
    expect(await policyInForce(db)).toBe(before);
    await savePolicy(db, version(2, 31), 'operator');
    const after = await policyInForce(db);
    expect(after.version).toBe(2);
    expect(after.useCases['coverage-check'].autoThreshold).toBe(31);
  });

  it('follows a version saved by another process (another connection to the same database)', async () => {
    await clearPolicies();
    await loadPolicyFiles(db, { directory: policyDirectory({ 'policy-v1.json': version(1) }) });
    expect((await policyInForce(db)).version).toBe(1);
    // Written behind this process's back, as another Baton process would.
    await db.execute(sql`INSERT INTO matching_policies (id, version, body, created_by) VALUES (${MEMBER_MATCH_POLICY_ID}, 2, ${JSON.stringify(version(2, 33))}, 'operator')`);
    expect((await policyInForce(db)).useCases['coverage-check'].autoThreshold).toBe(33);
  });

  it('fails with NoPolicyInForce when nothing is stored', async () => {
    await clearPolicies();
    await expect(policyInForce(db)).rejects.toThrow(NoPolicyInForce);
  });
});

describe('savePolicy', () => {
  it('stores the next version with who and why', async () => {
    await clearPolicies();
    await loadPolicyFiles(db, { directory: policyDirectory({ 'policy-v1.json': version(1) }) });
    const saved = await savePolicy(db, version(2), 'operator', 'margin after the EM run');
    expect(saved).toMatchObject({ id: MEMBER_MATCH_POLICY_ID, version: 2, createdBy: 'operator', reason: 'margin after the EM run' });
    expect(Date.parse(saved.created)).not.toBeNaN();
    expect((await listPolicies(db)).map((p) => p.version)).toEqual([2, 1]);
  });

  it.each<[string, Mutable, RegExp]>([
    ['the version in force again', version(1), /does not follow the latest stored version 1: send version 2/],
    ['a version that skips one', version(3), /does not follow the latest stored version 1: send version 2/],
    ['another policy id', { ...version(2), id: 'other-policy' }, /the policy's id is "other-policy"/],
  ])('refuses %s with PolicyVersionConflict', async (_, body, message) => {
    await clearPolicies();
    await loadPolicyFiles(db, { directory: policyDirectory({ 'policy-v1.json': version(1) }) });
    await expect(savePolicy(db, body, 'operator')).rejects.toThrow(PolicyVersionConflict);
    await expect(savePolicy(db, body, 'operator')).rejects.toThrow(message);
    expect((await listPolicies(db)).map((p) => p.version)).toEqual([1]);
  });

  it('lets one of two concurrent saves of the same next version win', async () => {
    await clearPolicies();
    await loadPolicyFiles(db, { directory: policyDirectory({ 'policy-v1.json': version(1) }) });
    const results = await Promise.allSettled([savePolicy(db, version(2, 30), 'operator'), savePolicy(db, version(2, 35), 'operator')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toBeInstanceOf(PolicyVersionConflict);
    expect((await listPolicies(db)).map((p) => p.version)).toEqual([2, 1]);
  });

  it('refuses an invalid policy with every problem listed', async () => {
    await clearPolicies();
    const body = { ...version(1), comparison: { ...version(1).comparison, birthDateNearDays: 0 }, extra: true };
    const error = await savePolicy(db, body, 'operator').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PolicyError);
    expect((error as PolicyError).problems).toEqual(expect.arrayContaining(['policy.extra: is not a known setting', 'comparison.birthDateNearDays: must be an integer ≥ 1']));
    expect(await listPolicies(db)).toEqual([]);
  });
});
