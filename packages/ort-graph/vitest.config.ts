import { defineConfig } from 'vitest/config';

// CI runs every package's tests at once on 2 cores: 5 s per test is too tight for the ones that load models.
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 120_000 } });
