import { auditPolicyFileChange } from '../audit/registration-events.ts';
import type { Config, ExportConfig } from '../config.ts';
import type { Database } from '../db/connection.ts';
import { serverSecret } from '../db/secrets.ts';
import type { FhirContext } from '../fhir/interactions.ts';
import type { OperationRoute } from '../fhir/http/routes.ts';
import { loadPolicyFiles, NoPolicyInForce, policyInForce } from '../matching/policy-store.ts';
import type { MatchingPolicy } from '../matching/policy.ts';
import type { Metrics } from '../ops/metrics.ts';
import { ExportEngine } from '../export/engine.ts';
import type { MatchMembers } from '../export/worker.ts';
import type { ResourceValidator } from '../fhir/validation.ts';
import type { Logger } from '../logger.ts';
import { auditVerifyOperation } from './audit-verify.ts';
import { bulkMemberMatchJobs, bulkMemberMatchOperation } from './bulk-member-match.ts';
import { davinciDataExportRoutes } from './davinci-data-export.ts';
import { exportRoutes } from './export.ts';
import { patientEverythingRoutes } from './everything.ts';
import { type ConsentCheck, memberMatchOperation } from './member-match.ts';
import { attemptKeys, guardMatchAttempt } from './member-match/brute-force.ts';
import { evaluateConsent } from './member-match/consent.ts';
import { loadSensitiveDataRule, type SensitiveDataRule } from './member-match/sensitive-data.ts';

export interface OperationDeps {
  db: Database;
  audit: Config['audit'] | undefined;
  metrics: Metrics;
  payer: Config['payer'];
  memberMatch: Config['memberMatch'];
  sensitiveData?: SensitiveDataRule;
  /** The public FHIR base URL (status and file URLs of exports are absolute). */
  baseUrl: string;
  export: ExportConfig;
  logger?: Logger;
  /** Validates what $bulk-member-match jobs read back from their request. */
  validator: ResourceValidator;
}

/** Every FHIR operation Baton serves, mounted under /fhir by the REST routes. */
export function operationRoutes(deps: OperationDeps): OperationRoute[] {
  const memberMatch = memberMatchDeps(deps);
  // One export engine for every operation delivering NDJSON through async jobs ($export, …).
  const exports = new ExportEngine({ db: deps.db, baseUrl: deps.baseUrl, config: deps.export, logger: deps.logger, matchMembers: bulkMemberMatching(deps, memberMatch) });
  return [
    { method: 'GET', path: '/AuditEvent/$verify', handle: (ctx, { params }) => auditVerifyOperation(ctx, params, deps.audit?.key) },
    { method: 'POST', path: '/Patient/$member-match', handle: (ctx, { body }) => memberMatchOperation(ctx, body, memberMatch) },
    { method: 'POST', path: '/Group/$bulk-member-match', handle: (ctx, request) => bulkMemberMatchOperation(ctx, request, { memberMatch, engine: exports }) },
    ...patientEverythingRoutes,
    ...exportRoutes(exports),
    ...davinciDataExportRoutes(exports),
  ];
}

/** The matching of $bulk-member-match jobs, for the export workers of a process (the engine's here, server.ts's). */
export function bulkMemberMatching(deps: OperationDeps, memberMatch = memberMatchDeps(deps)): MatchMembers {
  return bulkMemberMatchJobs({ db: deps.db, baseUrl: deps.baseUrl, validator: deps.validator, memberMatch });
}

/** $member-match bound to its configuration: the consent rules, the brute-force guard and the policy in force. */
function memberMatchDeps(deps: OperationDeps) {
  const sensitiveData = deps.sensitiveData ?? loadSensitiveDataRule(deps.memberMatch.sensitiveDataRule);
  let guardKey: Promise<Buffer> | undefined;
  const consent: ConsentCheck = (input, ctx) => {
    const verdict = evaluateConsent(input.consent, {
      now: new Date(),
      required: deps.memberMatch.consentRequired,
      memberPatientReference: `Patient/${input.memberPatient.id}`,
      requester: ctx.access.caller?.organization ?? [],
      payer: deps.payer.identifiers,
      sensitiveData,
      resolve: (reference) => (input.consent?.contained ?? []).find((resource) => `#${resource.id}` === reference),
    });
    if (!verdict.ok) return verdict;
    if (verdict.policy === 'none') return { ok: true };
    return { ok: true, grant: { start: verdict.period.start, end: verdict.period.end, excludedSecurity: verdict.excludedSecurity } };
  };
  return {
    settings: deps.memberMatch,
    metrics: deps.metrics,
    consent,
    policyInForce: (ctx: FhirContext) => policyOrLoad(ctx.db, ctx.baseUrl),
    guard: async (ctx: FhirContext, clientId: string, query: Parameters<typeof attemptKeys>[0]) => {
      guardKey ??= serverSecret(deps.db, 'member-match-attempts');
      const keys = attemptKeys(query, await guardKey);
      await guardMatchAttempt(ctx.db, { clientId, keys }, { maxCards: deps.memberMatch.maxCards, windowSeconds: deps.memberMatch.windowSeconds }, deps.metrics);
    },
  };
}

/** The policy in force; a database no process has loaded the policy files into yet gets them now. */
async function policyOrLoad(db: Database, baseUrl: string): Promise<MatchingPolicy> {
  try {
    return await policyInForce(db);
  } catch (error) {
    if (!(error instanceof NoPolicyInForce)) throw error;
    await loadPolicyFiles(db, { onInsert: auditPolicyFileChange(baseUrl) });
    return policyInForce(db);
  }
}
