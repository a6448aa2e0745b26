import { sql } from 'drizzle-orm';
import { Hono } from 'hono';
import { type CryptoKey, type JWK, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { Database } from '../../db/connection.ts';

/** SMART Backend Services accepts RS384 and ES384 assertions; ES384 keys are small and fast to make. */
const CLIENT_KEY_ALGORITHM = 'ES384';

/** Key ids become JWK `kid`s in a public key set: printable, short. */
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

export const isClientKeyId = (keyId: string): boolean => KEY_ID.test(keyId);

export interface OutboundClientKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
}

interface KeyRow {
  kid: string;
  alg: string;
  private_jwk: JWK | string;
  public_jwk: JWK | string;
}

/**
 * Baton's own client keys, with which it signs its client assertions at partners' token
 * endpoints: one ES384 key pair per key id an Endpoint names, kept in the database (so every
 * Baton process signs with the same key) and created on its first use. Processes creating the
 * same key id together both insert with ON CONFLICT DO NOTHING and then read, so all of them
 * use the one row that won. Keys are cached in the process; the cache may be lost.
 */
export class OutboundClientKeys {
  private readonly loaded = new Map<string, Promise<OutboundClientKey>>();

  constructor(private readonly db: Database) {}

  /** The signing key of `keyId`, created when there is none yet. */
  get(keyId: string): Promise<OutboundClientKey> {
    if (!isClientKeyId(keyId)) return Promise.reject(new Error('An outbound client key id is 1 to 64 letters, digits, ".", "_" or "-"'));
    let key = this.loaded.get(keyId);
    if (!key) {
      key = this.load(keyId);
      // A failed load (database down) is tried again on the next call.
      key.catch(() => this.loaded.delete(keyId));
      this.loaded.set(keyId, key);
    }
    return key;
  }

  /** Every stored public key, as the JWKS partners register for Baton (GET /jwks/client). */
  async jwks(): Promise<{ keys: JWK[] }> {
    const rows = await this.db.execute<KeyRow>(sql`SELECT kid, alg, private_jwk, public_jwk FROM outbound_client_keys ORDER BY created, kid`);
    return { keys: rows.map(publicKey) };
  }

  private async load(keyId: string): Promise<OutboundClientKey> {
    let row = await this.select(keyId);
    if (!row) {
      const { privateKey, publicKey: created } = await generateKeyPair(CLIENT_KEY_ALGORITHM, { extractable: true });
      await this.db.execute(sql`
        INSERT INTO outbound_client_keys (kid, alg, private_jwk, public_jwk)
        VALUES (${keyId}, ${CLIENT_KEY_ALGORITHM}, ${JSON.stringify(await exportJWK(privateKey))}::jsonb, ${JSON.stringify(await exportJWK(created))}::jsonb)
        ON CONFLICT (kid) DO NOTHING`);
      row = await this.select(keyId);
      if (!row) throw new Error(`Outbound client key ${keyId} was neither found nor created`);
    }
    return { kid: row.kid, alg: row.alg, privateKey: (await importJWK(json(row.private_jwk), row.alg)) as CryptoKey };
  }

  private async select(keyId: string): Promise<KeyRow | undefined> {
    return (await this.db.execute<KeyRow>(sql`SELECT kid, alg, private_jwk, public_jwk FROM outbound_client_keys WHERE kid = ${keyId}`))[0];
  }
}

/** GET /jwks/client: the public keys of Baton's outbound client keys, the jwks_uri partners register Baton's client with. */
export function outboundClientKeyRoutes(keys: OutboundClientKeys): Hono {
  const app = new Hono();
  // A key created on first use appears here at once; partners' caches (such as Baton's own RemoteJwksCache) refetch on an unknown kid.
  app.get('/jwks/client', async (c) => c.json(await keys.jwks(), 200, { 'Cache-Control': 'public, max-age=60' }));
  return app;
}

function publicKey(row: KeyRow): JWK {
  return { ...json(row.public_jwk), kid: row.kid, alg: row.alg, use: 'sig' };
}

function json(value: JWK | string): JWK {
  return typeof value === 'string' ? (JSON.parse(value) as JWK) : value;
}
