import type { Context } from 'hono';
import { FhirError, badRequest, outcome } from '../errors.ts';

/** FHIR JSON only (DESIGN: JSON only). These media types are what a client may send and accept. */
const JSON_TYPES = new Set(['application/fhir+json', 'application/json', 'application/json+fhir']);
const FORMAT_ALIASES = new Set(['json', ...JSON_TYPES]);
const ANY = new Set(['*/*', 'application/*']);

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function mediaType(value: string): string {
  return value.split(';')[0].trim().toLowerCase();
}

/** `_format` wins over Accept (http.html#mime-type); XML and unknown formats are 406. */
export function assertAcceptable(format: string | undefined, accept: string | undefined): void {
  if (format !== undefined) {
    if (!FORMAT_ALIASES.has(mediaType(format))) {
      throw new FhirError(406, outcome('error', 'not-supported', `_format "${format.slice(0, 60)}" is not supported; Baton serves FHIR JSON only (json, application/fhir+json)`));
    }
    return;
  }
  if (!accept) return;
  const ranges = accept.split(',').map(mediaType);
  if (ranges.some((r) => JSON_TYPES.has(r) || ANY.has(r) || r === '')) return;
  throw new FhirError(406, outcome('error', 'not-supported', `Accept "${accept.slice(0, 60)}" is not supported; Baton serves FHIR JSON only (application/fhir+json)`));
}

/** Content-Type of a request body; `allowed` adds e.g. JSON Patch or form encoding. */
export function assertContentType(contentType: string | undefined, allowed: readonly string[] = []): string {
  const type = contentType ? mediaType(contentType) : '';
  if (JSON_TYPES.has(type) || allowed.includes(type)) return type;
  const expected = ['application/fhir+json', ...allowed].join(' or ');
  throw new FhirError(415, outcome('error', 'not-supported', `Content-Type "${(contentType ?? '').slice(0, 60)}" is not supported; send ${expected}`));
}

/** Deeper than any real resource; deep enough that recursive code downstream never overflows. */
const MAX_DEPTH = 64;

/**
 * Parses a JSON body. Rejects nesting deeper than MAX_DEPTH and keys that could reach an object
 * prototype (`__proto__`), so nothing after this point sees hostile shapes.
 */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') throw badRequest('The request body is empty; a FHIR resource was expected');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw badRequest(`The body is not valid JSON: ${(error as Error).message.slice(0, 120)}`);
  }
  assertSafeShape(value);
  return value;
}

function assertSafeShape(root: unknown): void {
  const stack: [unknown, number][] = [[root, 1]];
  while (stack.length) {
    const [value, depth] = stack.pop() as [unknown, number];
    if (typeof value !== 'object' || value === null) continue;
    if (depth > MAX_DEPTH) throw badRequest(`The body nests deeper than ${MAX_DEPTH} levels`);
    if (Array.isArray(value)) {
      for (const item of value) stack.push([item, depth + 1]);
      continue;
    }
    for (const key of Object.keys(value)) {
      if (key === '__proto__' || key === 'constructor' || key === 'prototype') throw badRequest(`The body has a forbidden property name "${key}"`);
      stack.push([(value as Record<string, unknown>)[key], depth + 1]);
    }
  }
}

export async function readJsonBody(c: Context, allowed: readonly string[] = []): Promise<unknown> {
  assertContentType(c.req.header('content-type'), allowed);
  return parseJsonBody(await c.req.text());
}

/** The `handling` preference of a Prefer header (http.html#prefer: strict or lenient), if it states one. */
export function preferredHandling(prefer: string | null | undefined): 'strict' | 'lenient' | undefined {
  const match = /(?:^|[,;\s])handling=(strict|lenient)(?:$|[,;\s])/.exec(prefer ?? '');
  return match ? (match[1] as 'strict' | 'lenient') : undefined;
}
