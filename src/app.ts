import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { type AuditedEnv, adminOperation, auditFhirRequests, auditRegistrations, auditTokenRequests } from './audit/middleware.ts';
import { auditEventStore } from './audit/event-store.ts';
import { AuditWriter } from './audit/writer.ts';
import { AccessTokenVerifier } from './auth/access-token.ts';
import { type Authenticate, bearerAuthenticator } from './auth/authenticate.ts';
import { verifiedCertificateThumbprint } from './auth/mtls.ts';
import { authRoutes } from './auth/routes.ts';
import { SigningKeyStore } from './auth/signing-keys.ts';
import { restSecurity } from './auth/smart-configuration.ts';
import { type Config, loadConfig } from './config.ts';
import { type Database, sqlState } from './db/connection.ts';
import { noAudit } from './fhir/audit-sink.ts';
import { fhirErrorFromDatabase } from './fhir/database-errors.ts';
import { FhirError, outcome } from './fhir/errors.ts';
import { outcomeResponse } from './fhir/http/respond.ts';
import { fhirRoutes } from './fhir/http/routes.ts';
import { operationRoutes } from './operations/routes.ts';
import { subscriptionRoutes } from './subscriptions/routes.ts';
import { OutboundClientKeys, outboundClientKeyRoutes } from './workflow/partner/client-keys.ts';
import type { ResourceValidator } from './fhir/validation.ts';
import type { Logger } from './logger.ts';
import { matchingAdminRoutes } from './ops/admin-matching.ts';
import { reviewRoutes } from './operations/member-match/review-api.ts';
import type { SensitiveDataRule } from './operations/member-match/sensitive-data.ts';
import { healthRoutes } from './ops/health.ts';
import { workflowAdminRoutes } from './ops/admin-workflow.ts';
import { workflowWriteRules } from './workflow/intake.ts';
import { type Metrics, createMetrics, metricsMiddleware, routeLabel } from './ops/metrics.ts';

export interface AppDeps {
  config: Pick<Config, 'baseUrl' | 'maxBodyBytes'> & Partial<Pick<Config, 'adminToken' | 'adminScopes' | 'tls' | 'udap' | 'audit' | 'payer' | 'memberMatch' | 'export' | 'idempotency' | 'subscriptions'>>;
  db: Database;
  logger: Logger;
  validator: ResourceValidator;
  metrics?: Metrics;
  /** Replaces bearer-token verification; only bench:auth uses it, to measure what verification costs. */
  authenticate?: Authenticate;
  /** The sensitive data rule, loaded (and checked) at start; by default the one config names. */
  sensitiveData?: SensitiveDataRule;
  /** false serves every request unaudited; only bench:audit uses it, to measure what auditing costs. */
  auditing?: false;
}

/** What an app built without them (tests, benchmarks) gets: the defaults of an empty environment. */
const DEFAULTS = loadConfig({});

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Middleware order: request id → metrics → access log → routes; one error handler renders every failure. */
export function createApp(deps: AppDeps): Hono<AuditedEnv> {
  const metrics = deps.metrics ?? createMetrics();
  // strict: false — clients such as fhir-kit-client post transactions to `[base]/` with a trailing slash.
  const app = new Hono<AuditedEnv>({ strict: false });

  app.use('*', async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', requestId);
    const start = performance.now();
    await next();
    c.res.headers.set('X-Request-Id', requestId);
    // Route pattern, not URL: query strings can carry demographics.
    deps.logger.info(
      { requestId, method: c.req.method, route: routeLabel(c.req.routePath, c.res.status), status: c.res.status, ms: Math.round((performance.now() - start) * 10) / 10 },
      'request',
    );
  });
  app.use('*', metricsMiddleware(metrics));
  // Outside the FHIR routes, so that a request they refuse (401 included) is audited too.
  const auditDeps = { writer: new AuditWriter(deps.db), baseUrl: deps.config.baseUrl };
  if (deps.auditing === false) {
    app.use('/fhir/*', async (c, next) => {
      c.set('audit', noAudit);
      await next();
    });
  } else {
    // '/fhir/*' matches the base itself too (batch and transaction Bundles).
    app.use('/fhir/*', auditFhirRequests(auditDeps));
    app.use('/auth/token', auditTokenRequests(auditDeps));
    app.use('/admin/*', auditRegistrations(auditDeps, adminOperation, true));
    app.use('/auth/udap/*', auditRegistrations(auditDeps, 'urn:baton:udap:register', false));
  }

  app.route('/', healthRoutes(deps.db, metrics));
  // Before /fhir: the SMART discovery document lives under the FHIR base.
  const { baseUrl, adminToken } = deps.config;
  const signingKeys = new SigningKeyStore(deps.db);
  const requireClientCertificate = deps.config.tls?.clientCa !== undefined;
  const authenticate = deps.authenticate ?? bearerAuthenticator({
    verifier: new AccessTokenVerifier(signingKeys, baseUrl),
    baseUrl,
    adminToken,
    adminScopes: deps.config.adminScopes ?? ['system/*.rs'],
    requireClientCertificate,
  });
  app.route('/', authRoutes({ db: deps.db, baseUrl, adminToken, signingKeys, requireClientCertificate, udap: deps.config.udap }));
  // Baton's keys as a client of partner payers, for them to register Baton's client with a jwks_uri.
  app.route('/', outboundClientKeyRoutes(new OutboundClientKeys(deps.db)));
  // After authRoutes: its '/admin/*' admin-token gate runs before these handlers only when registered first.
  app.route('/', matchingAdminRoutes({ db: deps.db, baseUrl }));
  app.route('/', reviewRoutes({ db: deps.db, baseUrl, validator: deps.validator }));
  app.route('/', workflowAdminRoutes({ db: deps.db, baseUrl, validator: deps.validator, metrics }));
  const authenticateFhir = (authorization: string | undefined, connection: unknown) => authenticate(authorization, verifiedCertificateThumbprint(connection));
  app.route('/fhir', fhirRoutes({ db: deps.db, baseUrl, validator: deps.validator, maxBodyBytes: deps.config.maxBodyBytes, security: restSecurity(baseUrl), authenticate: authenticateFhir, writeRules: workflowWriteRules, separateStores: { AuditEvent: auditEventStore(baseUrl) }, idempotency: { db: deps.db, logger: deps.logger, ...(deps.config.idempotency ?? DEFAULTS.idempotency) }, operations: [...operationRoutes({ db: deps.db, validator: deps.validator, audit: deps.config.audit, metrics, payer: deps.config.payer ?? DEFAULTS.payer, memberMatch: deps.config.memberMatch ?? DEFAULTS.memberMatch, baseUrl, export: deps.config.export ?? DEFAULTS.export, logger: deps.logger, ...(deps.sensitiveData ? { sensitiveData: deps.sensitiveData } : {}) }), ...subscriptionRoutes(deps.config.subscriptions ?? DEFAULTS.subscriptions)] }));

  app.notFound(() => outcomeResponse(404, outcome('error', 'not-found', 'No endpoint at this path; the FHIR API is under /fhir')));
  app.onError((error, c) => {
    const requestId = c.get('requestId');
    if (error instanceof FhirError) return outcomeResponse(error.status, error.outcome, false, error.headers);
    const fromDatabase = fhirErrorFromDatabase(error);
    if (fromDatabase) {
      if (fromDatabase.status === 503) deps.logger.warn({ requestId, err: { name: error.name, code: sqlState(error) } }, 'database unavailable');
      return outcomeResponse(fromDatabase.status, fromDatabase.outcome, false, fromDatabase.headers);
    }
    if (error instanceof HTTPException) return outcomeResponse(error.status, outcome('error', 'invalid', error.message || 'Bad request'));
    // Unexpected. Messages (database errors especially) can quote values, so only the class,
    // the driver's code and the stack frames are logged; the client gets no internals.
    const frames = error.stack?.split('\n').slice(1).join('\n');
    deps.logger.error({ requestId, err: { name: error.name, code: sqlState(error), frames } }, 'unhandled error');
    return outcomeResponse(500, outcome('fatal', 'exception', 'Internal server error; the request id identifies it in the logs'));
  });
  return app;
}
