import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // A worker runs its files one after another in one process, importing the modules once:
    // isolated, each file spent ~4 s of CI's two cores importing them and loading the FHIR
    // definitions again. Files share no state but those immutable caches (each has its own
    // database, port and temp folder; nothing mutates process.env or mocks modules).
    isolate: false,
    // vitest's default leaves a core idle (CPUs − 1): one worker on CI's two cores. Test files
    // share nothing (a database, port and temp folder each), so every core runs one.
    maxWorkers: availableParallelism(),
  },
});
