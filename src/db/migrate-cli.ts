import { loadConfig } from '../config.ts';
import { connectDatabase } from './connection.ts';
import { migrateDatabase, migrationStatus } from './migrate.ts';

const config = loadConfig();
const db = await connectDatabase(config);
await migrateDatabase(db);
console.log(JSON.stringify({ migrations: await migrationStatus(db) }));
await db.close();
