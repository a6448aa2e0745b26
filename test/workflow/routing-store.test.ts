import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RuleSetError } from '../../src/workflow/routing.ts';
import { currentRollout, loadRoutingFiles, publishRuleSet, ruleSetFor, setCanaryShare } from '../../src/workflow/routing-store.ts';
import { type TestBaton, startBaton } from '../support/baton.ts';

describe('routing versions in the database', () => {
  let baton: TestBaton;
  let directory: string;
  beforeAll(async () => {
    baton = await startBaton();
    directory = mkdtempSync(join(tmpdir(), 'baton-routing-'));
  });
  afterAll(async () => {
    rmSync(directory, { recursive: true, force: true });
    await baton?.close();
  });

  it('seeds the shipped versions once and puts the highest in force', async () => {
    expect(await loadRoutingFiles(baton.db)).toEqual([1]);
    expect(await loadRoutingFiles(baton.db)).toEqual([]);
    expect(await currentRollout(baton.db)).toMatchObject({ stable: 1, candidate: null });
  });

  it('refuses an invalid rules file, naming it', async () => {
    writeFileSync(join(directory, 'rules-v7.json'), JSON.stringify({ rules: [{ id: 'x', endpoint: 'nowhere' }] }));
    await expect(loadRoutingFiles(baton.db, directory)).rejects.toThrow(RuleSetError);
    await expect(loadRoutingFiles(baton.db, directory)).rejects.toThrow('config/routing/rules-v7.json');
  });

  it('routes the canary share by the candidate and the rest by the stable version, and rolls back', async () => {
    const rules = (endpoint: string) => ({ rules: [{ id: 'r', when: {}, endpoint }] });
    const stable = await publishRuleSet(baton.db, rules('Endpoint/old'), 'test', undefined, 100);
    const canary = await publishRuleSet(baton.db, rules('Endpoint/new'), 'test', 'try the new partner endpoint', 30);
    expect(canary.rollout).toMatchObject({ stable: stable.version, candidate: canary.version, percent: 30 });
    const tasks = Array.from({ length: 400 }, (_, i) => `t-${i}`);
    const versions = await Promise.all(tasks.map(async (t) => (await ruleSetFor(baton.db, t))!.version));
    const share = versions.filter((v) => v === canary.version).length / tasks.length;
    expect(share).toBeGreaterThan(0.2);
    expect(share).toBeLessThan(0.4);
    await setCanaryShare(baton.db, 0, 'test');
    expect(await currentRollout(baton.db)).toMatchObject({ stable: stable.version, candidate: null });
    expect((await ruleSetFor(baton.db, tasks[0]))!.rules[0].endpoint).toBe('Endpoint/old');
  });
});
