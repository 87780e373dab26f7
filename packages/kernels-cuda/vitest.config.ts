import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    // GPU parity cases at L = 1024 run a few seconds on the reference; keep one file at a time so the
    // device is not shared between workers.
    fileParallelism: false,
    testTimeout: 120_000,
  },
});
