import type { CapabilityStatementRestSecurity } from '@medplum/fhirtypes';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Database } from '../../db/connection.ts';
import type { AccessPolicy } from '../access.ts';
import type { AuditSink } from '../audit-sink.ts';
import { processBundle } from '../bundle.ts';
import { capabilityStatement } from '../capability-statement.ts';
import { FhirError, methodNotAllowed, notFound, outcome } from '../errors.ts';
import { history } from '../history.ts';
import { parseProvenanceHeader } from '../provenance.ts';
import * as interactions from '../interactions.ts';
import { searchResources } from '../search/search.ts';
import type { ResourceValidator } from '../validation.ts';
import { type IdempotencyOptions, idempotency } from './idempotency.ts';
import { assertAcceptable, preferredHandling, readJsonBody } from './negotiation.ts';
import { interactionResponse, resourceResponse, responseOptions, serialize } from './respond.ts';
import type { SeparateStores } from '../separate-store.ts';

export interface FhirRoutesDeps {
  db: Database;
  baseUrl: string;
  validator: ResourceValidator;
  maxBodyBytes: number;
  /** How clients authenticate, for the CapabilityStatement (rest.security). */
  security?: CapabilityStatementRestSecurity;
  /**
   * The caller's access policy from the Authorization header, or a thrown 401. connection is the
   * server's bindings of the request (c.env: the Node socket, for certificate-bound tokens).
   */
  authenticate: (authorization: string | undefined, connection: unknown) => Promise<AccessPolicy>;
  operations?: readonly OperationRoute[];
  /** Idempotency-Key on POST interactions and operations. */
  idempotency: IdempotencyOptions;
  /** Rules applied to every write of their resource type (interactions.WriteRule). */
  writeRules?: interactions.WriteRules;
  /** Types read and searched in stores of their own (AuditEvent: src/audit/event-store.ts). */
  separateStores?: SeparateStores;
}

/**
 * A FHIR operation (`/Patient/$member-match`, `/AuditEvent/$verify`), implemented outside the
 * REST core (src/operations) and served here, behind the same authentication and audit. The
 * handler gets the request's FhirContext, the query parameters and, for POST and PUT, the JSON body; it
 * answers a resource (200) or a Response of its own (202 and the like).
 */
export interface OperationRoute {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Under the FHIR base, e.g. `/Patient/$member-match` or `/Group/:id/$export`. */
  path: string;
  /**
   * Media types the operation answers besides FHIR JSON (a Bulk Data file is
   * application/fhir+ndjson): an Accept naming one of them is not refused with 406.
   */
  produces?: readonly string[];
  handle(ctx: interactions.FhirContext, request: { params: URLSearchParams; body: unknown; pathParams: Record<string, string>; headers: Headers }): Promise<object | Response>;
}

/** requestId is set by the app's first middleware, before these routes. */
export type FhirEnv = { Variables: { access: AccessPolicy; audit: AuditSink; requestId?: string } };

const JSON_PATCH = 'application/json-patch+json';
const FORM = 'application/x-www-form-urlencoded';

/** The FHIR REST API under /fhir (http.html): every interaction, plus 404/405 for the rest. */
export function fhirRoutes(deps: FhirRoutesDeps): Hono<FhirEnv> {
  const app = new Hono<FhirEnv>();
  const context = (c: Context<FhirEnv>): interactions.FhirContext => {
    const requestId = c.get('requestId');
    return {
      db: deps.db,
      q: deps.db,
      inTransaction: false,
      baseUrl: deps.baseUrl,
      validator: deps.validator,
      access: c.get('access'),
      audit: c.get('audit'),
      ...(requestId ? { requestId } : {}),
      ...(deps.writeRules ? { writeRules: deps.writeRules } : {}),
      ...(deps.separateStores ? { separateStores: deps.separateStores } : {}),
    };
  };
  // Creates and updates may carry the client's Provenance (X-Provenance).
  const writeContext = (c: Context<FhirEnv>): interactions.FhirContext => {
    const provenance = parseProvenanceHeader(c.req.header('x-provenance'));
    return provenance ? { ...context(c), provenance } : context(c);
  };
  const publicUrl = (c: Context<FhirEnv>): URL => {
    const url = new URL(c.req.url);
    const base = new URL(deps.baseUrl);
    return new URL(`${deps.baseUrl}${url.pathname.slice(url.pathname.indexOf('/fhir') + 5)}${url.search}`, base);
  };

  // Every endpoint but the CapabilityStatement needs an access token (SMART Backend Services).
  app.use('*', async (c, next) => {
    if (c.req.method !== 'GET' || !/^\/fhir\/metadata\/?$/.test(c.req.path)) c.set('access', await deps.authenticate(c.req.header('authorization'), c.env));
    await next();
  });
  const limitBody = bodyLimit({
    maxSize: deps.maxBodyBytes,
    onError: () => {
      throw new FhirError(413, outcome('error', 'too-costly', `The request body exceeds ${deps.maxBodyBytes} bytes`));
    },
  });
  // Only on methods that carry a body: looking for one makes @hono/node-server build a full
  // Request per call, which cost reads about a tenth of their throughput.
  app.on(['POST', 'PUT', 'PATCH'], '*', limitBody);
  // After authentication (a key is the client's own) and the body limit, before every POST handler.
  app.post('*', idempotency(deps.idempotency));

  // Operations come before the FHIR JSON Accept check, so that one producing another media type
  // (produces) can be asked for it; the others are checked as every FHIR request is.
  for (const operation of deps.operations ?? []) {
    app.on(operation.method, operation.path, async (c) => {
      if (!acceptsOneOf(c.req.header('accept'), operation.produces)) assertAcceptable(c.req.query('_format'), c.req.header('accept'));
      const body = operation.method === 'POST' || operation.method === 'PUT' ? await readJsonBody(c) : undefined;
      const result = await operation.handle(context(c), { params: queryParams(c), body, pathParams: c.req.param() as Record<string, string>, headers: c.req.raw.headers });
      return result instanceof Response ? result : jsonResponse(c, result);
    });
  }

  app.use('*', async (c, next) => {
    assertAcceptable(c.req.query('_format'), c.req.header('accept'));
    await next();
  });

  // SMART App Launch 2.2: browser-based clients read the CapabilityStatement cross-origin.
  app.get('/metadata', (c) => {
    const response = jsonResponse(c, capabilityStatement(deps.baseUrl, deps.validator.profiles, deps.security, Object.keys(deps.separateStores ?? {})));
    response.headers.set('Access-Control-Allow-Origin', '*');
    return response;
  });

  app.post('/', async (c) => {
    const options = responseOptions(c);
    return jsonResponse(c, await processBundle(context(c), await readJsonBody(c), { preferReturn: options.preferReturn }));
  });

  app.get('/_history', async (c) => jsonResponse(c, await history(context(c), { params: queryParams(c), url: publicUrl(c) })));

  app.get('/:type{[A-Z][A-Za-z]+}', async (c) => jsonResponse(c, await searchResources(context(c), c.req.param('type'), queryParams(c), publicUrl(c), strictHandling(c))));

  app.post('/:type{[A-Z][A-Za-z]+}/_search', async (c) => {
    const type = c.req.param('type');
    interactions.assertResourceType(type);
    const contentType = c.req.header('content-type') ?? '';
    if (!contentType.toLowerCase().startsWith(FORM)) {
      throw new FhirError(415, outcome('error', 'not-supported', `POST ${type}/_search takes ${FORM} parameters`));
    }
    const params = queryParams(c);
    for (const [key, value] of new URLSearchParams(await c.req.text())) params.append(key, value);
    return jsonResponse(c, await searchResources(context(c), type, params, publicUrl(c), strictHandling(c)));
  });

  app.get('/:type{[A-Z][A-Za-z]+}/_history', async (c) =>
    jsonResponse(c, await history(context(c), { resourceType: c.req.param('type'), params: queryParams(c), url: publicUrl(c) })),
  );

  app.post('/:type{[A-Z][A-Za-z]+}', async (c) => {
    const options = responseOptions(c);
    const result = await interactions.create(writeContext(c), c.req.param('type'), await readJsonBody(c), c.req.header('if-none-exist'));
    return interactionResponse(result, options, true);
  });

  app.put('/:type{[A-Z][A-Za-z]+}', async (c) => {
    const type = c.req.param('type');
    const condition = new URL(c.req.url).search.slice(1);
    const options = responseOptions(c);
    const result = await interactions.conditionalUpdate(writeContext(c), type, condition, await readJsonBody(c), { ifMatch: c.req.header('if-match') });
    return interactionResponse(result, options, true);
  });

  app.delete('/:type{[A-Z][A-Za-z]+}', async (c) => {
    const options = responseOptions(c);
    const result = await interactions.conditionalDelete(context(c), c.req.param('type'), new URL(c.req.url).search.slice(1));
    return interactionResponse(result, options, true);
  });

  app.get('/:type{[A-Z][A-Za-z]+}/:id', async (c) => {
    const id = assertNotOperation(c.req.param('id'));
    const options = responseOptions(c);
    return interactionResponse(await interactions.read(context(c), c.req.param('type'), id), options, false);
  });

  app.put('/:type{[A-Z][A-Za-z]+}/:id', async (c) => {
    const id = assertNotOperation(c.req.param('id'));
    const options = responseOptions(c);
    const result = await interactions.update(writeContext(c), c.req.param('type'), id, await readJsonBody(c), { ifMatch: c.req.header('if-match') });
    return interactionResponse(result, options, true);
  });

  app.patch('/:type{[A-Z][A-Za-z]+}/:id', async (c) => {
    const id = assertNotOperation(c.req.param('id'));
    const options = responseOptions(c);
    const body = await readJsonBody(c, [JSON_PATCH]);
    const result = await interactions.patch(context(c), c.req.param('type'), id, body, { ifMatch: c.req.header('if-match') });
    return interactionResponse(result, options, true);
  });

  app.delete('/:type{[A-Z][A-Za-z]+}/:id', async (c) => {
    const id = assertNotOperation(c.req.param('id'));
    const options = responseOptions(c);
    return interactionResponse(await interactions.remove(context(c), c.req.param('type'), id, { ifMatch: c.req.header('if-match') }), options, true);
  });

  app.get('/:type{[A-Z][A-Za-z]+}/:id/_history', async (c) =>
    jsonResponse(c, await history(context(c), { resourceType: c.req.param('type'), id: c.req.param('id'), params: queryParams(c), url: publicUrl(c) })),
  );

  app.get('/:type{[A-Z][A-Za-z]+}/:id/_history/:vid', async (c) => {
    const options = responseOptions(c);
    const result = await interactions.vread(context(c), c.req.param('type'), c.req.param('id'), c.req.param('vid'));
    return interactionResponse(result, options, false);
  });

  app.all('*', (c) => {
    throw unmatched(c.req.method, new URL(c.req.url).pathname.replace(/^.*?\/fhir/, ''));
  });
  return app;
}

/** Which methods each URL shape accepts, for 405 + Allow on the others (http.html). */
const SHAPES: [RegExp, string[]][] = [
  [/^\/?$/, ['POST']],
  [/^\/metadata$/, ['GET']],
  [/^\/_history$/, ['GET']],
  [/^\/[A-Z][A-Za-z]+$/, ['GET', 'POST', 'PUT', 'DELETE']],
  [/^\/[A-Z][A-Za-z]+\/_search$/, ['POST']],
  [/^\/[A-Z][A-Za-z]+\/_history$/, ['GET']],
  [/^\/[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/, ['GET', 'PUT', 'PATCH', 'DELETE']],
  [/^\/[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}\/_history$/, ['GET']],
  [/^\/[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}\/_history\/[^/]+$/, ['GET']],
];

function unmatched(method: string, path: string): FhirError {
  if (/\/\$[^/]*$/.test(path)) return notFound(`Unknown operation ${path.slice(path.lastIndexOf('$'), path.lastIndexOf('$') + 64)}`);
  const shape = SHAPES.find(([pattern]) => pattern.test(path));
  if (shape) return methodNotAllowed(`${method} is not allowed here; allowed: ${shape[1].join(', ')}`, shape[1]);
  return notFound(`No FHIR endpoint at this path (${method})`);
}

function assertNotOperation(id: string): string {
  if (id.startsWith('$')) throw notFound(`Unknown operation ${id.slice(0, 64)}`);
  return id;
}

function queryParams(c: Context): URLSearchParams {
  return new URL(c.req.url).searchParams;
}

/** Whether the Accept header names one of the media types (parameters such as q ignored). */
function acceptsOneOf(accept: string | undefined, mediaTypes: readonly string[] | undefined): boolean {
  if (!accept || !mediaTypes?.length) return false;
  return accept.split(',').some((range) => mediaTypes.includes(range.split(';')[0].trim().toLowerCase()));
}

function strictHandling(c: Context): boolean {
  return preferredHandling(c.req.header('prefer')) === 'strict';
}

function jsonResponse(c: Context, body: object): Response {
  const options = responseOptions(c);
  return resourceResponse(200, { json: serialize(body, options.pretty) }, { ...options, summary: undefined, elements: undefined, pretty: false });
}
