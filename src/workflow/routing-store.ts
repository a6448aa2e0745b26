import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import { inCanary, parseRuleSet, type RuleSet, RuleSetError } from './routing.ts';

/**
 * Routing rules as control-plane data: versions are rows of routing_rule_sets, never changed
 * once written; the latest row of routing_rollouts says which version is in force (stable) and,
 * during a canary, which newer version (candidate) takes what share of requests.
 * config/routing/rules-v*.json seed the versions; operators add versions through the admin API.
 */
export const ROUTING_DIRECTORY = fileURLToPath(new URL('../../config/routing/', import.meta.url));
const RULES_FILE = /^rules-v(\d+)\.json$/;

export interface Rollout {
  stable: number;
  candidate: number | null;
  percent: number;
  created: string;
  createdBy: string;
}

export interface StoredRuleSet extends RuleSet {
  version: number;
  created: string;
  createdBy: string;
  reason: string | null;
}

/** Stores the rule files' versions not stored yet and, on a database without a rollout, puts the highest in force. */
export async function loadRoutingFiles(db: Database, directory = ROUTING_DIRECTORY): Promise<number[]> {
  const files = readdirSync(directory).filter((f) => RULES_FILE.test(f));
  const stored: number[] = [];
  await db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('baton.routing'))`);
    for (const file of files) {
      const version = Number(RULES_FILE.exec(file)![1]);
      let rules: RuleSet;
      try {
        rules = parseRuleSet(JSON.parse(readFileSync(`${directory}/${file}`, 'utf8')));
      } catch (error) {
        throw new RuleSetError(`config/routing/${file}: ${(error as Error).message}`);
      }
      const inserted = await tx.execute(sql`INSERT INTO routing_rule_sets (version, rules, created_by, reason) VALUES (${version}, ${JSON.stringify(rules)}::jsonb, ${`file:${file}`}, 'configuration file')
        ON CONFLICT (version) DO NOTHING RETURNING version`);
      if (inserted.length) stored.push(version);
    }
    const [{ n }] = await tx.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM routing_rollouts`);
    if (n === 0) await tx.execute(sql`INSERT INTO routing_rollouts (stable, created_by) SELECT max(version), 'configuration' FROM routing_rule_sets HAVING max(version) IS NOT NULL`);
  });
  return stored;
}

export async function currentRollout(q: Queryable): Promise<Rollout | undefined> {
  const rows = await q.execute<Rollout>(sql`SELECT stable, candidate, percent, created::text AS created, created_by AS "createdBy" FROM routing_rollouts ORDER BY id DESC LIMIT 1`);
  return rows[0];
}

export async function ruleSetVersion(q: Queryable, version: number): Promise<StoredRuleSet | undefined> {
  const rows = await q.execute<StoredRuleSet & { rules: RuleSet }>(sql`SELECT version, rules, created::text AS created, created_by AS "createdBy", reason FROM routing_rule_sets WHERE version = ${version}`);
  return rows[0] ? { ...rows[0], rules: rows[0].rules.rules } : undefined;
}

export async function listRuleSets(q: Queryable): Promise<Omit<StoredRuleSet, 'rules'>[]> {
  return q.execute(sql`SELECT version, created::text AS created, created_by AS "createdBy", reason FROM routing_rule_sets ORDER BY version`);
}

/** The rule set a request is routed by: the candidate's for the canary's share of requests, the stable one's for the rest. */
export async function ruleSetFor(q: Queryable, taskId: string): Promise<StoredRuleSet | undefined> {
  const rollout = await currentRollout(q);
  if (!rollout) return undefined;
  const version = rollout.candidate !== null && inCanary(taskId, rollout.percent) ? rollout.candidate : rollout.stable;
  return ruleSetVersion(q, version);
}

/**
 * Stores a new version: in force at once (percent 100), or as a canary for `percent` of requests
 * beside the stable version. A canary still running is replaced by the new one.
 */
export async function publishRuleSet(db: Database, value: unknown, by: string, reason: string | undefined, percent: number): Promise<{ version: number; rollout: Rollout }> {
  const ruleSet = parseRuleSet(value);
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('baton.routing'))`);
    const [{ version }] = await tx.execute<{ version: number }>(sql`SELECT COALESCE(max(version), 0) + 1 AS version FROM routing_rule_sets`);
    await tx.execute(sql`INSERT INTO routing_rule_sets (version, rules, created_by, reason) VALUES (${version}, ${JSON.stringify(ruleSet)}::jsonb, ${by}, ${reason ?? null})`);
    const stable = (await currentRollout(tx))?.stable;
    if (percent >= 100 || stable === undefined) await tx.execute(sql`INSERT INTO routing_rollouts (stable, created_by) VALUES (${version}, ${by})`);
    else await tx.execute(sql`INSERT INTO routing_rollouts (stable, candidate, percent, created_by) VALUES (${stable}, ${version}, ${percent}, ${by})`);
    return { version: Number(version), rollout: (await currentRollout(tx))! };
  });
}

/** Changes the canary's share; 100 promotes the candidate, 0 rolls it back. Undefined when no canary runs. */
export async function setCanaryShare(db: Database, percent: number, by: string): Promise<Rollout | undefined> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('baton.routing'))`);
    const rollout = await currentRollout(tx);
    if (!rollout || rollout.candidate === null) return undefined;
    if (percent >= 100) await tx.execute(sql`INSERT INTO routing_rollouts (stable, created_by) VALUES (${rollout.candidate}, ${by})`);
    else if (percent <= 0) await tx.execute(sql`INSERT INTO routing_rollouts (stable, created_by) VALUES (${rollout.stable}, ${by})`);
    else await tx.execute(sql`INSERT INTO routing_rollouts (stable, candidate, percent, created_by) VALUES (${rollout.stable}, ${rollout.candidate}, ${percent}, ${by})`);
    return currentRollout(tx);
  });
}
