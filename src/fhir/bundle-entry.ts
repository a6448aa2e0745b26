import type { Resource } from '@medplum/fhirtypes';
import type { Operation } from 'rfc6902';
import { isResourceType } from './definitions.ts';
import { badRequest } from './errors.ts';
import { parseJsonBody } from './http/negotiation.ts';
import { assertId } from './interactions.ts';

/**
 * One entry of a batch or transaction Bundle, read into the interaction it asks for
 * (http.html#transaction, Bundle.entry.request). Pure: no database, no clock.
 */
export type EntryMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export type EntryRequest =
  | { interaction: 'read'; type: string; id: string; params: URLSearchParams }
  | { interaction: 'vread'; type: string; id: string; versionId: string; params: URLSearchParams }
  | { interaction: 'search'; type: string; params: URLSearchParams }
  | { interaction: 'history'; type?: string; id?: string; params: URLSearchParams }
  | { interaction: 'create'; type: string; resource: Resource; ifNoneExist?: string }
  | { interaction: 'update'; type: string; id: string; resource: Resource; ifMatch?: string }
  | { interaction: 'conditional-update'; type: string; condition: string; resource: Resource; ifMatch?: string }
  | { interaction: 'patch'; type: string; id: string; operations: Operation[]; ifMatch?: string }
  | { interaction: 'delete'; type: string; id: string; ifMatch?: string }
  | { interaction: 'conditional-delete'; type: string; condition: string };

export interface BundleRequestEntry {
  index: number;
  method: EntryMethod;
  /** request.url relative to the base, as the links of a search or history answer need it. */
  url: string;
  fullUrl?: string;
  request: EntryRequest;
  /** Bundle.entry.request.ifNoneMatch / ifModifiedSince: a read answers 304 when they hold. */
  ifNoneMatch?: string;
  ifModifiedSince?: string;
}

const METHODS = new Set<string>(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);
const JSON_PATCH = 'application/json-patch+json';

/**
 * Reads Bundle.entry[index]. Every problem is a 400 whose expression names the element at
 * fault; the caller prefixes the message with the entry (bundle-response.ts atEntry).
 */
export function parseEntry(entry: unknown, index: number, baseUrl: string): BundleRequestEntry {
  const at = `Bundle.entry[${index}]`;
  if (!isObject(entry)) throw badRequest('the entry must be an object', [at]);
  const request = entry.request;
  if (!isObject(request)) throw badRequest('the entry has no request; batch and transaction entries say what to do in entry.request', [`${at}.request`]);
  const method = request.method;
  if (typeof method !== 'string' || !METHODS.has(method)) {
    throw badRequest(`request.method must be one of GET, HEAD, POST, PUT, PATCH, DELETE; got "${String(method).slice(0, 20)}"`, [`${at}.request.method`]);
  }
  if (typeof request.url !== 'string' || request.url.trim() === '') throw badRequest('request.url is missing', [`${at}.request.url`]);
  const fullUrl = optionalString(entry.fullUrl, at, 'fullUrl');
  const target = parseRequestUrl(request.url, baseUrl, `${at}.request.url`);
  const parsed: BundleRequestEntry = {
    index,
    method: method as EntryMethod,
    url: target.query === '' ? target.segments.join('/') : `${target.segments.join('/')}?${target.query}`,
    fullUrl,
    request: toRequest(method as EntryMethod, target, entry.resource, request, at),
  };
  const ifNoneMatch = optionalString(request.ifNoneMatch, at, 'request.ifNoneMatch');
  const ifModifiedSince = optionalString(request.ifModifiedSince, at, 'request.ifModifiedSince');
  if (ifNoneMatch !== undefined) parsed.ifNoneMatch = ifNoneMatch;
  if (ifModifiedSince !== undefined) parsed.ifModifiedSince = ifModifiedSince;
  return parsed;
}

/** The parts of a relative request URL: `Patient`, `Patient/1/_history/2`, `Patient?identifier=x`. */
export interface RequestTarget {
  segments: string[];
  /** The query string without `?`; '' when there is none. */
  query: string;
}

/** `at` is the FHIRPath of the url element, for the OperationOutcome's expression. */
export function parseRequestUrl(url: string, baseUrl: string, at: string): RequestTarget {
  let relative = url.trim();
  if (relative.startsWith(`${baseUrl}/`)) {
    relative = relative.slice(baseUrl.length + 1);
  } else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(relative)) {
    throw badRequest(`request.url "${relative.slice(0, 80)}" is an absolute URL that is not this server's (${baseUrl}); use a relative URL such as Patient/123`, [at]);
  } else if (relative.startsWith('/')) {
    relative = relative.slice(1);
  }
  const mark = relative.indexOf('?');
  const path = mark < 0 ? relative : relative.slice(0, mark);
  const query = mark < 0 ? '' : relative.slice(mark + 1);
  const segments = path.split('/');
  if (segments[0] !== '_history') {
    if (!/^[A-Z][A-Za-z]{0,63}$/.test(segments[0]) || !isResourceType(segments[0])) {
      throw badRequest(`request.url does not start with a known resource type: "${path.slice(0, 80)}"`, [at]);
    }
    if (segments.length > 1 && segments[1] !== '_history') assertId(segments[1]);
  }
  return { segments, query };
}

function toRequest(method: EntryMethod, target: RequestTarget, resource: unknown, request: Record<string, unknown>, at: string): EntryRequest {
  const { segments, query } = target;
  const params = new URLSearchParams(query);
  const [type, second, , fourth] = segments;
  const shape = type === '_history' ? (segments.length === 1 ? 'system-history' : 'other') : shapeOf(segments);
  const url = `${at}.request.url`;
  const ifMatch = optionalString(request.ifMatch, at, 'request.ifMatch');
  // HEAD is GET without the body (http.html#read): the same interaction.
  switch (`${method === 'HEAD' ? 'GET' : method} ${shape}`) {
    case 'GET type':
      return { interaction: 'search', type, params };
    case 'GET instance':
      return { interaction: 'read', type, id: second, params };
    case 'GET version':
      return { interaction: 'vread', type, id: second, versionId: fourth, params };
    case 'GET system-history':
      return { interaction: 'history', params };
    case 'GET type-history':
      return { interaction: 'history', type, params };
    case 'GET instance-history':
      return { interaction: 'history', type, id: second, params };
    case 'POST type': {
      if (query !== '') throw badRequest('a create is POST [type] without a query; put search criteria in request.ifNoneExist', [url]);
      const ifNoneExist = optionalString(request.ifNoneExist, at, 'request.ifNoneExist');
      return { interaction: 'create', type, resource: bodyOf(resource, type, at), ...(ifNoneExist === undefined ? {} : { ifNoneExist }) };
    }
    case 'PUT instance':
      return { interaction: 'update', type, id: second, resource: bodyOf(resource, type, at), ...withIfMatch(ifMatch) };
    case 'PUT type':
      if (query === '') throw badRequest('PUT needs [type]/[id], or [type]?criteria for a conditional update', [url]);
      return { interaction: 'conditional-update', type, condition: query, resource: bodyOf(resource, type, at), ...withIfMatch(ifMatch) };
    case 'PATCH instance':
      return { interaction: 'patch', type, id: second, operations: patchOperations(resource, at), ...withIfMatch(ifMatch) };
    case 'DELETE instance':
      return { interaction: 'delete', type, id: second, ...withIfMatch(ifMatch) };
    case 'DELETE type':
      if (query === '') throw badRequest('DELETE needs [type]/[id], or [type]?criteria for a conditional delete', [url]);
      return { interaction: 'conditional-delete', type, condition: query };
  }
  throw badRequest(`${method} ${segments.join('/').slice(0, 80)} is not an interaction a batch or transaction entry can ask for`, [url]);
}

type Shape = 'type' | 'instance' | 'version' | 'type-history' | 'instance-history' | 'other';

function shapeOf(segments: string[]): Shape {
  const [, second, third, fourth] = segments;
  switch (segments.length) {
    case 1:
      return 'type';
    case 2:
      return second === '_history' ? 'type-history' : 'instance';
    case 3:
      return third === '_history' ? 'instance-history' : 'other';
    case 4:
      return third === '_history' && /^[1-9][0-9]{0,8}$/.test(fourth) ? 'version' : 'other';
    default:
      return 'other';
  }
}

function withIfMatch(ifMatch: string | undefined): { ifMatch?: string } {
  return ifMatch === undefined ? {} : { ifMatch };
}

/** POST and PUT carry the resource; its type must be the URL's (http.html#update). */
function bodyOf(resource: unknown, type: string, at: string): Resource {
  if (!isObject(resource)) throw badRequest('resource is missing; POST and PUT entries carry the resource to write', [`${at}.resource`]);
  if (resource.resourceType !== type) {
    throw badRequest(`resource.resourceType "${String(resource.resourceType).slice(0, 64)}" does not match the request URL's "${type}"`, [`${at}.resource.resourceType`]);
  }
  return resource as unknown as Resource;
}

/** A PATCH entry carries its JSON Patch as a Binary (http.html#patch, Bundle.entry.resource). */
function patchOperations(resource: unknown, at: string): Operation[] {
  if (!isObject(resource) || resource.resourceType !== 'Binary') {
    throw badRequest(`a PATCH entry carries a Binary whose data is a JSON Patch (${JSON_PATCH})`, [`${at}.resource`]);
  }
  if (resource.contentType !== JSON_PATCH) {
    throw badRequest(`resource.contentType must be ${JSON_PATCH}; Baton supports JSON Patch only`, [`${at}.resource.contentType`]);
  }
  if (typeof resource.data !== 'string') throw badRequest('resource.data must hold the base64 JSON Patch', [`${at}.resource.data`]);
  const operations = parseJsonBody(Buffer.from(resource.data, 'base64').toString('utf8'));
  if (!Array.isArray(operations)) throw badRequest('resource.data must be a JSON Patch array (RFC 6902)', [`${at}.resource.data`]);
  return operations as Operation[];
}

function optionalString(value: unknown, at: string, element: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw badRequest(`${element} must be a string`, [`${at}.${element}`]);
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
