import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The HRex 1.0.0 IG files in the shared fixtures (StructureDefinitions with snapshots, examples). */
export const HREX_DIR = fileURLToPath(new URL('../../../shared/fixtures/davinci/ig/hrex-1.0.0/', import.meta.url));
export const HAS_HREX = existsSync(HREX_DIR);
export const HREX_COVERAGE = 'http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-coverage';

export interface HrexPackages {
  /** Scratch space of the test; removed by `remove`. */
  root: string;
  /** An unpacked FHIR NPM package: `<folder>/package/package.json` and the resources beside it. */
  packageFolder: string;
  /** The same package as published, `.tgz` with a `package/` folder. */
  tgz: string;
  remove(): void;
}

/**
 * Builds an `hl7.fhir.us.davinci-hrex` package from the shared HRex files in a temporary folder
 * (never in the repository): the StructureDefinitions, plus the IG's examples in package/example/.
 */
export function buildHrexPackages(): HrexPackages {
  const root = mkdtempSync(join(tmpdir(), 'baton-hrex-'));
  const packageFolder = join(root, 'hrex');
  const pkg = join(packageFolder, 'package');
  mkdirSync(join(pkg, 'example'), { recursive: true });
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'hl7.fhir.us.davinci-hrex', version: '1.0.0', fhirVersions: ['4.0.1'] }));
  for (const file of readdirSync(HREX_DIR)) {
    cpSync(join(HREX_DIR, file), join(pkg, file.startsWith('StructureDefinition-') ? file : join('example', file)));
  }
  const tgz = join(root, 'hl7.fhir.us.davinci-hrex-1.0.0.tgz');
  execFileSync('tar', ['-czf', tgz, '-C', packageFolder, 'package']);
  return { root, packageFolder, tgz, remove: () => rmSync(root, { recursive: true, force: true }) };
}
