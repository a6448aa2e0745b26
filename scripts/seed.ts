/**
 * npm run seed -- --members <N> [--seed <S>] [--households-share kind=weight,…] [--prefix <p>] [--as-of YYYY-MM-DD] [--members-only]
 *   generates a synthetic payer population and loads it into the database of the configuration
 *   (DATABASE_URL, else the embedded database under BATON_DATA_DIR: stop Baton first, PGlite
 *   has one user). Progress on stderr, a JSON summary on stdout.
 * Exit code 2 on bad arguments or configuration, 1 when the population is already loaded.
 */
import { ConfigError, loadConfig } from '../src/config.ts';
import { connectDatabase } from '../src/db/connection.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { systemAccess } from '../src/fhir/access.ts';
import { noAudit } from '../src/fhir/audit-sink.ts';
import { ensureOwnOrganization } from '../src/fhir/own-organization.ts';
import { createResourceValidator } from '../src/fhir/validation.ts';
import { SEED_USAGE, SeedUsageError, parseSeedArguments } from '../src/seed/arguments.ts';
import { PopulationExistsError, loadPopulation } from '../src/seed/load.ts';

function exitWith(code: number, message: string): never {
  console.error(message);
  process.exit(code);
}

let options;
let config;
try {
  options = parseSeedArguments(process.argv.slice(2));
  config = loadConfig();
} catch (error) {
  if (error instanceof SeedUsageError) exitWith(2, `${error.message}\nusage: ${SEED_USAGE}`);
  if (error instanceof ConfigError) exitWith(2, `Configuration error: ${error.message}`);
  throw error;
}

const db = await connectDatabase(config);
try {
  await migrateDatabase(db);
  // Coverage.payor and every claim's insurer name the payer's own Organization.
  await ensureOwnOrganization(
    { db, q: db, inTransaction: false, baseUrl: config.baseUrl, validator: createResourceValidator([]), access: systemAccess, audit: noAudit },
    config.payer,
  );
  let reported = 0;
  const summary = await loadPopulation(db, options, {
    progress: ({ members, resources, seconds }) => {
      if (members < options.members && seconds - reported < 2) return;
      reported = seconds;
      console.error(`seeded ${members}/${options.members} members, ${resources} resources (${seconds.toFixed(1)} s)`);
    },
  });
  console.log(JSON.stringify({ database: db.kind, seed: options.seed, idPrefix: options.idPrefix, asOf: options.asOf, ...summary }));
} catch (error) {
  if (error instanceof PopulationExistsError) {
    process.exitCode = 1;
    console.error(error.message);
  } else {
    throw error;
  }
} finally {
  await db.close();
}
