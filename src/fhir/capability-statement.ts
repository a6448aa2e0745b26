import { readFileSync } from 'node:fs';
import type {
  CapabilityStatement,
  CapabilityStatementImplementation,
  CapabilityStatementRestResource,
  CapabilityStatementRestResourceOperation,
  CapabilityStatementRestResourceSearchParam,
  CapabilityStatementRestSecurity,
  ResourceType,
  SearchParameter,
  StructureDefinition,
} from '@medplum/fhirtypes';
import { getAllSearchParameters, getResourceTypes } from './definitions.ts';
import { searchParamsOf } from './search/parameters.ts';
import { subscriptionCapabilities } from '../subscriptions/topics.ts';

const cache = new WeakMap<readonly StructureDefinition[], Map<string, CapabilityStatement>>();

/**
 * The CapabilityStatement served at /metadata (http.html#capabilities): the claims Baton makes
 * in conformance/, one resource entry per R4 resource type with the search parameters and
 * includes src/fhir/search supports and the profiles the validator enforces. Built once per
 * base URL and profile set: it is large.
 */
export function capabilityStatement(
  baseUrl: string,
  profiles: readonly StructureDefinition[],
  security?: CapabilityStatementRestSecurity,
  separateTypes: readonly string[] = [],
): CapabilityStatement {
  let byBase = cache.get(profiles);
  if (!byBase) cache.set(profiles, (byBase = new Map()));
  const key = `${baseUrl} ${separateTypes.join(',')}`;
  let statement = byBase.get(key);
  if (!statement) byBase.set(key, (statement = buildCapabilityStatement(baseUrl, profiles, security, new Set(separateTypes))));
  return statement;
}

/** A JSON file of the repository, by its path from the repository root. */
function readRepositoryJson<T>(path: string): T {
  return JSON.parse(readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')) as T;
}

/**
 * The operations Baton serves that a client discovers here: Bulk Data Access 2.0.0 export at the
 * system level and on Patient and Group (named as the IG's CapabilityStatement names them), HRex
 * $member-match and Patient/$everything (PDex), and the audit trail's own $verify.
 */
const BULK_DATA = 'http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data';
const SYSTEM_OPERATIONS: CapabilityStatementRestResourceOperation[] = [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' }];
const TYPE_OPERATIONS: Record<string, CapabilityStatementRestResourceOperation[]> = {
  Patient: [
    { name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export' },
    { name: 'member-match', definition: 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match' },
    { name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' },
  ],
  AuditEvent: [{ name: 'verify', definition: 'urn:baton:operation:audit-verify' }],
  Group: [
    { name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export' },
    { name: 'bulk-member-match', definition: 'http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch' },
    { name: 'davinci-data-export', definition: 'http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export' },
  ],
};

/**
 * Types kept in stores of their own (`separateTypes`, the audit trail) are searched without
 * _include and _revinclude, and are not reverse-included into other types' searches.
 */
function buildCapabilityStatement(
  baseUrl: string,
  profiles: readonly StructureDefinition[],
  security: CapabilityStatementRestSecurity | undefined,
  separateTypes: ReadonlySet<string>,
): CapabilityStatement {
  const base = readRepositoryJson<CapabilityStatement>('conformance/capability-statement.base.json');
  const perType = readRepositoryJson<Omit<CapabilityStatementRestResource, 'type'>>('conformance/capability-statement.resource.json');
  const software = readRepositoryJson<{ name: string; version: string }>('package.json');
  const definitions = definitionsByCode();
  const revIncludes = revIncludesByTarget(separateTypes);
  const [rest, ...others] = base.rest ?? [];
  return {
    ...base,
    date: new Date().toISOString(),
    software: { name: software.name, version: software.version },
    instantiates: [BULK_DATA],
    implementation: { ...(base.implementation as CapabilityStatementImplementation), url: baseUrl },
    rest: [
      {
        ...rest,
        ...(security ? { security } : {}),
        resource: getResourceTypes().map((type) => resourceCapabilities(type, perType, profiles, definitions, revIncludes, separateTypes.has(type))),
        operation: SYSTEM_OPERATIONS,
      },
      ...others,
    ],
  };
}

function resourceCapabilities(
  type: string,
  perType: Omit<CapabilityStatementRestResource, 'type'>,
  profiles: readonly StructureDefinition[],
  definitions: Map<string, SearchParameter[]>,
  revIncludes: Map<string, string[]>,
  separate: boolean,
): CapabilityStatementRestResource {
  const resource: CapabilityStatementRestResource = { type: type as ResourceType, profile: `http://hl7.org/fhir/StructureDefinition/${type}`, ...structuredClone(perType) };
  // FHIR JSON has no empty arrays (json.html): a list with nothing in it is left out.
  const supportedProfile = profiles.filter((p) => p.type === type).map((p) => p.url);
  if (supportedProfile.length) resource.supportedProfile = supportedProfile.sort();
  const searchInclude = separate ? [] : [...searchParamsOf(type).values()].filter((p) => p.type === 'reference').map((p) => `${type}:${p.code}`);
  if (searchInclude.length) resource.searchInclude = searchInclude.sort();
  const searchRevInclude = revIncludes.get(type) ?? [];
  if (searchRevInclude.length) resource.searchRevInclude = [...searchRevInclude].sort();
  if (TYPE_OPERATIONS[type]) resource.operation = TYPE_OPERATIONS[type];
  // Subscriptions Backport IG: the topics this server serves and its operations.
  if (type === 'Subscription') {
    const subscriptions = subscriptionCapabilities();
    resource.extension = subscriptions.extension;
    resource.operation = subscriptions.operation;
  }
  const searchParam = searchParams(type, definitions);
  if (searchParam.length) resource.searchParam = searchParam.sort((a, b) => a.name.localeCompare(b.name));
  return resource;
}

/** The parameters search supports on the type (src/fhir/search), described by their R4 SearchParameter. */
function searchParams(type: string, definitions: Map<string, SearchParameter[]>): CapabilityStatementRestResourceSearchParam[] {
  return [...searchParamsOf(type).values()].map((param) => {
    const candidates = definitions.get(param.code) ?? [];
    const bases = (sp: SearchParameter): readonly string[] => sp.base;
    const sp = candidates.find((c) => bases(c).includes(type)) ?? (candidates.find((c) => bases(c).some((b) => b === 'Resource' || b === 'DomainResource')) as SearchParameter);
    return { name: param.code, definition: sp.url, type: param.type, documentation: documentationFor(sp, type) };
  });
}

function definitionsByCode(): Map<string, SearchParameter[]> {
  const byCode = new Map<string, SearchParameter[]>();
  for (const sp of getAllSearchParameters()) byCode.set(sp.code, [...(byCode.get(sp.code) ?? []), sp]);
  return byCode;
}

/** `_revinclude` values per target type: every reference parameter of every type that may point at it. */
function revIncludesByTarget(separateTypes: ReadonlySet<string>): Map<string, string[]> {
  const byTarget = new Map<string, string[]>();
  for (const source of getResourceTypes().filter((type) => !separateTypes.has(type))) {
    for (const param of searchParamsOf(source).values()) {
      if (param.type !== 'reference') continue;
      for (const target of param.targets) byTarget.set(target, [...(byTarget.get(target) ?? []), `${source}:${param.code}`]);
    }
  }
  return byTarget;
}

/** Shared R4 parameters describe every base in one markdown list; keep this type's line. */
function documentationFor(sp: SearchParameter, type: string): string | undefined {
  const description = sp.description;
  if (!description?.startsWith('Multiple Resources')) return description;
  const line = description.split(/\r?\n/).find((l) => l.startsWith(`* [${type}](`));
  return line ? line.slice(line.indexOf('):') + 2).trim() : undefined;
}
