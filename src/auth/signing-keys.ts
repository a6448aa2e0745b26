import { sql } from 'drizzle-orm';
import { type CryptoKey, type JWK, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { Database, Queryable } from '../db/connection.ts';

/** The algorithm of Baton's own access-token signatures. */
export const TOKEN_SIGNING_ALGORITHM = 'ES384';

export interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
}

export interface SigningKeys {
  /** The newest key: new tokens are signed with it. */
  current: SigningKey;
  /** Every stored public key, so tokens signed before a rotation still verify. */
  jwks: { keys: JWK[] };
}

interface KeyRow {
  kid: string;
  alg: string;
  private_jwk: JWK | string;
  public_jwk: JWK | string;
}

/**
 * Loads Baton's signing keys from the database, creating the first one when there is none.
 * The creation runs under a transaction-scoped advisory lock, so processes starting together
 * create one key between them rather than each its own.
 */
export async function loadSigningKeys(db: Database): Promise<SigningKeys> {
  let rows = await selectKeys(db);
  if (rows.length === 0) {
    rows = await db.transaction(async (tx) => {
      await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('baton.auth_signing_keys'))`);
      if ((await selectKeys(tx)).length === 0) await insertNewKey(tx);
      return selectKeys(tx);
    });
  }
  const newest = rows[0];
  const privateJwk = json(newest.private_jwk);
  return {
    current: { kid: newest.kid, alg: newest.alg, privateKey: (await importJWK(privateJwk, newest.alg)) as CryptoKey },
    jwks: { keys: rows.map((row) => ({ ...json(row.public_jwk), kid: row.kid, alg: row.alg, use: 'sig' })) },
  };
}

async function insertNewKey(db: Queryable): Promise<void> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_SIGNING_ALGORITHM, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  await db.execute(sql`
    INSERT INTO auth_signing_keys (kid, alg, private_jwk, public_jwk)
    VALUES (${kid}, ${TOKEN_SIGNING_ALGORITHM}, ${JSON.stringify(await exportJWK(privateKey))}::jsonb, ${JSON.stringify(publicJwk)}::jsonb)`);
}

async function selectKeys(db: Queryable): Promise<KeyRow[]> {
  return db.execute<KeyRow>(sql`SELECT kid, alg, private_jwk, public_jwk FROM auth_signing_keys ORDER BY created DESC, kid`);
}

function json(value: JWK | string): JWK {
  return typeof value === 'string' ? (JSON.parse(value) as JWK) : value;
}
