import { serve } from '@hono/node-server';
import { createApp } from './app.ts';
import { auditClientsFileChange, auditPolicyFileChange } from './audit/registration-events.ts';
import { startAuditArchiver } from './audit/archive.ts';
import { runInBackground } from './background.ts';
import { startAuditSealer } from './audit/sealer.ts';
import { startSealerThread } from './audit/sealer-thread.ts';
import { registrationHint } from './auth/client-onboarding.ts';
import { ClientsFileError, loadClientsFile } from './auth/clients-file.ts';
import { httpsServing } from './auth/mtls.ts';
import { ConfigError, loadConfig } from './config.ts';
import { connectDatabase } from './db/connection.ts';
import { migrateDatabase } from './db/migrate.ts';
import { systemAccess } from './fhir/access.ts';
import { noAudit } from './fhir/audit-sink.ts';
import type { FhirContext } from './fhir/interactions.ts';
import { ensureOwnOrganization } from './fhir/own-organization.ts';
import { createValidator, ProfilePackageError } from './fhir/profiles.ts';
import { createLogger } from './logger.ts';
import { catchUp } from './matching/index-store.ts';
import { queueStaleIndexEntries } from './matching/index-upgrade.ts';
import { loadPolicyFiles } from './matching/policy-store.ts';
import { loadSensitiveDataRule, SensitiveDataRuleError } from './operations/member-match/sensitive-data.ts';
import { seedDemoData } from './seed/demo.ts';
import { startExportWorker } from './export/worker.ts';
import { bulkMemberMatching } from './operations/routes.ts';
import { SigningKeyStore } from './auth/signing-keys.ts';
import { createMetrics } from './ops/metrics.ts';
import { startSubscriptionDelivery, subscriptionMetrics } from './subscriptions/delivery.ts';
import { ensureTopicResources } from './subscriptions/topic-resources.ts';
import { purgeExpiredIdempotencyKeys } from './fhir/http/idempotency.ts';
import { PartnerBreakers } from './workflow/partner/breakers.ts';
import { OutboundClientKeys } from './workflow/partner/client-keys.ts';
import { partnerClients } from './workflow/partners.ts';
import { RuleSetError } from './workflow/routing.ts';
import { loadRoutingFiles } from './workflow/routing-store.ts';
import { startWorkflowWorker } from './workflow/worker.ts';

/** Bad configuration (variables, profile packages, the clients file) ends the start with one line and exit code 2. */
function exitOnConfigurationError(error: unknown): never {
  if (error instanceof ConfigError || error instanceof ProfilePackageError || error instanceof ClientsFileError || error instanceof SensitiveDataRuleError || error instanceof RuleSetError) {
    console.error(`Configuration error: ${error.message}`);
    process.exit(2);
  }
  throw error;
}

const config = await Promise.resolve().then(() => loadConfig()).catch(exitOnConfigurationError);
const logger = createLogger(config.logLevel);
// Profiles load before the database so a bad package fails in a second, not after migrations.
const validator = await createValidator(config.profilePackages, logger).catch(exitOnConfigurationError);
const sensitiveData = await Promise.resolve().then(() => loadSensitiveDataRule(config.memberMatch.sensitiveDataRule)).catch(exitOnConfigurationError);
const db = await connectDatabase(config);
await migrateDatabase(db);
if (config.clientsFile) {
  const loaded = await loadClientsFile(db, config.clientsFile, auditClientsFileChange(config.baseUrl)).catch(exitOnConfigurationError);
  logger.info({ file: config.clientsFile, ...loaded }, 'clients file applied');
}
const ctx: FhirContext = { db, q: db, inTransaction: false, baseUrl: config.baseUrl, validator, access: systemAccess, audit: noAudit };
await ensureOwnOrganization(ctx, config.payer);
if (config.seed === 'demo') {
  const seeded = await seedDemoData(ctx);
  if (seeded) logger.info({ resources: seeded }, 'demo data loaded');
}

// The matching policy versions shipped in config/matching/ that the database does not hold yet.
for (const loaded of await loadPolicyFiles(db, { onInsert: auditPolicyFileChange(config.baseUrl) })) if (loaded.result !== 'unchanged') logger.info(loaded, 'matching policy file');
const stale = await queueStaleIndexEntries(db);
if (stale > 0) logger.info({ members: stale }, 'matching index: members queued for the current blocking keys');
// Keeps the $member-match blocking index up with Patient and Coverage writes (each match also catches up first).
const indexer = runInBackground(
  async () => {
    const indexed = await catchUp(db);
    if (indexed > 0) logger.debug({ indexed }, 'matching index caught up');
  },
  1000,
  { logger, what: 'matching index catch-up' },
);
// Chains, checkpoints and publishes audit events for FHIR search, in the background: on
// PostgreSQL on a thread of its own, off the event loop that serves requests.
const sealer = config.databaseUrl
  ? startSealerThread({ databaseUrl: config.databaseUrl, audit: config.audit, logLevel: config.logLevel }, logger)
  : startAuditSealer({ db, audit: config.audit }, logger);
// Archives audit segments past their retention, about once a day.
const archiver = startAuditArchiver({ db, audit: config.audit, retention: config.auditRetention }, logger);
// Plans Bulk Data exports: jobs kicked off anywhere, retried, or left by a process that crashed.
const metrics = createMetrics();
const exporter = config.export.worker
  ? await startExportWorker(
      {
        db,
        baseUrl: config.baseUrl,
        config: config.export,
        logger,
        matchMembers: bulkMemberMatching({ db, validator, audit: config.audit, metrics, payer: config.payer, memberMatch: config.memberMatch, sensitiveData, baseUrl: config.baseUrl, export: config.export, logger }),
      },
      2000,
    )
  : undefined;
// Deletes Idempotency-Key responses past their retention (they can hold PHI), a batch a minute.
const idempotencyPurger = runInBackground(
  async () => {
    const purged = await purgeExpiredIdempotencyKeys(db);
    if (purged > 0) logger.debug({ purged }, 'expired idempotency keys deleted');
  },
  60_000,
  { logger, what: 'idempotency key purge' },
);
// Delivers subscription notifications: handshakes, events from the outbox, heartbeats (issue 8).
await ensureTopicResources(ctx);
const notifier = config.subscriptions.worker
  ? startSubscriptionDelivery({ db, baseUrl: config.baseUrl, config: config.subscriptions, signingKeys: new SigningKeyStore(db), metrics: subscriptionMetrics(metrics.registry), logger })
  : undefined;
// Runs payer-to-payer requests (issue 7): the routing versions shipped in config/routing/, then the worker.
await loadRoutingFiles(db).catch(exitOnConfigurationError);
// The default client key exists before any partner reads GET /jwks/client to register Baton.
const outboundKeys = new OutboundClientKeys(db);
await outboundKeys.get('default');
const workflow = config.workflow.worker
  ? startWorkflowWorker(
      { db, baseUrl: config.baseUrl, validator, logger, metrics, config: config.workflow, partnerClient: partnerClients({ keys: outboundKeys, breakers: new PartnerBreakers(), logger }) },
      1000,
    )
  : undefined;
const app = createApp({ config, db, logger, validator, sensitiveData, metrics });
const transport = config.tls ? httpsServing(config.tls) : {};
const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host, ...transport }, (info) => {
  logger.info({ port: info.port, host: config.host, database: db.kind, tls: config.tls ? (config.tls.clientCa ? 'mutual' : 'server') : 'off' }, 'listening');
  logger.info({ base: config.baseUrl }, 'FHIR base URL');
  logger.info(registrationHint(config.adminToken !== undefined, new URL(config.baseUrl).origin));
});

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down');
  server.close();
  await Promise.all([sealer.stop(), archiver.stop(), indexer.stop(), exporter?.stop(), idempotencyPurger.stop(), notifier?.stop(), workflow?.stop()]);
  await db.close();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
