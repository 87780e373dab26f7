#!/usr/bin/env node
// The main job until the `ditfa demo` command lands: a self-check of @ditfa/core that a new user
// can read. It checks the reference kernels against closed-form results and prints what the FLOP
// model says DiTFastAttn's window saves at the paper's resolutions.
import {
  bandPairs1D,
  createReferenceBackend,
  maxAbsDiff,
  tensor,
  windowFraction,
} from '@ditfa/core';

function random(shape, seed) {
  let a = seed >>> 0;
  const data = new Float32Array(shape.reduce((x, y) => x * y, 1));
  for (let i = 0; i < data.length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    data[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return tensor(data, shape);
}

const backend = createReferenceBackend();
const [B, L, H, D] = [2, 64, 4, 16];
const q = random([B, L, H, D], 1);
const k = random([B, L, H, D], 2);
const v = random([B, L, H, D], 3);
const checks = [];
const full = await backend.attention(q, k, v);
const wide = await backend.windowAttention(q, k, v, { kind: '1d', size: L });
checks.push(['window w >= L equals full attention', maxAbsDiff(full.data, wide.data)]);
const { out, residual } = await backend.fullWithResidual(q, k, v, { kind: '1d', size: L / 8 });
const again = await backend.windowWithResidual(q, k, v, { kind: '1d', size: L / 8 }, residual);
checks.push(['window + residual equals full attention', maxAbsDiff(out.data, again.data)]);
const grid = await backend.windowAttention(q, k, v, { kind: '2d', rows: 8, cols: 8, radius: 8 });
checks.push(['2-D window of radius >= grid equals full', maxAbsDiff(full.data, grid.data)]);

console.log('ditfa core self-check (TypeScript reference backend)');
let ok = true;
for (const [name, err] of checks) {
  const pass = err <= 1e-6;
  ok &&= pass;
  console.log(`  ${pass ? 'ok  ' : 'FAIL'} ${name.padEnd(44)} max |diff| = ${err.toExponential(2)}`);
}
console.log('\nWindow attention cost at w = L/8 (exact clipped band, fraction of full attention):');
for (const [model, tokens] of [['DiT-XL-2 512', 1024], ['PixArt-Sigma 1024', 4096], ['PixArt-Sigma 2K', 16384]]) {
  const w = tokens / 8;
  console.log(`  ${model.padEnd(18)} L = ${String(tokens).padStart(5)}  w = ${String(w).padStart(4)}  pairs = ${String(bandPairs1D(tokens, w)).padStart(10)}  fraction = ${(100 * windowFraction({ kind: '1d', size: w }, tokens)).toFixed(2)} %`);
}
process.exit(ok ? 0 : 1);
