#!/usr/bin/env node
// Writes bench/fixtures/: outputs of core's float64 reference kernels for a few small shapes, so that the
// device check can test the CUDA kernels against core's reference on a machine without Node.js (the GPU
// machines have Python and PyTorch but no Node). Inputs are not stored: both sides draw them from the
// same generator (mulberry32, values k/64 with k in [-128, 128], exact in fp32, bf16 and fp16), so
// every storage type sees identical inputs. bench/torch_parity.py mirrors `inputs()` below. The fused
// call's residual is checked against full − window of these outputs.
//
// Run after building @ditfa/core: node scripts/make-fixtures.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { referenceAttention, referenceWindowAttention, referenceWindowWithResidual, tensor } from '@ditfa/core';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'fixtures');

export function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function inputs(shape, seed) {
  const r = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (Math.min(256, Math.floor(r() * 257)) - 128) / 64;
  return tensor(data, shape);
}

const cases = [
  { name: 'd64', shape: [2, 67, 2, 64], window: { kind: '1d', size: 5 }, seed: 100 },
  { name: 'd72', shape: [2, 100, 2, 72], window: { kind: '1d', size: 40 }, seed: 200 },
  { name: 'd128', shape: [1, 80, 2, 128], window: { kind: '1d', size: 20 }, seed: 300 },
  { name: 'd72-2d', shape: [1, 72, 2, 72], window: { kind: '2d', rows: 8, cols: 9, radius: 2 }, seed: 400 },
];

mkdirSync(dir, { recursive: true });
const manifest = { generator: 'mulberry32; value = (min(256, floor(r * 257)) - 128) / 64; q, k, v, residual from seeds seed, seed+1, seed+2, seed+3', cases: [] };
for (const c of cases) {
  const [q, k, v, residual] = [0, 1, 2, 3].map((i) => inputs(c.shape, c.seed + i));
  // Keep the softmax away from one-hot so the comparison exercises the weighted sum: scale 1/(2√D)·…
  const scale = 0.5 / Math.sqrt(c.shape[3]);
  const full = referenceAttention(q, k, v, { scale });
  const win = referenceWindowAttention(q, k, v, c.window, { scale });
  const wres = referenceWindowWithResidual(q, k, v, c.window, residual, { scale });
  const outputs = { full: full.data, window: win.data, windowWithResidual: wres.data };
  const files = {};
  for (const [key, data] of Object.entries(outputs)) {
    const file = `${c.name}.${key}.f32`;
    writeFileSync(join(dir, file), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    files[key] = file;
  }
  manifest.cases.push({ ...c, scale, files });
}
writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
process.stderr.write(`wrote ${manifest.cases.length} cases to ${dir}\n`);
