import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAuditSigningKey, loadAuditTrustedKeys } from '../../src/audit/audit-key.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { connectDatabase } from '../../src/db/connection.ts';
import { type TestBaton, startBaton } from '../support/baton.ts';

const dir = mkdtempSync(join(tmpdir(), 'baton-audit-key-'));
function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe('BATON_AUDIT_KEY and the checkpoint settings', () => {
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });

  it('defaults to a key kept in the database, a checkpoint every 1000 events or 60 seconds', () => {
    expect(loadConfig({}).audit).toEqual({ key: undefined, checkpointEvery: 1000, checkpointSeconds: 60 });
    expect(loadConfig({ BATON_AUDIT_CHECKPOINT_EVERY: '50', BATON_AUDIT_CHECKPOINT_SECONDS: '5' }).audit).toMatchObject({ checkpointEvery: 50, checkpointSeconds: 5 });
  });

  it.each([
    ['a PKCS#8 PEM', () => file('key.pem', p384.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)],
    ['a private JWK', () => file('key.jwk.json', JSON.stringify(p384.privateKey.export({ format: 'jwk' })))],
  ])('reads a P-384 private key from %s', (_name, path) => {
    const key = loadConfig({ BATON_AUDIT_KEY: path() }).audit.key;
    expect(key?.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    expect(key?.export({ format: 'jwk' })).toEqual(p384.privateKey.export({ format: 'jwk' }));
  });

  it.each([
    ['a P-256 key', () => file('p256.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string), 'EC P-384'],
    ['an RSA key', () => file('rsa.pem', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string), 'EC P-384'],
    ['a public JWK', () => file('public.jwk.json', JSON.stringify(p384.publicKey.export({ format: 'jwk' }))), 'private JWK'],
    ['text that is no key', () => file('garbage.pem', 'not a key'), 'private JWK'],
    ['a missing file', () => join(dir, 'absent.pem'), 'cannot read'],
  ])('refuses %s', (_name, path, message) => {
    const env = { BATON_AUDIT_KEY: path() };
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it.each([
    [{ BATON_AUDIT_CHECKPOINT_EVERY: '0' }, 'BATON_AUDIT_CHECKPOINT_EVERY'],
    [{ BATON_AUDIT_CHECKPOINT_EVERY: 'often' }, 'BATON_AUDIT_CHECKPOINT_EVERY'],
    [{ BATON_AUDIT_CHECKPOINT_SECONDS: '-5' }, 'BATON_AUDIT_CHECKPOINT_SECONDS'],
  ])('rejects %j naming %s', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(name);
  });
});

describe('the audit signing key', () => {
  let baton: TestBaton;
  beforeAll(async () => {
    baton = await startBaton();
  });
  afterAll(() => baton?.close());

  it('is generated once and shared by processes that start together', async () => {
    const others = await Promise.all([1, 2].map(() => (baton.databaseUrl ? connectDatabase({ databaseUrl: baton.databaseUrl, dataDir: 'memory://', maxConnections: 2 }) : undefined)));
    try {
      const keys = await Promise.all([baton.db, ...others.map((db) => db ?? baton.db)].map((db) => loadAuditSigningKey(db, undefined)));
      expect(new Set(keys.map((k) => k.kid)).size).toBe(1);
      expect(keys[0].source).toBe('database');
      expect([...(await loadAuditTrustedKeys(baton.db, undefined)).keys()]).toEqual([keys[0].kid]);
    } finally {
      await Promise.all(others.map((db) => db?.close()));
    }
  });

  it('is the configured key when there is one, and then the only one trusted', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const kid = await calculateJwkThumbprint(await exportJWK(privateKey));
    expect(await loadAuditSigningKey(baton.db, privateKey)).toMatchObject({ kid, source: 'configured' });
    expect([...(await loadAuditTrustedKeys(baton.db, privateKey)).keys()]).toEqual([kid]);
  });
});
