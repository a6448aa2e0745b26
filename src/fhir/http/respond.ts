import type { OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { Context } from 'hono';
import { badRequest, informational } from '../errors.ts';
import type { InteractionResult } from '../interactions.ts';
import { applyRepresentation, isFullRepresentation, parseElements, parseSummary, type Representation } from '../representation.ts';
import { FHIR_JSON } from './negotiation.ts';

export type PreferReturn = 'minimal' | 'representation' | 'OperationOutcome';

/** What the client asked about the shape of the answer: _pretty, _summary, _elements, Prefer. */
export interface ResponseOptions extends Representation {
  pretty: boolean;
  preferReturn: PreferReturn;
}

export function responseOptions(c: Context): ResponseOptions {
  const pretty = c.req.query('_pretty');
  if (pretty !== undefined && pretty !== 'true' && pretty !== 'false') throw badRequest('_pretty must be true or false', ['_pretty']);
  return {
    pretty: pretty === 'true',
    summary: parseSummary(c.req.query('_summary')),
    elements: parseElements(c.req.query('_elements')),
    preferReturn: parsePreferReturn(c.req.header('prefer')),
  };
}

function parsePreferReturn(prefer: string | undefined): PreferReturn {
  const match = /(?:^|[,;\s])return=([A-Za-z]+)/.exec(prefer ?? '');
  const value = match?.[1];
  return value === 'minimal' || value === 'OperationOutcome' ? value : 'representation';
}

export function serialize(value: unknown, pretty: boolean): string {
  return pretty ? JSON.stringify(value, null, 2) : JSON.stringify(value);
}

/** A resource with FHIR JSON headers; `json` is served as stored when nothing asks to reshape it. */
export function resourceResponse(status: number, body: { resource?: Resource; json?: string }, options: ResponseOptions, headers: Record<string, string> = {}): Response {
  let text: string;
  if (body.json !== undefined && isFullRepresentation(options) && !options.pretty) {
    text = body.json;
  } else {
    const resource = body.resource ?? (JSON.parse(body.json as string) as Resource);
    text = serialize(applyRepresentation(resource, options), options.pretty);
  }
  return new Response(text, { status, headers: { 'Content-Type': FHIR_JSON, ...headers } });
}

export function outcomeResponse(status: number, outcome: OperationOutcome, pretty = false, headers: Record<string, string> = {}): Response {
  return new Response(serialize(outcome, pretty), { status, headers: { 'Content-Type': FHIR_JSON, ...headers } });
}

export function versionHeaders(result: InteractionResult): Record<string, string> {
  const headers: Record<string, string> = {};
  if (result.versionId !== undefined) headers.ETag = `W/"${result.versionId}"`;
  if (result.lastUpdatedMs !== undefined) headers['Last-Modified'] = new Date(result.lastUpdatedMs).toUTCString();
  if (result.location) headers.Location = result.location;
  return headers;
}

/** Renders an interaction's result as the HTTP answer, honouring Prefer: return=… on writes. */
export function interactionResponse(result: InteractionResult, options: ResponseOptions, isWrite: boolean): Response {
  const headers = versionHeaders(result);
  if (result.status === 204) return new Response(null, { status: 204, headers });
  if (isWrite && options.preferReturn === 'minimal') return new Response(null, { status: result.status, headers });
  if (isWrite && options.preferReturn === 'OperationOutcome') {
    const text = result.outcome ?? informational(`${result.resourceType}/${result.id} version ${result.versionId} stored`);
    return outcomeResponse(result.status, text, options.pretty, headers);
  }
  if (!result.resource && result.json === undefined) return outcomeResponse(result.status, result.outcome ?? informational('Done'), options.pretty, headers);
  return resourceResponse(result.status, result, options, headers);
}
