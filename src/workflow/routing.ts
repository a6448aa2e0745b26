import { createHash } from 'node:crypto';
import type { RequestType } from './task-contract.ts';

/**
 * Routing rules (control plane): which partner endpoint a request goes to, from the prior
 * coverage's payer identifiers, line of business, region and request type. A rule set is data
 * with a version; the first rule whose every condition holds wins. Pure: the store and the
 * admin API live in routing-store.ts.
 */
export interface RoutingRule {
  id: string;
  /** Conditions; an absent one holds for every request. Values within one condition are alternatives. */
  when: {
    /** `system|value` of the prior payer (Coverage.payor). */
    payer?: string[];
    lineOfBusiness?: string[];
    /** The member's state or region code. */
    region?: string[];
    requestType?: RequestType[];
  };
  /** `Endpoint/<id>` in Baton's partner directory. */
  endpoint: string;
}

export interface RuleSet {
  rules: RoutingRule[];
}

export interface RoutingFacts {
  payer: string[];
  lineOfBusiness: string[];
  region: string[];
  requestType: RequestType | undefined;
}

export class RuleSetError extends Error {
  override name = 'RuleSetError';
}

/** The first rule that applies, or undefined (the request cannot be routed). */
export function chooseRoute(ruleSet: RuleSet, facts: RoutingFacts): RoutingRule | undefined {
  const holds = (wanted: readonly string[] | undefined, have: readonly string[]) => wanted === undefined || wanted.some((w) => have.includes(w));
  return ruleSet.rules.find(
    (rule) =>
      holds(rule.when.payer, facts.payer) &&
      holds(rule.when.lineOfBusiness, facts.lineOfBusiness) &&
      holds(rule.when.region, facts.region) &&
      holds(rule.when.requestType, facts.requestType ? [facts.requestType] : []),
  );
}

/**
 * Whether a request falls in a canary's share: a stable hash of the Task id, so a request keeps
 * its version across retries and processes.
 */
export function inCanary(taskId: string, percent: number): boolean {
  const bucket = createHash('sha256').update(taskId).digest().readUInt32BE(0) % 100;
  return bucket < percent;
}

/** A rule set from JSON (a config file or the admin API), or a RuleSetError saying what is wrong. */
export function parseRuleSet(value: unknown): RuleSet {
  if (typeof value !== 'object' || value === null || !Array.isArray((value as RuleSet).rules)) throw new RuleSetError('A rule set is {"rules": [...]}');
  const ids = new Set<string>();
  const rules = (value as { rules: unknown[] }).rules.map((rule, index) => {
    const where = `rules[${index}]`;
    if (typeof rule !== 'object' || rule === null) throw new RuleSetError(`${where} must be an object`);
    const { id, when = {}, endpoint } = rule as Record<string, unknown>;
    if (typeof id !== 'string' || id === '') throw new RuleSetError(`${where}.id must be a non-empty string`);
    if (ids.has(id)) throw new RuleSetError(`${where}.id "${id}" is used twice`);
    ids.add(id);
    if (typeof endpoint !== 'string' || !/^Endpoint\/[A-Za-z0-9\-.]{1,64}$/.test(endpoint)) throw new RuleSetError(`${where}.endpoint must be Endpoint/<id>`);
    if (typeof when !== 'object' || when === null) throw new RuleSetError(`${where}.when must be an object`);
    const conditions: RoutingRule['when'] = {};
    for (const [name, values] of Object.entries(when)) {
      if (!['payer', 'lineOfBusiness', 'region', 'requestType'].includes(name)) throw new RuleSetError(`${where}.when.${name} is not a routing condition (payer, lineOfBusiness, region, requestType)`);
      if (!Array.isArray(values) || values.length === 0 || !values.every((v) => typeof v === 'string' && v !== '')) throw new RuleSetError(`${where}.when.${name} must be a non-empty list of strings`);
      if (name === 'requestType' && !values.every((v) => v === 'single-member' || v === 'bulk')) throw new RuleSetError(`${where}.when.requestType values are "single-member" or "bulk"`);
      if (name === 'payer' && !values.every((v) => /^[^|]+\|[^|]+$/.test(v as string))) throw new RuleSetError(`${where}.when.payer values are system|value`);
      (conditions as Record<string, string[]>)[name] = values as string[];
    }
    return { id, when: conditions, endpoint };
  });
  return { rules };
}
