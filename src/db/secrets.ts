import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Queryable } from './connection.ts';

/**
 * A named secret of this installation (e.g. the key of the brute-force guard's hashes): 32 random
 * bytes created by whichever process asks first, then the same for every process and restart.
 * The insert that loses a race changes nothing and the select reads the winner's.
 */
export async function serverSecret(q: Queryable, name: string): Promise<Buffer> {
  await q.execute(sql`INSERT INTO server_secrets (name, secret) VALUES (${name}, ${randomBytes(32).toString('base64')}) ON CONFLICT (name) DO NOTHING`);
  const rows = await q.execute<{ secret: string }>(sql`SELECT secret FROM server_secrets WHERE name = ${name}`);
  return Buffer.from(rows[0].secret, 'base64');
}
