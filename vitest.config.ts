import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // vitest's default leaves a core idle (CPUs − 1): one worker on CI's two cores. Test files
    // share nothing (a database, port and temp folder each), so every core runs one.
    maxWorkers: availableParallelism(),
  },
});
