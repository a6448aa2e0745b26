import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.ts';
import { connectDatabase } from '../db/connection.ts';
import { migrationStatus } from '../db/migrate.ts';
import { ArchiveNameError, archiveFilesOf, verifyArchive } from './archive-file.ts';
import { loadAuditTrustedKeys } from './audit-key.ts';
import { VerifyRangeError, parseVerifyRange, verifyAuditTrail } from './verify.ts';

/**
 * npm run audit:verify [-- --from N --to N]: verifies the audit trail in the configured database
 * and prints the result as JSON. npm run audit:verify -- --archive audit-<from>-<to>.ndjson
 * verifies an archived segment's files instead (src/audit/archive-file.ts) against the trusted
 * audit keys (BATON_AUDIT_KEY when set, else those in the database), not the trail. Exit code 0
 * verified, 1 not verified, 2 bad configuration or arguments. The embedded PGlite database admits
 * one process at a time: stop Baton first (or call GET /fhir/AuditEvent/$verify).
 */

function usageError(message: string): never {
  console.error(`audit:verify: ${message}`);
  process.exit(2);
}

let range;
let archive: string | undefined;
let config;
try {
  const { values } = parseArgs({ options: { from: { type: 'string' }, to: { type: 'string' }, archive: { type: 'string' } }, strict: true, allowPositionals: false });
  range = parseVerifyRange(values.from, values.to);
  if (values.archive !== undefined) {
    if (values.from !== undefined || values.to !== undefined) usageError('--archive verifies a whole archive file: give it without --from and --to');
    archive = resolve(values.archive);
    archiveFilesOf(archive);
    await access(archive).catch(() => usageError(`cannot read ${archive}`));
  }
  config = loadConfig();
} catch (error) {
  if (error instanceof VerifyRangeError || error instanceof ArchiveNameError || error instanceof ConfigError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    usageError((error as Error).message);
  }
  throw error;
}

const db = await connectDatabase(config);
try {
  const migrations = await migrationStatus(db).catch(() => ({ expected: 1, applied: 0 }));
  if (migrations.applied < migrations.expected) usageError('the database is not migrated (npm run db:migrate), so it holds no audit trail to verify');
  const result = archive
    ? await verifyArchive(archive, await loadAuditTrustedKeys(db, config.audit.key))
    : await verifyAuditTrail(db, { ...range, auditKey: config.audit.key });
  console.log(JSON.stringify(result, null, 2));
  process.exitCode = result.verified ? 0 : 1;
} finally {
  await db.close();
}
