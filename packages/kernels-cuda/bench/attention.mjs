#!/usr/bin/env node
// Node-side benchmark of @ditfa/kernels-cuda through the addon (device-resident tensors, bf16): full vs
// window attention at B=2, H=16, D=72, L in {1024, 4096, 16384}, w = L/8. The comparison with PyTorch SDPA
// lives in bench/torch_parity.py (same library, same process as PyTorch). Prints the machine and writes
// bench/results/node-<date>.json. Without a GPU it prints why and exits 0 (benchmarks never gate CI).
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tensor } from '@ditfa/core';
import { createCudaBackend, cudaBackendStatus } from '../dist/base.js';

const status = cudaBackendStatus();
const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, gpu: status.device, build: status.build };
if (!status.available) {
  process.stdout.write(`kernels-cuda bench skipped: ${status.reason}\n`);
  process.exit(0);
}
const backend = createCudaBackend();
const B = 2;
const H = 16;
const D = 72;
const rows = [];
for (const L of [1024, 4096, 16384]) {
  const w = L / 8;
  const shape = [B, L, H, D];
  const rand = () => {
    const d = new Float32Array(B * L * H * D);
    for (let i = 0; i < d.length; i++) d[i] = Math.random() * 2 - 1;
    return backend.upload(tensor(d, shape), 'bf16');
  };
  const [q, k, v] = [rand(), rand(), rand()];
  const out = backend.empty(shape, 'bf16');
  const time = (fn) => {
    for (let i = 0; i < 3; i++) fn();
    backend.synchronize();
    const samples = [];
    for (let r = 0; r < 15; r++) {
      const t0 = process.hrtime.bigint();
      fn();
      backend.synchronize();
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    samples.sort((a, b) => a - b);
    return samples[Math.floor(samples.length / 2)];
  };
  const full = time(() => backend.attentionDevice(q, k, v, { out }));
  const win = time(() => backend.windowAttentionDevice(q, k, v, { kind: '1d', size: w }, { out }));
  let band = 0;
  for (let i = 0; i < L; i++) band += Math.min(L - 1, i + w) - Math.max(0, i - w) + 1;
  const row = { L, w, fullMs: full, windowMs: win, tflops: (4 * B * H * L * L * D) / full / 1e9, windowSpeedup: full / win, idealSpeedup: (L * L) / band };
  rows.push(row);
  process.stdout.write(`L=${L} full ${full.toFixed(3)} ms (${row.tflops.toFixed(0)} TFLOP/s) window ${win.toFixed(3)} ms speed-up ${row.windowSpeedup.toFixed(2)} / ideal ${row.idealSpeedup.toFixed(2)}\n`);
  for (const t of [q, k, v, out]) t.dispose();
}
backend.dispose();
const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `node-${new Date().toISOString().slice(0, 10)}.json`), `${JSON.stringify({ machine, rows }, null, 2)}\n`);
