import { FhirError } from '../fhir/errors.ts';
import { parseSearchRequest } from '../fhir/search/parse.ts';
import { isKnownScope, parseResourceScope, splitScopes } from './scopes.ts';

export type ClientKind = 'partner' | 'internal';

export interface Identifier {
  system: string;
  value: string;
}

/** A registration request as the admin API accepts it, validated. */
export interface ClientRegistration {
  name: string;
  kind: ClientKind;
  organizationIdentifiers: Identifier[];
  jwks: { keys: Record<string, unknown>[] } | undefined;
  jwksUri: string | undefined;
  scopes: string[];
}

/** JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/**
 * Checks an admin-API body `{name, kind, organization: {identifier}, jwks | jwks_uri, scope}`;
 * returns the registration or the list of problems.
 */
export function parseRegistration(body: unknown): { registration: ClientRegistration } | { problems: string[] } {
  if (!isObject(body)) return { problems: ['the body must be a JSON object'] };
  const problems: string[] = [];
  const name = typeof body.name === 'string' ? body.name.trim() : '';
  if (!name) problems.push('name must be a non-empty string');
  const kind = body.kind;
  if (kind !== 'partner' && kind !== 'internal') problems.push('kind must be "partner" or "internal"');
  const identifiers = isObject(body.organization) ? body.organization.identifier : undefined;
  const identifiersValid =
    Array.isArray(identifiers) &&
    identifiers.length > 0 &&
    identifiers.every((i) => isObject(i) && typeof i.system === 'string' && i.system !== '' && typeof i.value === 'string' && i.value !== '');
  if (!identifiersValid) problems.push('organization.identifier must be a non-empty array of {system, value} strings');
  if ((body.jwks === undefined) === (body.jwks_uri === undefined)) problems.push('exactly one of jwks and jwks_uri is required');
  if (body.jwks !== undefined) problems.push(...jwksProblems(body.jwks));
  if (body.jwks_uri !== undefined) {
    const problem = jwksUriProblem(body.jwks_uri);
    if (problem) problems.push(problem);
  }
  const scopes = typeof body.scope === 'string' ? splitScopes(body.scope) : [];
  if (scopes.length === 0) problems.push('scope must be a non-empty space-separated list of scopes');
  const unknown = scopes.filter((s) => !isKnownScope(s));
  if (unknown.length > 0) problems.push(`unrecognized scopes: ${unknown.join(' ')}`);
  for (const scope of scopes) {
    const problem = constraintProblem(scope);
    if (problem) problems.push(problem);
  }
  if (problems.length > 0) return { problems };
  return {
    registration: {
      name,
      kind: kind as ClientKind,
      organizationIdentifiers: (identifiers as Identifier[]).map(({ system, value }) => ({ system, value })),
      jwks: body.jwks as ClientRegistration['jwks'],
      jwksUri: body.jwks_uri as string | undefined,
      scopes,
    },
  };
}

function jwksProblems(jwks: unknown): string[] {
  if (!isObject(jwks) || !Array.isArray(jwks.keys) || jwks.keys.length === 0) return ['jwks must be a JWK Set with a non-empty keys array'];
  const problems: string[] = [];
  for (const [i, key] of jwks.keys.entries()) {
    if (!isObject(key) || (key.kty !== 'RSA' && key.kty !== 'EC')) problems.push(`jwks.keys[${i}] must be an RSA or EC public key`);
    else if (typeof key.kid !== 'string' || !key.kid) problems.push(`jwks.keys[${i}] needs a kid: assertions select their key by kid`);
    else if (PRIVATE_MEMBERS.some((m) => m in key)) problems.push(`jwks.keys[${i}] contains private key material; register the public key only`);
  }
  return problems;
}

/** The client's keys travel over this URL, so it must be https; plain http only to a loopback host (development, tests). */
function jwksUriProblem(value: unknown): string | undefined {
  const url = typeof value === 'string' && !/\s/.test(value) ? absoluteUrl(value) : undefined;
  if (!url) return 'jwks_uri must be an absolute https URL';
  if (url.username || url.password) return 'jwks_uri must not carry credentials';
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopback(url.hostname))) return undefined;
  return 'jwks_uri must be an https URL (plain http only for a loopback host such as 127.0.0.1)';
}

function absoluteUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A v2 constraint (`system/Observation.rs?category=laboratory`) must be a search Baton can run on that type; otherwise it would admit nothing. */
function constraintProblem(scope: string): string | undefined {
  const parsed = parseResourceScope(scope);
  if (!parsed?.query) return undefined;
  if (parsed.type === '*') return `scope ${scope} constrains every type; a ?param=value constraint needs one resource type`;
  try {
    parseSearchRequest(parsed.type, new URLSearchParams(parsed.query.slice(1)), { strict: true, baseUrl: undefined });
    return undefined;
  } catch (error) {
    if (!(error instanceof FhirError)) throw error;
    return `scope ${scope} has a constraint that is not a valid ${parsed.type} search: ${error.message}`;
  }
}
