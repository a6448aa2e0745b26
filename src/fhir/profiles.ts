import { parseStructureDefinition } from '@medplum/core';
import type { StructureDefinition } from '@medplum/fhirtypes';
import type { Logger } from '../logger.ts';
import { isResourceType } from './definitions.ts';
import { type ProfilePackage, ProfilePackageError, readProfilePackage } from './profile-packages.ts';
import { createResourceValidator, type ResourceValidator } from './validation.ts';

export { ProfilePackageError };

/**
 * Builds the validator: base R4 plus the resource profiles of the configured FHIR NPM packages.
 * A package that cannot be read is a ProfilePackageError: the operator configured it, so
 * starting without it would accept resources it was meant to reject.
 */
export async function createValidator(packages: readonly string[], logger: Logger): Promise<ResourceValidator> {
  const loaded = new Map<string, { profile: StructureDefinition; source: string }>();
  for (const path of packages) {
    const pkg = await readProfilePackage(path);
    const { profiles, unusable } = resourceProfiles(pkg);
    for (const { url, reason } of unusable) logger.warn({ package: pkg.name, profile: url, reason }, 'profile not enforced');
    for (const profile of profiles) {
      const earlier = loaded.get(profile.url);
      if (earlier && earlier.profile.version !== profile.version) {
        throw new ProfilePackageError(
          `Profile ${profile.url} is defined by ${earlier.source} (version ${earlier.profile.version}) and ${path} (version ${profile.version}); configure one of them`,
        );
      }
      if (!earlier) loaded.set(profile.url, { profile, source: path });
    }
    logger.info({ package: pkg.name, version: pkg.version, profiles: profiles.length }, 'profile package loaded');
  }
  return createResourceValidator([...loaded.values()].map((l) => l.profile));
}

interface SelectedProfiles {
  profiles: StructureDefinition[];
  /** Profiles Medplum's validator cannot parse: they are left out rather than half-enforced. */
  unusable: { url: string; reason: string }[];
}

/**
 * The package's profiles on resource types Baton serves. Data type and extension profiles are
 * reached only through the resource profiles' snapshots, so they need no loading of their own.
 */
function resourceProfiles(pkg: ProfilePackage): SelectedProfiles {
  const selected: SelectedProfiles = { profiles: [], unusable: [] };
  for (const sd of pkg.structureDefinitions) {
    if (sd.derivation !== 'constraint' || sd.kind !== 'resource' || !sd.type || !isResourceType(sd.type)) continue;
    if (!sd.url) throw new ProfilePackageError(`Profile package ${pkg.source}: a StructureDefinition on ${sd.type} has no url`);
    // Snapshots are what validators read; generating them needs the whole dependency tree, so
    // Baton takes packages as the IG publisher ships them (with snapshots).
    if (!sd.snapshot?.element?.length) {
      throw new ProfilePackageError(`Profile package ${pkg.source}: profile ${sd.url} has no snapshot; use the package as published, which carries snapshots`);
    }
    try {
      parseStructureDefinition(sd);
      selected.profiles.push(sd);
    } catch (error) {
      selected.unusable.push({ url: sd.url, reason: (error as Error).message });
    }
  }
  return selected;
}
