import type { Resource } from '@medplum/fhirtypes';
import type { Queryable } from '../../db/connection.ts';

export interface IndexEntry {
  resourceType: string;
  id: string;
  /** Absent when the resource is deleted: its rows are removed and none written. */
  resource: Resource | undefined;
}

/** Replaces the search index rows of each entry with the values extracted from its resource. */
export async function writeSearchIndex(_q: Queryable, _entries: IndexEntry[]): Promise<void> {
  // Placeholder until the search module lands (same session); see src/fhir/search/.
}
