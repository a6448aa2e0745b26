import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { StructureDefinition } from '@medplum/fhirtypes';
import { readTarball, TarballError } from './tarball.ts';

/**
 * Reads the StructureDefinitions of FHIR NPM packages (https://confluence.hl7.org/display/FHIR/NPM+Package+Specification):
 * a `.tgz` as published, a folder holding `package/package.json` (an unpacked package, the
 * layout of the ~/.fhir/packages cache), or a flat folder of JSON resources. Only the
 * package's own folder is read: examples (`package/example/`) and other subfolders are not.
 */
export interface ProfilePackage {
  /** The path configured, for messages. */
  source: string;
  name: string;
  version: string | undefined;
  structureDefinitions: StructureDefinition[];
}

/** A package Baton cannot use; the message says which and why, for the operator at start-up. */
export class ProfilePackageError extends Error {
  override name = 'ProfilePackageError';
}

/** Packages are read whole into memory; FHIR R4 core, the largest, expands to about 100 MB. */
const MAX_PACKAGE_BYTES = 512 * 1024 * 1024;

export async function readProfilePackage(path: string): Promise<ProfilePackage> {
  try {
    const isFolder = (await stat(path)).isDirectory();
    return await parsePackage(path, isFolder ? await folderFiles(path) : tarballFiles(path, await readFile(path)));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ProfilePackageError(`Profile package ${path} does not exist`);
    if (code?.startsWith('E')) throw new ProfilePackageError(`Profile package ${path} cannot be read (${code})`);
    throw error;
  }
}

interface PackageManifest {
  name?: string;
  version?: string;
  fhirVersions?: string[];
}

interface PackageFile {
  name: string;
  text: () => Promise<string>;
}

async function folderFiles(path: string): Promise<PackageFile[]> {
  const nested = join(path, 'package');
  const hasPackageFolder = await stat(join(nested, 'package.json')).then(
    () => true,
    () => false,
  );
  const folder = hasPackageFolder ? nested : path;
  const entries = await readdir(folder, { withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => ({ name: e.name, text: () => readFile(join(folder, e.name), 'utf8') }));
}

function tarballFiles(path: string, data: Buffer): PackageFile[] {
  let entries;
  try {
    entries = readTarball(data, MAX_PACKAGE_BYTES);
  } catch (error) {
    if (error instanceof TarballError) throw new ProfilePackageError(`Profile package ${path} is not a readable .tgz: ${error.message}`);
    throw error;
  }
  // The NPM package specification puts a FHIR package's files under `package/`.
  const files = entries.filter((e) => /^(\.\/)?package\/[^/]+$/.test(e.path));
  if (files.length === 0) throw new ProfilePackageError(`Profile package ${path} has no package/ folder; it is not a FHIR NPM package`);
  return files.map((e) => ({ name: e.path.slice(e.path.lastIndexOf('/') + 1), text: async () => e.data.toString('utf8') }));
}

async function parsePackage(source: string, files: PackageFile[]): Promise<ProfilePackage> {
  const manifestFile = files.find((f) => f.name === 'package.json');
  const manifest = manifestFile ? (parseJson(source, manifestFile.name, await manifestFile.text()) as PackageManifest) : {};
  const declared = manifest.fhirVersions;
  if (Array.isArray(declared) && declared.length > 0 && !declared.some(isR4)) {
    throw new ProfilePackageError(`Profile package ${source} is for FHIR ${declared.join(', ')}; Baton serves FHIR R4 (4.0.1)`);
  }
  const structureDefinitions: StructureDefinition[] = [];
  for (const file of files) {
    if (!file.name.endsWith('.json') || file.name === 'package.json' || file.name.startsWith('.')) continue;
    const text = await file.text();
    // Cheap pre-filter: most files of a package are examples, value sets and code systems.
    if (!text.includes('"StructureDefinition"')) continue;
    const resource = parseJson(source, file.name, text) as StructureDefinition;
    if (resource?.resourceType !== 'StructureDefinition') continue;
    if (resource.fhirVersion !== undefined && !isR4(resource.fhirVersion)) {
      throw new ProfilePackageError(`Profile package ${source}: ${file.name} is for FHIR ${resource.fhirVersion}; Baton serves FHIR R4 (4.0.1)`);
    }
    structureDefinitions.push(resource);
  }
  if (structureDefinitions.length === 0) throw new ProfilePackageError(`Profile package ${source} contains no StructureDefinition`);
  return { source, name: manifest.name ?? basename(source), version: manifest.version, structureDefinitions };
}

function isR4(version: string): boolean {
  return /^4\.0(\.|$)/.test(version);
}

function parseJson(source: string, name: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ProfilePackageError(`Profile package ${source}: ${name} is not valid JSON (${(error as Error).message.slice(0, 120)})`);
  }
}
