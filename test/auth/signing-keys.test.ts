import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSigningKeys } from '../../src/auth/signing-keys.ts';
import { type TestBaton, startBaton } from '../support/baton.ts';

let baton: TestBaton;

beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton.close());

describe('loadSigningKeys', () => {
  it('creates one key between processes starting together, and all of them sign with it', async () => {
    const loaded = await Promise.all(Array.from({ length: 6 }, () => loadSigningKeys(baton.db)));
    expect(new Set(loaded.map((keys) => keys.current.kid)).size).toBe(1);
    expect(loaded.every((keys) => keys.jwks.keys.length === 1)).toBe(true);
    const rows = await baton.db.execute(sql`SELECT kid FROM auth_signing_keys`);
    expect(rows).toHaveLength(1);
  });
});
