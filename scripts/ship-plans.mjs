#!/usr/bin/env node
// Calibrates the plans that ship beside the bundled model (models/fashion-dit/plans/D1..D6.json) with
// the demo's settings, so `ditfa demo` finishes in minutes. Plans are fingerprinted with the weights'
// hash: re-run this after every new export of the model, or the demo calibrates them itself (slowly)
// and says so in its report.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(new URL('..', import.meta.url).pathname);
const bin = path.join(root, 'packages/cli/dist/bin.js');
const out = path.join(root, 'models/fashion-dit/plans');
mkdirSync(out, { recursive: true });
// Keep these equal to `ditfa demo`'s defaults (steps 20, guidance 4, DPM-Solver++, calib 8, seed 3).
const levels = process.argv.length > 2 ? process.argv.slice(2) : ['D1', 'D2', 'D3', 'D4', 'D5', 'D6'];
for (const level of levels) {
  execFileSync(process.execPath, [bin, 'calibrate', '--threshold', level, '--steps', '20', '--guidance', '4', '--sampler', 'dpm++', '--calib', '8', '--seed', '3', '--out', path.join(out, `${level}.json`)], { stdio: 'inherit' });
}
