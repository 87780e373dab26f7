#!/usr/bin/env node
// The `ditfa` command. This shim is committed (so that `pnpm install` can link the bin on a fresh
// clone, before anything is built) and runs the compiled CLI from dist/ at run time.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write(
    `ditfa: the command is not built yet (${fileURLToPath(entry)} is missing).\n` +
      'Build it first: `pnpm build` at the repository root (or `pnpm --filter @ditfa/cli... build`).\n',
  );
  process.exit(1);
}
await import(entry.href);
