import type { Bundle } from '@medplum/fhirtypes';
import { notSupported } from './errors.ts';
import type { FhirContext } from './interactions.ts';

/** batch and transaction (http.html#transaction). */
export async function processBundle(_ctx: FhirContext, _body: unknown): Promise<Bundle> {
  throw notSupported('batch/transaction is being built');
}
