import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { StructureDefinition } from '@medplum/fhirtypes';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readProfilePackage } from '../../src/fhir/profile-packages.ts';
import { createValidator, ProfilePackageError } from '../../src/fhir/profiles.ts';
import { createLogger, type Logger } from '../../src/logger.ts';
import { buildHrexPackages, HAS_HREX, HREX_COVERAGE, HREX_DIR, type HrexPackages } from '../support/hrex-package.ts';

const HREX_PROFILES = [
  'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-consent',
  HREX_COVERAGE,
  'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-parameters-member-match-in',
  'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-parameters-member-match-out',
  'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-patient-demographics',
];

const silent = createLogger('silent');

function hrexCoverage(): StructureDefinition {
  return JSON.parse(readFileSync(join(HREX_DIR, 'StructureDefinition-hrex-coverage.json'), 'utf8')) as StructureDefinition;
}

/** A pino logger whose lines the test can read. */
function capturingLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { logger: pino<never>({ level: 'info' }, stream), lines: () => chunks.join('').trim().split('\n').map((l) => JSON.parse(l)) };
}

async function startupError(paths: string[]): Promise<ProfilePackageError> {
  const error = await createValidator(paths, silent).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProfilePackageError);
  return error as ProfilePackageError;
}

describe.skipIf(!HAS_HREX)('profile packages (HRex 1.0.0 from ../shared/fixtures)', () => {
  let hrex: HrexPackages;
  let flatFolder: string;
  beforeAll(() => {
    hrex = buildHrexPackages();
    // A flat folder of JSON resources, with an example beside the profiles.
    flatFolder = join(hrex.root, 'flat');
    mkdirSync(flatFolder);
    cpSync(join(hrex.packageFolder, 'package'), flatFolder, { recursive: true, filter: (src) => !src.includes('example') && !src.endsWith('package.json') });
    cpSync(join(HREX_DIR, 'Coverage-full.json'), join(flatFolder, 'Coverage-full.json'));
  });
  afterAll(() => hrex.remove());

  it.each([
    ['a package folder (package/package.json)', () => hrex.packageFolder, 'hl7.fhir.us.davinci-hrex'],
    ['a .tgz as published', () => hrex.tgz, 'hl7.fhir.us.davinci-hrex'],
    ['a flat folder of JSON files', () => flatFolder, 'flat'],
  ])('loads the resource profiles of %s', async (_kind, path, name) => {
    const pkg = await readProfilePackage(path());
    expect(pkg.name).toBe(name);
    const validator = await createValidator([path()], silent);
    expect(validator.profiles.map((p) => p.url).sort()).toEqual(HREX_PROFILES);
  });

  it('reads only the package folder itself, not package/example/', async () => {
    writeFileSync(join(hrex.packageFolder, 'package', 'example', 'StructureDefinition-broken.json'), '{"resourceType": "StructureDefinition", oops');
    const pkg = await readProfilePackage(hrex.packageFolder);
    expect(pkg.structureDefinitions).toHaveLength(HREX_PROFILES.length);
    expect(pkg.version).toBe('1.0.0');
  });

  it('logs each package loaded with its profile count and no resource content', async () => {
    const { logger, lines } = capturingLogger();
    await createValidator([hrex.tgz], logger);
    expect(lines()).toEqual([expect.objectContaining({ msg: 'profile package loaded', package: 'hl7.fhir.us.davinci-hrex', version: '1.0.0', profiles: 5 })]);
  });

  it('loads a package listed twice once', async () => {
    const validator = await createValidator([hrex.tgz, hrex.packageFolder], silent);
    expect(validator.profiles).toHaveLength(HREX_PROFILES.length);
  });

  it('refuses two packages defining one profile in different versions', async () => {
    const other = join(hrex.root, 'hrex-next');
    mkdirSync(other);
    writeFileSync(join(other, 'coverage.json'), JSON.stringify({ ...hrexCoverage(), version: '2.0.0' }));
    const error = await startupError([hrex.tgz, other]);
    expect(error.message).toBe(`Profile ${HREX_COVERAGE} is defined by ${hrex.tgz} (version 1.0.0) and ${other} (version 2.0.0); configure one of them`);
  });

  it('leaves out, with a warning, a profile Medplum cannot parse, rather than half-enforce it', async () => {
    const folder = join(hrex.root, 'unparseable');
    mkdirSync(folder);
    const sd = hrexCoverage();
    const sliced = sd.snapshot?.element?.find((e) => e.slicing);
    if (!sliced?.slicing) throw new Error('the HRex Coverage profile slices Coverage.class');
    sliced.slicing.discriminator = [{ type: 'exists', path: 'value' }];
    writeFileSync(join(folder, 'coverage.json'), JSON.stringify(sd));
    const { logger, lines } = capturingLogger();
    const validator = await createValidator([folder], logger);
    expect(validator.profiles).toEqual([]);
    expect(lines()[0]).toMatchObject({ level: 40, msg: 'profile not enforced', profile: HREX_COVERAGE, reason: expect.stringContaining('exists') });
  });

  describe('a package Baton cannot use stops the start with a message naming it and the problem', () => {
    const write = (name: string, files: Record<string, string | Buffer>): string => {
      const folder = join(hrex.root, name);
      mkdirSync(folder, { recursive: true });
      for (const [file, content] of Object.entries(files)) writeFileSync(join(folder, file), content);
      return folder;
    };

    it.each([
      ['a path that does not exist', () => join(hrex.root, 'missing.tgz'), 'does not exist'],
      ['a .tgz that is not gzip', () => join(write('junk', { 'junk.tgz': 'this is not an archive' }), 'junk.tgz'), 'is not a readable .tgz: it is not gzip-compressed'],
      ['a .tgz cut short', () => join(write('cut', { 'cut.tgz': readFileSync(hrex.tgz).subarray(0, 400) }), 'cut.tgz'), 'is not a readable .tgz: its gzip stream is damaged'],
      ['a .tgz without a package/ folder', () => tgzOf(write('bare', { 'a.json': '{}' }), 'a.json'), 'has no package/ folder'],
      ['a folder with a file that is not JSON', () => write('notjson', { 'StructureDefinition-x.json': '{"resourceType": "StructureDefinition",' }), 'StructureDefinition-x.json is not valid JSON'],
      ['a folder without StructureDefinitions', () => write('empty', { 'Coverage-full.json': readFileSync(join(HREX_DIR, 'Coverage-full.json')) }), 'contains no StructureDefinition'],
      ['a profile without a snapshot', () => write('nosnapshot', { 'sd.json': JSON.stringify({ ...hrexCoverage(), snapshot: undefined }) }), `profile ${HREX_COVERAGE} has no snapshot`],
      ['a package for another FHIR version', () => write('r5', { 'package.json': JSON.stringify({ name: 'r5.pkg', fhirVersions: ['5.0.0'] }), 'sd.json': JSON.stringify(hrexCoverage()) }), 'is for FHIR 5.0.0; Baton serves FHIR R4 (4.0.1)'],
      ['a profile for another FHIR version', () => write('r4b', { 'sd.json': JSON.stringify({ ...hrexCoverage(), fhirVersion: '4.3.0' }) }), 'sd.json is for FHIR 4.3.0'],
    ])('%s', async (_case, path, message) => {
      const error = await startupError([path()]);
      expect(error.message).toContain(message);
      expect(error.message).toContain('Profile package');
    });

    function tgzOf(folder: string, file: string): string {
      const tgz = join(folder, 'bare.tgz');
      spawnSync('tar', ['-czf', tgz, '-C', folder, file]);
      return tgz;
    }
  });

  it('exits with status 2 and a one-line message, not a stack trace, when started with a broken .tgz', () => {
    const broken = join(hrex.root, 'broken.tgz');
    writeFileSync(broken, readFileSync(hrex.tgz).subarray(0, 400));
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      env: { ...process.env, DATABASE_URL: '', BATON_DATA_DIR: join(hrex.root, 'data'), BATON_SEED: 'none', PORT: '0', BATON_PROFILE_PACKAGES: broken },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const output = `${run.stdout}${run.stderr}`;
    expect(output).toContain(`Profile package ${broken} is not a readable .tgz`);
    expect(output).not.toMatch(/^\s+at /m);
    expect(run.status).toBe(2);
  });
});
