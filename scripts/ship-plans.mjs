#!/usr/bin/env node
// Calibrates the plans that ship beside the bundled models (models/fashion-dit/plans/D1..D6.json and,
// with --video, models/fashion-stdit3/plans/D1..D6.json) with the demo's settings, so `ditfa demo`
// finishes in minutes. Plans are fingerprinted with the weights'
// hash: re-run this after every new export of the model, or the demo calibrates them itself (slowly)
// and says so in its report.
//
//   node scripts/ship-plans.mjs [--jobs N] [--video] [D1 D2 ...]
//
// --jobs N runs N calibrations at once, each with ⌈cores / N⌉ onnxruntime threads (default: one job
// per core; the small model's layers do not keep two threads busy, separate processes do).
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(new URL('..', import.meta.url).pathname);
const bin = path.join(root, 'packages/cli/dist/bin.js');
const args = process.argv.slice(2).filter((a) => a !== '--'); // pnpm run passes the separator through
const video = args.includes('--video');
if (video) args.splice(args.indexOf('--video'), 1);
const out = path.join(root, video ? 'models/fashion-stdit3/plans' : 'models/fashion-dit/plans');
mkdirSync(out, { recursive: true });
const cores = os.availableParallelism();
let jobs = cores;
const j = args.indexOf('--jobs');
if (j >= 0) {
  jobs = Number(args[j + 1]);
  if (!Number.isInteger(jobs) || jobs < 1) {
    console.error(`ship-plans: expected --jobs to be a positive integer but received ${JSON.stringify(args[j + 1])}`);
    process.exit(2);
  }
  args.splice(j, 2);
}
const levels = args.length > 0 ? args : ['D1', 'D2', 'D3', 'D4', 'D5', 'D6'];
const threads = String(Math.max(1, Math.ceil(cores / jobs)));

// Keep these equal to `ditfa demo`'s defaults: images steps 20, guidance 4, DPM-Solver++, calib 8, seed 3;
// video the bundle's own sampling (rectified flow, 30 steps, its guidance), calib 4, seed 3.
function calibrate(level) {
  const settings = video
    ? ['--model', path.join(root, 'models/fashion-stdit3'), '--calib', '4', '--seed', '3']
    : ['--steps', '20', '--guidance', '4', '--sampler', 'dpm++', '--calib', '8', '--seed', '3'];
  const argv = [bin, '--json', 'calibrate', '--threshold', level, ...settings, '--threads', threads, '--out', path.join(out, `${level}.json`)];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`calibrating ${level} exited with ${code}`))));
  });
}

const started = performance.now();
const queue = [...levels];
await Promise.all(
  Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let level = queue.shift(); level !== undefined; level = queue.shift()) {
      await calibrate(level);
      console.log(`ship-plans: ${level} written (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    }
  }),
);
