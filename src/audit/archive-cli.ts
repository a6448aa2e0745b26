import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.ts';
import { connectDatabase } from '../db/connection.ts';
import { migrationStatus } from '../db/migrate.ts';
import { AuditArchiveError, archiveExpiredAudit } from './archive.ts';

/**
 * npm run audit:archive: archives every segment of the audit trail past BATON_AUDIT_RETENTION_DAYS
 * into BATON_AUDIT_ARCHIVE_DIR now, rather than waiting for the server's daily run, and prints
 * {segments, events, files} as JSON. Exit code 0 done (nothing to archive included), 1 the trail
 * could not be archived (nothing deleted), 2 bad configuration or arguments. The embedded PGlite
 * database admits one process at a time: stop Baton first.
 */

function usageError(message: string): never {
  console.error(`audit:archive: ${message}`);
  process.exit(2);
}

let config;
try {
  parseArgs({ options: {}, strict: true, allowPositionals: false });
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) usageError((error as Error).message);
  throw error;
}

const db = await connectDatabase(config);
try {
  const migrations = await migrationStatus(db).catch(() => ({ expected: 1, applied: 0 }));
  if (migrations.applied < migrations.expected) usageError('the database is not migrated (npm run db:migrate)');
  const run = await archiveExpiredAudit({ db, audit: config.audit, retention: config.auditRetention });
  console.log(JSON.stringify(run, null, 2));
} catch (error) {
  if (!(error instanceof AuditArchiveError)) throw error;
  console.error(`audit:archive: ${error.message}`);
  process.exitCode = 1;
} finally {
  await db.close();
}
