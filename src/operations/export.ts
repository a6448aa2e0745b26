import type { OperationOutcome, Parameters, ParametersParameter } from '@medplum/fhirtypes';
import { badRequest, FhirError, outcome } from '../fhir/errors.ts';
import { isResourceType } from '../fhir/definitions.ts';
import { preferredHandling } from '../fhir/http/negotiation.ts';
import type { OperationRoute } from '../fhir/http/routes.ts';
import { assertId, type FhirContext } from '../fhir/interactions.ts';
import { parseSearchRequest } from '../fhir/search/parse.ts';
import { type ExportEngine, NDJSON } from '../export/engine.ts';
import { localPatientId } from '../export/plan.ts';
import type { AssociatedProvenance, ExportKind, ExportRequest, TypeFilter } from '../export/request.ts';

/**
 * Bulk Data Access 2.0.0 (http://hl7.org/fhir/uv/bulkdata) $export, by GET and by POST with
 * Parameters, at the three levels:
 *
 *   [base]/$export                system level  (OperationDefinition/export)
 *   [base]/Patient/$export        all patients  (OperationDefinition/patient-export)
 *   [base]/Group/[id]/$export     a Group       (OperationDefinition/group-export)
 *
 * 1. Kick-off: `Prefer: respond-async` (400 without it). Parameters `_outputFormat`
 *    (application/fhir+ndjson, application/ndjson, ndjson), `_since` (instant), `_type`,
 *    `_typeFilter` (searches, several on one type are alternatives; no result parameters),
 *    `_elements` (root elements, resources tagged SUBSETTED), `patient` (POST, Patient and Group
 *    level) and `includeAssociatedData` (LatestProvenanceResources, RelevantProvenanceResources).
 *    Repeated parameters count as one comma-separated list. An unknown parameter or an
 *    unsupported value is a 400, unless `Prefer: handling=lenient`: then it is ignored and an
 *    OperationOutcome in the manifest's error file says so. A malformed value is always a 400.
 *    Answer: 202, Content-Location = the absolute status URL.
 * 2. Status (GET status URL): 202 with X-Progress and Retry-After while the export is planned;
 *    429 when polled sooner than Retry-After; 200 with the manifest (transactionTime, request,
 *    requiresAccessToken, output, error, and deleted when `_since` was given); a failure's
 *    status with its OperationOutcome.
 * 3. Cancel (DELETE status URL): 202; the status URL and the files answer 404 from then on.
 * 4. Files: application/fhir+ndjson, to the client that started the export only.
 */
export const EXPORT_DEFINITIONS = {
  system: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export',
  patient: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export',
  group: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export',
} as const;

const OUTPUT_FORMATS = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);
/** Handled by the HTTP layer for every FHIR request. */
const HTTP_PARAMETERS = new Set(['_format', '_pretty']);
/** Bulk Data: search result parameters "SHALL NOT be used" in `_typeFilter`. */
const RESULT_PARAMETERS = new Set(['_count', '_sort', '_include', '_revinclude', '_summary', '_elements', '_total', '_contained', '_containedType', '_offset']);
export const FHIR_INSTANT = /^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$/;
const ELEMENT = /^(?:([A-Z][A-Za-z]+)\.)?([a-z][A-Za-z0-9]*)$/;
/** A `_typeFilter` list splits at commas that start the next `Type?` query (commas inside a query are search alternatives). */
const NEXT_QUERY = /,(?=[A-Z][A-Za-z]+\?)/;

export function exportRoutes(engine: ExportEngine): OperationRoute[] {
  const kickOff = (kind: ExportKind, path: (params: Record<string, string>) => string): OperationRoute['handle'] => (ctx, request) => {
    const groupId = kind === 'group' ? request.pathParams.id : undefined;
    if (groupId !== undefined) assertId(groupId);
    return startExport(ctx, engine, kind, path(request.pathParams), { ...request, groupId });
  };
  const system = kickOff('system', () => '/$export');
  const patient = kickOff('patient', () => '/Patient/$export');
  const group = kickOff('group', (params) => `/Group/${params.id}/$export`);
  return [
    { method: 'GET', path: '/$export', handle: system },
    { method: 'POST', path: '/$export', handle: system },
    { method: 'GET', path: '/Patient/$export', handle: patient },
    { method: 'POST', path: '/Patient/$export', handle: patient },
    { method: 'GET', path: '/Group/:id/$export', handle: group },
    { method: 'POST', path: '/Group/:id/$export', handle: group },
    { method: 'GET', path: '/$export-status/:job', handle: (ctx, { pathParams }) => engine.status(ctx, pathParams.job) },
    { method: 'DELETE', path: '/$export-status/:job', handle: (ctx, { pathParams }) => engine.cancel(ctx, pathParams.job) },
    { method: 'GET', path: '/$export-file/:job/:file', produces: [NDJSON, 'application/ndjson'], handle: (ctx, { pathParams }) => engine.file(ctx, pathParams.job, pathParams.file) },
  ];
}

export interface KickOffRequest {
  params: URLSearchParams;
  body: unknown;
  headers: Headers;
  groupId: string | undefined;
}

/**
 * An operation delivering through $export's kick-off with parameters of its own
 * ($davinci-data-export's exportType and _until): `take` removes them from the input, checking
 * them (400), and answers what they add to the export request.
 */
export type KickOffExtension = (input: KickOffInput) => Partial<ExportRequest>;

export async function startExport(ctx: FhirContext, engine: ExportEngine, kind: ExportKind, path: string, request: KickOffRequest, extension?: KickOffExtension): Promise<Response> {
  const prefer = request.headers.get('prefer') ?? '';
  if (!/(?:^|[,;\s])respond-async(?:$|[,;\s])/.test(prefer)) {
    throw badRequest(`${path.slice(path.lastIndexOf('$'))} is asynchronous: send Prefer: respond-async, then poll the Content-Location of the 202`);
  }
  const lenient = preferredHandling(prefer) === 'lenient';
  const post = request.body !== undefined;
  const input = post ? parametersInput(request.body) : queryInput(request.params);
  const query = post ? '' : request.params.toString();
  const queryOnPost = post ? [...new Set(request.params.keys())].filter((name) => !HTTP_PARAMETERS.has(name)) : [];
  const added = extension?.(input) ?? {};
  const exportRequest = { ...parseKickOff(kind, input, { lenient, post, baseUrl: ctx.baseUrl, queryOnPost }), ...added };
  exportRequest.requestUrl = `${ctx.baseUrl}${path}${query ? `?${query}` : ''}`;
  if (request.groupId !== undefined) exportRequest.groupId = request.groupId;
  const started = await engine.startExport(ctx, exportRequest);
  return new Response(JSON.stringify(outcome('information', 'informational', `Export ${started.id} started; poll its status at the Content-Location`)), {
    status: 202,
    headers: { 'Content-Type': 'application/fhir+json; charset=utf-8', 'Content-Location': started.statusUrl },
  });
}

/** A kick-off's parameters by name, each value as given (a repeated parameter has several). */
export type KickOffInput = Map<string, { values: string[]; references: string[] }>;

function queryInput(params: URLSearchParams): KickOffInput {
  const input: KickOffInput = new Map();
  for (const [name, value] of params) {
    if (HTTP_PARAMETERS.has(name)) continue;
    const entry = input.get(name) ?? { values: [], references: [] };
    entry.values.push(value);
    input.set(name, entry);
  }
  return input;
}

/** POST: a Parameters resource; `patient` is a valueReference, the others strings (instant, code, string). */
function parametersInput(body: unknown): KickOffInput {
  const parameters = body as Parameters;
  if (typeof body !== 'object' || body === null || parameters.resourceType !== 'Parameters') throw badRequest('A POST kick-off carries a Parameters resource');
  const input: KickOffInput = new Map();
  for (const [i, parameter] of (parameters.parameter ?? []).entries()) {
    const name = parameter.name;
    if (typeof name !== 'string') throw badRequest(`Parameters.parameter[${i}] has no name`, [`Parameters.parameter[${i}]`]);
    const entry = input.get(name) ?? { values: [], references: [] };
    if (name === 'patient') entry.references.push(referenceValue(parameter, i));
    else entry.values.push(stringValue(parameter, i));
    input.set(name, entry);
  }
  return input;
}

function stringValue(parameter: ParametersParameter, i: number): string {
  const value = parameter.valueString ?? parameter.valueCode ?? parameter.valueInstant ?? parameter.valueDateTime ?? parameter.valueUri ?? parameter.valueCanonical;
  if (typeof value !== 'string') throw badRequest(`Parameter ${parameter.name} must have a string value (valueString, valueCode or valueInstant)`, [`Parameters.parameter[${i}]`]);
  return value;
}

function referenceValue(parameter: ParametersParameter, i: number): string {
  const reference = parameter.valueReference?.reference;
  if (typeof reference !== 'string') throw badRequest('Parameter patient must be a valueReference to a Patient', [`Parameters.parameter[${i}]`]);
  return reference;
}

interface ParseOptions {
  lenient: boolean;
  post: boolean;
  baseUrl: string;
  /** Query parameters sent with a POST, whose parameters are in its body. */
  queryOnPost: string[];
}

/** The kick-off's parameters → an ExportRequest; what is ignored under handling=lenient becomes an OperationOutcome of the error file. */
function parseKickOff(kind: ExportKind, input: KickOffInput, options: ParseOptions): ExportRequest {
  const messages: OperationOutcome[] = [];
  const unsupported = (diagnostics: string, parameter: string): void => {
    if (!options.lenient) throw new FhirError(400, outcome('error', 'not-supported', `${diagnostics} (Prefer: handling=lenient ignores it)`, [parameter]));
    messages.push(outcome('warning', 'not-supported', `${diagnostics}; ignored (Prefer: handling=lenient)`, [parameter]));
  };
  const request: ExportRequest = { kind, requestUrl: '' };
  const list = (name: string): string[] | undefined => {
    const values = input.get(name)?.values;
    return values?.flatMap((value) => value.split(',')).map((value) => value.trim()).filter(Boolean);
  };
  const single = (name: string): string | undefined => {
    const values = input.get(name)?.values ?? [];
    if (values.length > 1) throw badRequest(`${name} may be given once`, [name]);
    return values[0];
  };

  for (const name of options.queryOnPost) unsupported(`${name.slice(0, 64)} was sent in the query string: a POST kick-off takes its parameters in the Parameters resource`, name);
  for (const name of input.keys()) {
    if (!['_outputFormat', '_since', '_type', '_typeFilter', '_elements', 'patient', 'includeAssociatedData'].includes(name)) {
      unsupported(`Unknown parameter ${name.slice(0, 64)}: Bulk Data 2.0 $export takes _outputFormat, _since, _type, _typeFilter, _elements, patient and includeAssociatedData`, name);
    }
  }

  const format = single('_outputFormat');
  if (format !== undefined && !OUTPUT_FORMATS.has(format)) unsupported(`_outputFormat ${format.slice(0, 64)} is not supported: the files are application/fhir+ndjson`, '_outputFormat');

  const since = single('_since');
  if (since !== undefined) {
    if (!FHIR_INSTANT.test(since) || Number.isNaN(Date.parse(since))) throw badRequest('_since must be a FHIR instant with a time zone, such as 2024-01-01T00:00:00Z', ['_since']);
    request.since = since;
  }

  const types = list('_type');
  if (types !== undefined) {
    request.types = [];
    for (const type of new Set(types)) {
      if (isResourceType(type)) request.types.push(type);
      else unsupported(`_type names ${type.slice(0, 64)}, which is not an R4 resource type`, '_type');
    }
  }

  const filters = (input.get('_typeFilter')?.values ?? []).flatMap((value) => value.split(NEXT_QUERY)).filter(Boolean);
  if (filters.length > 0) request.typeFilters = filters.flatMap((filter) => typeFilter(filter, request.types, options, unsupported));

  const elements = list('_elements');
  if (elements !== undefined) {
    for (const element of elements) {
      const match = ELEMENT.exec(element);
      if (!match || (match[1] !== undefined && !isResourceType(match[1]))) {
        throw badRequest(`_elements names ${element.slice(0, 64)}: use Type.element or element, root elements only`, ['_elements']);
      }
    }
    request.elements = [...new Set(elements)];
  }

  const patients = input.get('patient');
  if (patients) {
    if (kind === 'system') unsupported('patient applies to Patient and Group exports, not to a system export', 'patient');
    else if (!options.post) unsupported('patient is a POST parameter (a Parameters valueReference)', 'patient');
    else {
      request.patients = [...new Set(patients.references.map((reference) => {
        const id = localPatientId(reference, options.baseUrl);
        if (!id) throw badRequest('patient must reference a Patient of this server (Patient/<id>)', ['patient']);
        return id;
      }))];
    }
  }

  const associated = list('includeAssociatedData');
  if (associated !== undefined) {
    const provenance: AssociatedProvenance[] = [];
    for (const value of associated) {
      if (value === 'RelevantProvenanceResources') provenance.push('relevant');
      else if (value === 'LatestProvenanceResources') provenance.push('latest');
      else unsupported(`includeAssociatedData ${value.slice(0, 64)} is not supported (LatestProvenanceResources, RelevantProvenanceResources are)`, 'includeAssociatedData');
    }
    // Bulk Data: conflicting values → the least restrictive.
    if (provenance.length > 0) request.associatedProvenance = provenance.includes('relevant') ? 'relevant' : 'latest';
  }

  if (messages.length > 0) request.messages = messages;
  return request;
}

/** One `_typeFilter` query, checked as a search of its type; under lenient handling, what is not supported is left out of it. */
function typeFilter(filter: string, types: string[] | undefined, options: ParseOptions, unsupported: (diagnostics: string, parameter: string) => void): TypeFilter[] {
  const question = filter.indexOf('?');
  const type = question < 0 ? filter : filter.slice(0, question);
  if (!isResourceType(type)) {
    unsupported(`_typeFilter ${filter.slice(0, 64)} does not start with a resource type and ?`, '_typeFilter');
    return [];
  }
  if (types && !types.includes(type)) {
    unsupported(`_typeFilter filters ${type}, which _type does not ask for`, '_typeFilter');
    return [];
  }
  const params = new URLSearchParams(question < 0 ? '' : filter.slice(question + 1));
  for (const name of [...new Set(params.keys())]) {
    if (!RESULT_PARAMETERS.has(name)) continue;
    unsupported(`_typeFilter may not use the result parameter ${name}`, '_typeFilter');
    params.delete(name);
  }
  const search = parseSearchRequest(type, params, { strict: false, baseUrl: options.baseUrl });
  for (const name of search.ignored) unsupported(`_typeFilter uses ${name.slice(0, 64)}, which is not a search parameter of ${type}`, '_typeFilter');
  return [{ type, query: new URLSearchParams(search.applied).toString() }];
}
