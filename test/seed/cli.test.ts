import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSeedArguments } from '../../src/seed/arguments.ts';
import { DEFAULT_HOUSEHOLD_SHARES } from '../../src/seed/households.ts';
import { freshDatabase } from '../support/baton.ts';

function runSeed(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/seed.ts', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

describe('npm run seed arguments', () => {
  it('reads members, seed, prefix, as-of date, household shares, --members-only, --payer-records and --care-years', () => {
    expect(parseSeedArguments(['--members', '1000'])).toEqual({
      members: 1000,
      seed: 1,
      idPrefix: 'seed1',
      asOf: '2026-07-01',
      householdShares: DEFAULT_HOUSEHOLD_SHARES,
      clinical: true,
      payerRecords: false,
      careYears: 3,
      carePeriodMonths: 36,
    });
    expect(parseSeedArguments(['--members', '10', '--care-years', '5'])).toMatchObject({ careYears: 5, carePeriodMonths: 36 });
    expect(parseSeedArguments(['--members', '10', '--care-years', '5', '--care-period-months', '6'])).toMatchObject({ careYears: 5, carePeriodMonths: 6 });
    expect(parseSeedArguments(['--members', '10', '--payer-records'])).toMatchObject({ clinical: true, payerRecords: true });
    expect(parseSeedArguments(['--members', '5', '--seed', '9', '--prefix', 'pop2', '--as-of', '2025-01-31', '--households-share', 'family=50,single=10', '--members-only'])).toEqual({
      members: 5,
      seed: 9,
      idPrefix: 'pop2',
      asOf: '2025-01-31',
      householdShares: { ...DEFAULT_HOUSEHOLD_SHARES, family: 50, single: 10 },
      clinical: false,
      payerRecords: false,
      careYears: 3,
      carePeriodMonths: 36,
    });
  });

  it.each([
    [[], /--members <N> is required/],
    [['--members', 'ten'], /--members must be a whole number/],
    [['--members', '-5'], /--members/],
    [['--members', '0'], /members must be an integer from 1/],
    [['--members', '10', '--seed', '1e3'], /--seed must be a whole number/],
    [['--members', '10', '--households-share', 'castle=3'], /unknown household kind "castle"/],
    [['--members', '10', '--households-share', 'family=lots'], /"family=lots" must be <kind>=<weight>/],
    [['--members', '10', '--households-share', 'family=0,single=0,couple=0,single-parent=0'], /at least one household kind/],
    [['--members', '10', '--prefix', 'no-dashes'], /id prefix/],
    [['--members', '10', '--as-of', 'yesterday'], /as-of date/],
    [['--members', '10', '--colour', 'blue'], /Unknown option '--colour'/],
    [['--members', '10', '--members-only', '--payer-records'], /--payer-records needs the clinical data/],
    [['--members', '10', '--members-only', '--care-years', '5'], /--care-years and --care-period-months need the clinical data/],
    [['--members', '10', '--care-years', '0'], /care years must be an integer from 1 to 60/],
    [['--members', '10', '--care-years', '61'], /care years must be an integer from 1 to 60/],
    [['--members', '10', '--care-period-months', '0'], /care period must be an integer number of months from 1 to 720/],
  ])('refuses %j', (args, message) => {
    expect(() => parseSeedArguments(args)).toThrow(message);
  });
});

describe('npm run seed', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'baton-seed-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('loads a population, prints progress on stderr and a JSON summary on stdout, and refuses to load it twice', async () => {
    const { databaseUrl, drop } = await freshDatabase();
    const env = { BATON_DATA_DIR: dataDir, DATABASE_URL: databaseUrl ?? '' };
    try {
      const first = await runSeed(['--members', '40', '--seed', '4'], env);
      expect(first.code, first.stderr).toBe(0);
      const summary = JSON.parse(first.stdout);
      expect(summary).toMatchObject({ database: databaseUrl ? 'postgres' : 'pglite', seed: 4, idPrefix: 'seed4', members: 40, resources: { Patient: 40, Coverage: 40 } });
      expect(summary.membersPerSecond).toBeGreaterThan(0);
      expect(first.stderr).toContain('seeded 40/40 members');
      const again = await runSeed(['--members', '40', '--seed', '4'], env);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('a population with id prefix "seed4" is already loaded');
    } finally {
      await drop();
    }
  }, 120_000);

  it('exits with code 2 and the usage on bad arguments', async () => {
    const result = await runSeed(['--members', 'many'], { BATON_DATA_DIR: dataDir });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--members must be a whole number\nusage: npm run seed -- --members <N>/);
  });
});
