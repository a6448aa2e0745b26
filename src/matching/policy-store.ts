import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import canonicalize from 'canonicalize';
import { sql } from 'drizzle-orm';
import type { Database, Queryable } from '../db/connection.ts';
import { type MatchingPolicy, parsePolicy, PolicyError } from './policy.ts';

/**
 * The matching policy as control-plane data (DESIGN.md, rules of the house): versions are
 * rows of matching_policies, never changed once written; the highest version of a policy id is
 * the one in force. config/matching/policy-v*.json seed the table; operators add versions
 * through the admin API.
 */

/** The policy $member-match decides under. */
export const MEMBER_MATCH_POLICY_ID = 'baton-member-match';

export const POLICY_DIRECTORY = fileURLToPath(new URL('../../config/matching/', import.meta.url));
const POLICY_FILE = /^policy-v(\d+)\.json$/;

/** What loadPolicyFiles did with one file: stored it, found it stored already, or found another body stored under its version (which is kept). */
export interface PolicyFileResult {
  file: string;
  id: string;
  version: number;
  result: 'inserted' | 'unchanged' | 'kept-stored';
}

/** A policy file that cannot be loaded: unreadable, invalid, or named for another version. Stops the start. */
export class PolicyFileError extends Error {
  override name = 'PolicyFileError';
}

/** A new version that does not follow the latest stored one, or names another policy. */
export class PolicyVersionConflict extends Error {
  override name = 'PolicyVersionConflict';
  constructor(
    message: string,
    readonly latest: number,
  ) {
    super(message);
  }
}

export interface StoredPolicyVersion {
  id: string;
  version: number;
  created: string;
  createdBy: string;
  reason?: string;
}

export interface LoadPolicyOptions {
  /** Where the policy-v*.json files are; config/matching by default. */
  directory?: string;
  /** Called in the inserting transaction for each version stored (the audit trail records it there). */
  onInsert?: (tx: Queryable, policy: { id: string; version: number }) => Promise<void>;
}

/**
 * Stores each config/matching/policy-v*.json version the table does not hold yet (created_by
 * 'config'). A stored version is never overwritten: when its body differs from the file, the
 * stored one stays (an operator's or an earlier release's decisions were made under it).
 */
export async function loadPolicyFiles(db: Database, options: LoadPolicyOptions = {}): Promise<PolicyFileResult[]> {
  const directory = options.directory ?? POLICY_DIRECTORY;
  const files = readdirSync(directory)
    .map((file) => ({ file, version: Number(POLICY_FILE.exec(file)?.[1]) }))
    .filter(({ version }) => Number.isInteger(version))
    .sort((a, b) => a.version - b.version);
  const results: PolicyFileResult[] = [];
  for (const { file, version } of files) {
    const policy = readPolicyFile(directory, file);
    if (policy.version !== version) throw new PolicyFileError(`${file}: holds version ${policy.version}; the file name says ${version}`);
    const result = await db.transaction(async (tx): Promise<PolicyFileResult['result']> => {
      const inserted = await tx.execute<{ version: number }>(sql`INSERT INTO matching_policies (id, version, body, created_by, reason)
        VALUES (${policy.id}, ${policy.version}, ${JSON.stringify(policy)}, 'config', ${`config/matching/${file}`})
        ON CONFLICT (id, version) DO NOTHING RETURNING version`);
      if (inserted.length > 0) {
        await options.onInsert?.(tx, { id: policy.id, version: policy.version });
        return 'inserted';
      }
      const [stored] = await tx.execute<{ body: string }>(sql`SELECT body FROM matching_policies WHERE id = ${policy.id} AND version = ${policy.version}`);
      // Both sides parsed: settings a later release defaults are filled in on each alike.
      return canonicalize(parsePolicy(JSON.parse(stored.body))) === canonicalize(policy) ? 'unchanged' : 'kept-stored';
    });
    results.push({ file, id: policy.id, version: policy.version, result });
  }
  return results;
}

function readPolicyFile(directory: string, file: string): MatchingPolicy {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(`${directory}/${file}`, 'utf8'));
  } catch (error) {
    throw new PolicyFileError(`${file}: ${(error as Error).message}`);
  }
  try {
    return parsePolicy(value);
  } catch (error) {
    if (error instanceof PolicyError) throw new PolicyFileError(`${file}: ${error.problems.join('; ')}`);
    throw error;
  }
}

/**
 * Parsed bodies by id, version and creation instant: a stored version never changes, so any
 * process may keep it, and the instant tells apart two databases (or a reset one) that hold the
 * same version number with different bodies. Losing the cache costs one read.
 */
const parsedVersions = new Map<string, MatchingPolicy>();
const MAX_CACHED_VERSIONS = 64;

/** No version of the policy is stored: loadPolicyFiles has not run on this database. */
export class NoPolicyInForce extends Error {
  override name = 'NoPolicyInForce';
}

/**
 * The version in force, for every decision: one primary-key lookup of the latest version per
 * call, its body read and parsed once per process (so a version saved by another process is in
 * force here from its next call).
 */
export async function policyInForce(q: Queryable, id: string = MEMBER_MATCH_POLICY_ID): Promise<MatchingPolicy> {
  // Served by the (id, version) primary key: a backward index scan reading one entry.
  const [latest] = await q.execute<{ version: number; created: string | Date }>(
    sql`SELECT version, created FROM matching_policies WHERE id = ${id} ORDER BY version DESC LIMIT 1`,
  );
  if (!latest) throw new NoPolicyInForce(`no version of matching policy "${id}" is stored; loadPolicyFiles stores config/matching/policy-v*.json at start`);
  const key = `${id}@${latest.version}@${new Date(latest.created).getTime()}`;
  const cached = parsedVersions.get(key);
  if (cached) return cached;
  const policy = (await policyVersion(q, id, Number(latest.version))) as MatchingPolicy;
  if (parsedVersions.size >= MAX_CACHED_VERSIONS) parsedVersions.delete(parsedVersions.keys().next().value as string);
  parsedVersions.set(key, policy);
  return policy;
}

/** One stored version, parsed; undefined when there is none. */
export async function policyVersion(q: Queryable, id: string, version: number): Promise<MatchingPolicy | undefined> {
  const [row] = await q.execute<{ body: string }>(sql`SELECT body FROM matching_policies WHERE id = ${id} AND version = ${version}`);
  return row && parsePolicy(JSON.parse(row.body));
}

/** The latest stored version number of a policy; 0 when none is stored. */
export async function latestVersion(q: Queryable, id: string): Promise<number> {
  const [row] = await q.execute<{ version: number }>(sql`SELECT version FROM matching_policies WHERE id = ${id} ORDER BY version DESC LIMIT 1`);
  return row ? Number(row.version) : 0;
}

/**
 * Stores a new version: valid (PolicyError listing every problem), of policy `id`, and exactly
 * one above the latest stored (PolicyVersionConflict otherwise). The insert checks the latest
 * version again in the same statement, so of two operators saving the same next version one
 * wins and the other is told, whatever the timing.
 */
export async function savePolicy(q: Queryable, body: unknown, by: string, reason?: string, id: string = MEMBER_MATCH_POLICY_ID): Promise<StoredPolicyVersion> {
  const policy = parsePolicy(body);
  const latest = await latestVersion(q, id);
  if (policy.id !== id) throw new PolicyVersionConflict(`the policy's id is "${policy.id}"; this endpoint changes "${id}"`, latest);
  const refuse = (stored: number) => new PolicyVersionConflict(`version ${policy.version} does not follow the latest stored version ${stored}: send version ${stored + 1}`, stored);
  // Checked before the insert too: a version beyond the column's range would fail there as a server error.
  if (policy.version !== latest + 1) throw refuse(latest);
  const rows = await q.execute<PolicyRow>(sql`INSERT INTO matching_policies (id, version, body, created_by, reason)
    SELECT ${id}, ${policy.version}, ${JSON.stringify(policy)}, ${by}, ${reason ?? null}
    WHERE (SELECT coalesce(max(version), 0) FROM matching_policies WHERE id = ${id}) = ${latest}
    ON CONFLICT (id, version) DO NOTHING
    RETURNING ${POLICY_COLUMNS}`);
  if (rows.length === 0) throw refuse(await latestVersion(q, id));
  return toStoredVersion(rows[0]);
}

/** Every stored version of a policy, newest first. */
export async function listPolicies(q: Queryable, id: string = MEMBER_MATCH_POLICY_ID): Promise<StoredPolicyVersion[]> {
  const rows = await q.execute<PolicyRow>(sql`SELECT ${POLICY_COLUMNS} FROM matching_policies WHERE id = ${id} ORDER BY version DESC`);
  return rows.map(toStoredVersion);
}

interface PolicyRow {
  id: string;
  version: number;
  created: string | Date;
  created_by: string;
  reason: string | null;
}

const POLICY_COLUMNS = sql`id, version, created, created_by, reason`;

function toStoredVersion(row: PolicyRow): StoredPolicyVersion {
  return {
    id: row.id,
    version: Number(row.version),
    created: new Date(row.created).toISOString(),
    createdBy: row.created_by,
    ...(row.reason !== null ? { reason: row.reason } : {}),
  };
}
