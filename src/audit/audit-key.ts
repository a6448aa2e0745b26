import { type KeyObject, createPublicKey } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { type CryptoKey, type JWK, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { Database, Queryable } from '../db/connection.ts';

/** Checkpoints are ES384 JWS (issue 4: signed with Baton's audit key). */
export const AUDIT_SIGNING_ALGORITHM = 'ES384';

export interface AuditSigningKey {
  kid: string;
  privateKey: CryptoKey | KeyObject;
  /** 'configured': BATON_AUDIT_KEY; 'database': generated once and kept in audit_signing_keys. */
  source: 'configured' | 'database';
}

/** The public keys whose checkpoint signatures verification accepts, by kid. */
export type AuditTrustedKeys = Map<string, CryptoKey | KeyObject>;

/**
 * The key that signs new checkpoints: the configured one, else the newest key in the database,
 * created when there is none. Creation runs under an advisory lock so processes starting
 * together share one key.
 */
export async function loadAuditSigningKey(db: Database, configured: KeyObject | undefined): Promise<AuditSigningKey> {
  if (configured) return { kid: await kidOf(configured), privateKey: configured, source: 'configured' };
  let rows = await selectKeys(db);
  if (rows.length === 0) {
    rows = await db.transaction(async (tx) => {
      await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('baton.audit_signing_keys'))`);
      if ((await selectKeys(tx)).length === 0) await insertNewKey(tx);
      return selectKeys(tx);
    });
  }
  const newest = rows[0];
  return { kid: newest.kid, privateKey: (await importJWK(json(newest.private_jwk), newest.alg)) as CryptoKey, source: 'database' };
}

/**
 * Whose signatures a checkpoint may carry. With BATON_AUDIT_KEY set, only that key's: a key in
 * the database could have been put there by whoever rewrote the trail. Without it, the keys in
 * the database, which prove integrity only against someone who cannot write the database.
 */
export async function loadAuditTrustedKeys(db: Queryable, configured: KeyObject | undefined): Promise<AuditTrustedKeys> {
  if (configured) return new Map([[await kidOf(configured), createPublicKey(configured)]]);
  const keys: AuditTrustedKeys = new Map();
  for (const row of await selectKeys(db)) keys.set(row.kid, (await importJWK(json(row.public_jwk), row.alg)) as CryptoKey);
  return keys;
}

async function kidOf(privateKey: KeyObject): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(createPublicKey(privateKey)));
}

interface KeyRow {
  kid: string;
  alg: string;
  private_jwk: JWK | string;
  public_jwk: JWK | string;
}

async function insertNewKey(q: Queryable): Promise<void> {
  const { privateKey, publicKey } = await generateKeyPair(AUDIT_SIGNING_ALGORITHM, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  await q.execute(sql`
    INSERT INTO audit_signing_keys (kid, alg, private_jwk, public_jwk)
    VALUES (${await calculateJwkThumbprint(publicJwk)}, ${AUDIT_SIGNING_ALGORITHM}, ${JSON.stringify(await exportJWK(privateKey))}::jsonb, ${JSON.stringify(publicJwk)}::jsonb)`);
}

async function selectKeys(q: Queryable): Promise<KeyRow[]> {
  return q.execute<KeyRow>(sql`SELECT kid, alg, private_jwk, public_jwk FROM audit_signing_keys ORDER BY created DESC, kid`);
}

/** postgres.js answers jsonb parsed, PGlite as text. */
function json(value: JWK | string): JWK {
  return typeof value === 'string' ? (JSON.parse(value) as JWK) : value;
}
