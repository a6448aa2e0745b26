import type { Parameters } from '@medplum/fhirtypes';
import { isResourceType } from '../../fhir/definitions.ts';
import { badRequest } from '../../fhir/errors.ts';
import { parseCount, parseInstant } from '../../fhir/history.ts';
import { dateRange } from '../../fhir/search/values.ts';

/**
 * The inputs of Patient/$everything (R4 OperationDefinition Patient-everything): start, end,
 * _since, _type and _count, plus the _cursor of this server's `next` links. A parameter the
 * operation does not define is refused (400), as is a value it cannot take, naming the parameter:
 * quietly ignoring one would answer a different question than the client asked.
 */
export interface EverythingInput {
  /** Care dates, as the instants the `start` and `end` dates cover (end inclusive). */
  careFrom?: string;
  careTo?: string;
  /** The dates as given, for the links. */
  start?: string;
  end?: string;
  /** meta.lastUpdated at or after this instant. */
  since?: string;
  sinceText?: string;
  /** The resource types asked for; undefined: every type. */
  types?: string[];
  count: number;
  cursor?: Cursor;
}

/** A position in the operation's order: rank (0 the Patient, 1 its compartment, 2 what they reference), then type and id. */
export interface Cursor {
  rank: number;
  type: string;
  id: string;
}

/**
 * R4: "unless the client requests otherwise, the server returns the entire result set in a
 * single bundle". A member's record can be large, so a page holds at most this many (the
 * largest page search and history serve) and the rest follows through `next` links.
 */
export const DEFAULT_PAGE = 1000;

const SINGLE = ['start', 'end', '_since', '_count', '_cursor'];
/** _format is content negotiation and _pretty presentation, both handled before the operation runs. */
const KNOWN = new Set([...SINGLE, '_type', '_format', '_pretty']);
const DATE = /^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/;
const CURSOR = /^([0-2])\.([A-Z][A-Za-z]+)\.([A-Za-z0-9\-.]{1,64})$/;

/** Unknown parameters are a 400, or ignored under `Prefer: handling=lenient`. */
export function parseEverythingParameters(params: URLSearchParams, lenient = false): EverythingInput {
  for (const name of new Set(params.keys())) {
    if (!KNOWN.has(name) && lenient) continue;
    if (!KNOWN.has(name)) throw badRequest(`Patient/$everything has no parameter "${name.slice(0, 64)}"; it takes start, end, _since, _type and _count`, [name.slice(0, 64)]);
    if (SINGLE.includes(name) && params.getAll(name).length > 1) throw badRequest(`${name} may be given once`, [name]);
  }
  const input: EverythingInput = { count: parseCount(params.get('_count'), DEFAULT_PAGE) };
  const start = params.get('start');
  const end = params.get('end');
  if (start !== null) [input.start, input.careFrom] = [start, careDate(start, 'start').start];
  if (end !== null) [input.end, input.careTo] = [end, careDate(end, 'end').end];
  if (input.careFrom && input.careTo && input.careFrom > input.careTo) throw badRequest('start is after end', ['start', 'end']);
  const since = params.get('_since');
  if (since !== null) [input.sinceText, input.since] = [since, parseInstant(since, '_since')];
  const types = params.getAll('_type');
  if (types.length > 0) input.types = [...new Set(types.flatMap((value) => value.split(',')).map((type) => resourceType(type.trim())))];
  const cursor = params.get('_cursor');
  if (cursor !== null) input.cursor = parseCursor(cursor);
  return input;
}

/** The query string a link carries for these inputs, at `cursor`. */
export function everythingQuery(input: EverythingInput, cursor?: Cursor): URLSearchParams {
  const query = new URLSearchParams();
  if (input.start !== undefined) query.set('start', input.start);
  if (input.end !== undefined) query.set('end', input.end);
  if (input.sinceText !== undefined) query.set('_since', input.sinceText);
  if (input.types) query.set('_type', input.types.join(','));
  query.set('_count', String(input.count));
  if (cursor) query.set('_cursor', `${cursor.rank}.${cursor.type}.${cursor.id}`);
  return query;
}

/**
 * The POST form: a Parameters resource whose parameters are the GET ones (start and end as
 * valueDate, _since valueInstant, _type valueCode, _count valueInteger), added to the query's.
 */
export function withParametersBody(params: URLSearchParams, body: unknown): URLSearchParams {
  const resource = body as Parameters | undefined;
  if (resource?.resourceType !== 'Parameters') throw badRequest('POST Patient/$everything takes a Parameters resource');
  const query = new URLSearchParams(params);
  for (const [i, parameter] of (resource.parameter ?? []).entries()) {
    const value = parameter.valueDate ?? parameter.valueDateTime ?? parameter.valueInstant ?? parameter.valueCode ?? parameter.valueString ?? parameter.valueInteger;
    if (typeof parameter.name !== 'string' || value === undefined) throw badRequest(`Parameters.parameter[${i}] needs a name and a value`, [`Parameters.parameter[${i}]`]);
    query.append(parameter.name, String(value));
  }
  return query;
}

function careDate(value: string, name: 'start' | 'end') {
  const range = DATE.test(value) ? dateRange(value) : undefined;
  if (!range) throw badRequest(`${name} must be a FHIR date such as 2024-05-01; got "${value.slice(0, 40)}"`, [name]);
  return range;
}

function resourceType(type: string): string {
  if (!isResourceType(type)) throw badRequest(`_type names "${type.slice(0, 64)}", which is not an R4 resource type`, ['_type']);
  return type;
}

function parseCursor(value: string): Cursor {
  const match = CURSOR.exec(value);
  if (!match) throw badRequest('_cursor is not a cursor this server issued', ['_cursor']);
  return { rank: Number(match[1]), type: match[2], id: match[3] };
}
