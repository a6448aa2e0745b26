import { readFileSync } from 'node:fs';

/**
 * Which data is legally sensitive, as security labels: what a consent under the HRex `#regular`
 * policy ("all information except that considered sensitive by U.S. state or federal regulation")
 * does not release. Versioned data (config/consent/sensitive-data.json), so that the payer's
 * privacy office, not the code, decides what is sensitive. An empty list is a valid rule: it
 * says sensitive data cannot be told apart, and then `#regular` consents are refused.
 */
export interface SensitiveDataRule {
  version: number;
  description: string;
  /** `system|code` of the meta.security codings that mark a resource as sensitive. */
  labels: readonly string[];
}

export class SensitiveDataRuleError extends Error {
  override name = 'SensitiveDataRuleError';
}

export const DEFAULT_SENSITIVE_DATA_PATH = new URL('../../../config/consent/sensitive-data.json', import.meta.url);

/** Reads and checks the rule (by default the one shipped in config/consent/); throws SensitiveDataRuleError naming every problem. */
export function loadSensitiveDataRule(path: string | URL = DEFAULT_SENSITIVE_DATA_PATH): SensitiveDataRule {
  const source = path instanceof URL ? path.pathname : path;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new SensitiveDataRuleError(`sensitive data rule ${source}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SensitiveDataRuleError(`sensitive data rule ${source}: is not JSON (${(error as Error).message})`);
  }
  return parseSensitiveDataRule(value, source);
}

/** A label is a coding: an absolute system URI, a bar, a code; no spaces, since codes and URIs have none that matter here. */
const LABEL = /^[A-Za-z][A-Za-z0-9+.-]*:[^\s|]+\|[^\s|]+$/;
const KEYS = ['version', 'description', 'labels'];

export function parseSensitiveDataRule(value: unknown, source = 'sensitive data rule'): SensitiveDataRule {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SensitiveDataRuleError(`${source}: must be a JSON object`);
  const rule = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const key of Object.keys(rule)) if (!KEYS.includes(key)) problems.push(`"${key}" is not a known setting`);
  if (!Number.isInteger(rule.version) || (rule.version as number) < 1) problems.push('"version" must be a positive integer');
  if (typeof rule.description !== 'string' || rule.description.trim() === '') problems.push('"description" must be a non-empty string');
  const labels: string[] = [];
  if (!Array.isArray(rule.labels)) problems.push('"labels" must be an array of "system|code" strings');
  else {
    rule.labels.forEach((label: unknown, i) => {
      if (typeof label !== 'string' || !LABEL.test(label)) problems.push(`labels[${i}] must be "system|code" with an absolute system URI, got ${JSON.stringify(label)}`);
      else if (labels.includes(label)) problems.push(`labels[${i}] repeats ${label}`);
      else labels.push(label);
    });
  }
  if (problems.length > 0) throw new SensitiveDataRuleError(`${source}: ${problems.join('; ')}`);
  return { version: rule.version as number, description: rule.description as string, labels };
}
