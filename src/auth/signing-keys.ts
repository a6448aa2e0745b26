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

/** A process's view of the signing keys: loaded on first use, reloaded when a token names a stored key it has not seen (another process rotated). */
export class SigningKeyStore {
  private loading: Promise<SigningKeys> | undefined;

  constructor(private readonly db: Database) {}

  get(): Promise<SigningKeys> {
    // A failed load is retried on the next call.
    this.loading ??= loadSigningKeys(this.db).catch((error: unknown) => {
      this.loading = undefined;
      throw error;
    });
    return this.loading;
  }

  /** The keys, reloaded first when `kid` is not among them but is stored; an unknown kid costs one indexed lookup, never a reload. */
  async including(kid: unknown): Promise<SigningKeys> {
    const keys = await this.get();
    if (typeof kid !== 'string' || keys.jwks.keys.some((key) => key.kid === kid)) return keys;
    const stored = await this.db.execute(sql`SELECT 1 FROM auth_signing_keys WHERE kid = ${kid}`);
    if (stored.length === 0) return keys;
    this.loading = undefined;
    return this.get();
  }
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

/**
 * Adds a new signing key; tokens are signed with it from then on (each process picks it up when
 * it reloads, at the latest when it meets a token naming it), and tokens signed with the older
 * keys still verify, since every stored public key stays in the JWKS.
 */
export async function rotateSigningKey(db: Database): Promise<string> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('baton.auth_signing_keys'))`);
    await insertNewKey(tx);
    return (await selectKeys(tx))[0].kid;
  });
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
