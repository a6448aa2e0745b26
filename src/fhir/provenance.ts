import type { Provenance, ProvenanceAgent } from '@medplum/fhirtypes';
import { badRequest } from './errors.ts';

/** Who wrote, as the access policy knows the caller. */
export interface ProvenanceCaller {
  organization?: readonly { system: string; value: string }[];
}

/**
 * The X-Provenance request header (http.html#provenance): a Provenance resource, as JSON, that
 * the server stores alongside the create or update, targeting the version written.
 */
export function parseProvenanceHeader(header: string | undefined): Provenance | undefined {
  if (header === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(header);
  } catch {
    throw badRequest('X-Provenance must be a Provenance resource in JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || (parsed as Provenance).resourceType !== 'Provenance') {
    throw badRequest('X-Provenance must be a Provenance resource in JSON');
  }
  return parsed as Provenance;
}

const DATA_OPERATION = 'http://terminology.hl7.org/CodeSystem/v3-DataOperation';

/**
 * The Provenance of a version written: the client's, from X-Provenance, or one Baton makes. Its
 * target is the version; a client's target may only name the resource written. The client's
 * Organization is an agent unless the client named its own agents.
 */
export function provenanceOf(
  written: { resourceType: string; id: string; versionId: number; created: boolean },
  given: Provenance | undefined,
  caller: ProvenanceCaller | undefined,
  recorded: string,
): Omit<Provenance, 'id'> {
  const target = `${written.resourceType}/${written.id}`;
  for (const t of given?.target ?? []) {
    const reference = t.reference ?? '';
    if (reference !== written.resourceType && reference !== target && !reference.startsWith(`${target}/_history/`)) {
      throw badRequest(`X-Provenance.target must be empty or name ${target}; it names "${reference.slice(0, 80)}"`, ['Provenance.target']);
    }
  }
  const { id: _id, meta: _meta, ...content } = given ?? { resourceType: 'Provenance' as const };
  const agents: ProvenanceAgent[] = given?.agent?.length ? given.agent : organizationAgent(caller);
  return {
    ...content,
    resourceType: 'Provenance',
    target: [{ reference: `${target}/_history/${written.versionId}` }],
    recorded: given?.recorded ?? recorded,
    ...(given?.activity ? {} : { activity: { coding: [{ system: DATA_OPERATION, code: written.created ? 'CREATE' : 'UPDATE' }] } }),
    agent: agents,
  };
}

function organizationAgent(caller: ProvenanceCaller | undefined): ProvenanceAgent[] {
  const identifier = caller?.organization?.[0];
  return [
    {
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }] },
      who: identifier ? { type: 'Organization', identifier: { system: identifier.system, value: identifier.value } } : { display: 'unidentified client' },
    },
  ];
}
