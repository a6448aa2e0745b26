import type { Bundle } from '@medplum/fhirtypes';
import type { FhirContext } from '../interactions.ts';
import type { Queryable } from '../../db/connection.ts';
import { notSupported } from '../errors.ts';

/** Ids of the current resources of a type matching FHIR search parameters (conditional interactions). */
export async function findResourceIds(_q: Queryable, resourceType: string, _params: URLSearchParams): Promise<string[]> {
  throw notSupported(`Search on ${resourceType} is being built`);
}

export async function searchResources(_ctx: FhirContext, resourceType: string, _params: URLSearchParams, _url: URL, _strict: boolean): Promise<Bundle> {
  throw notSupported(`Search on ${resourceType} is being built`);
}
