import { randomBytes } from 'node:crypto';

/**
 * A PostgreSQL database name of a test run's own: baton_test_<Date.now() in base 36>_<random>.
 * .ci/run drops those older than an hour (left behind by killed runs) by reading the time back.
 */
export function testDatabaseName(): string {
  return `baton_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}
