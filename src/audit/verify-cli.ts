import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.ts';
import { connectDatabase } from '../db/connection.ts';
import { migrationStatus } from '../db/migrate.ts';
import { VerifyRangeError, parseVerifyRange, verifyAuditTrail } from './verify.ts';

/**
 * npm run audit:verify [-- --from N --to N]: verifies the audit trail in the configured database
 * and prints the result as JSON. Exit code 0 verified, 1 not verified, 2 bad configuration or
 * arguments. The embedded PGlite database admits one process at a time: stop Baton first (or
 * call GET /fhir/AuditEvent/$verify).
 */

function usageError(message: string): never {
  console.error(`audit:verify: ${message}`);
  process.exit(2);
}

let range;
let config;
try {
  const { values } = parseArgs({ options: { from: { type: 'string' }, to: { type: 'string' } }, strict: true, allowPositionals: false });
  range = parseVerifyRange(values.from, values.to);
  config = loadConfig();
} catch (error) {
  if (error instanceof VerifyRangeError || error instanceof ConfigError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    usageError((error as Error).message);
  }
  throw error;
}

const db = await connectDatabase(config);
try {
  const migrations = await migrationStatus(db).catch(() => ({ expected: 1, applied: 0 }));
  if (migrations.applied < migrations.expected) usageError('the database is not migrated (npm run db:migrate), so it holds no audit trail to verify');
  const result = await verifyAuditTrail(db, { ...range, auditKey: config.audit.key });
  console.log(JSON.stringify(result, null, 2));
  process.exitCode = result.verified ? 0 : 1;
} finally {
  await db.close();
}
