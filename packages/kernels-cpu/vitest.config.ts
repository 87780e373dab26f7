import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // The reference backend is slow at L = 1024; the native kernels are not.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
