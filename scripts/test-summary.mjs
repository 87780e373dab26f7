#!/usr/bin/env node
// Adds up the vitest JSON reports every package wrote during `turbo run test` and prints one
// closing line, so a reader of the log (or CI) sees the whole suite's count at the end.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
let passed = 0;
let failed = 0;
let skipped = 0;
const rows = [];
for (const dir of ['packages', 'examples']) {
  if (!existsSync(join(root, dir))) continue;
  for (const name of readdirSync(join(root, dir)).sort()) {
    const file = join(root, dir, name, '.vitest', 'results.json');
    const manifest = join(root, dir, name, 'package.json');
    if (!existsSync(manifest) || !JSON.parse(readFileSync(manifest, 'utf8')).scripts?.test) continue;
    if (!existsSync(file)) {
      rows.push(`  ${`${dir}/${name}`.padEnd(36)} no vitest JSON report (add --reporter=json --outputFile.json=.vitest/results.json to its test script)`);
      continue;
    }
    const r = JSON.parse(readFileSync(file, 'utf8'));
    const s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    passed += r.numPassedTests;
    failed += r.numFailedTests;
    skipped += s;
    rows.push(`  ${`${dir}/${name}`.padEnd(36)} ${String(r.numPassedTests).padStart(5)} passed ${String(r.numFailedTests).padStart(3)} failed ${String(s).padStart(3)} skipped`);
  }
}
console.log(`\nTest summary by package:\n${rows.join('\n')}`);
console.log(`Tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
