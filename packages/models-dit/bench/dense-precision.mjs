#!/usr/bin/env node
// What onnxruntime-node 1.30's CPU provider can run below fp32 on this CPU, against the native dense
// kernels (issue 16): one linear layer `y = x·Wᵀ` at the models' shapes, every variant round-robin, the
// fastest of each and its error against a float64 product on 64 rows. Variants: ORT fp32 MatMul, ORT fp16
// (Cast → MatMul → Cast), ORT bf16 (the same with bfloat16), ORT int8 `com.microsoft.DynamicQuantizeMatMul`
// (weights per output channel) and `DynamicQuantizeLinear` + `MatMulInteger` (per tensor), the native
// dense kernels in fp32, bf16 on AMX and bf16 on AVX512-BF16. Writes bench/results/dense-precision.json.
//
// Env: DITFA_PRECISION_THREADS=1  DITFA_PRECISION_ROUNDS=7
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tensor } from '@ditfa/core';
import { createCpuBackend, cpuBackendStatus } from '@ditfa/kernels-cpu/base';
import { GraphBuilder, createSession, loadOrt } from '@ditfa/ort-graph';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../..');
const threads = Number(process.env.DITFA_PRECISION_THREADS ?? 1);
const rounds = Number(process.env.DITFA_PRECISION_ROUNDS ?? 7);
const say = (line) => process.stdout.write(`${line}\n`);
const ort = await loadOrt();
const backend = createCpuBackend({ threads });
const dense = backend.dense;
const status = cpuBackendStatus();

const shapes = [
  { name: 'fashion-dit qkv (20 samples + CFG)', M: 40 * 256, K: 192, N: 576 },
  { name: 'fashion-dit fc2', M: 40 * 256, K: 768, N: 192 },
  { name: 'DiT-XL/2-512 fc1 (batch 2)', M: 2 * 1024, K: 1152, N: 4608 },
  { name: 'DiT-XL/2-512 fc2 (batch 2)', M: 2 * 1024, K: 4608, N: 1152 },
];

function normal(n, seed, std) {
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) * std;
  return out;
}
const transpose = (w, N, K) => {
  const t = new Float32Array(K * N);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) t[k * N + n] = w[n * K + k];
  return t;
};

function matmulModel(K, N, wt, cast) {
  const g = new GraphBuilder('mm');
  const a = g.input('a', 'float32', ['M', K]);
  let w = g.initializer('w', { type: 'float32', dims: [K, N], data: wt });
  if (!cast) {
    g.output(g.op('MatMul', [a, w]), 'y');
  } else {
    const to = cast === 'float16' ? 10 : 16;
    w = g.op('Cast', [w], { to });
    g.output(g.op('Cast', [g.op('MatMul', [g.op('Cast', [a], { to }), w])], { to: 1 }), 'y');
  }
  return g.toModel();
}
function int8Model(K, N, w, kind) {
  const g = new GraphBuilder('q');
  const a = g.input('a', 'float32', ['M', K]);
  const q = new Int8Array(K * N);
  if (kind === 'dqmm') {
    const scale = new Float32Array(N);
    for (let n = 0; n < N; n++) {
      let m = 0;
      for (let k = 0; k < K; k++) m = Math.max(m, Math.abs(w[n * K + k]));
      scale[n] = m / 127 || 1;
      for (let k = 0; k < K; k++) q[k * N + n] = Math.round(w[n * K + k] / scale[n]);
    }
    const wq = g.initializer('w', { type: 'int8', dims: [K, N], data: new Uint8Array(q.buffer) });
    const s = g.initializer('s', { type: 'float32', dims: [N], data: scale });
    g.output(g.op('DynamicQuantizeMatMul', [a, wq, s], {}, { domain: 'com.microsoft' }), 'y');
    return g.toModel({ extraOpsets: { 'com.microsoft': 1 } });
  }
  let m = 0;
  for (const v of w) m = Math.max(m, Math.abs(v));
  const scale = m / 127;
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) q[k * N + n] = Math.round(w[n * K + k] / scale);
  const [qa, sa, za] = g.opN('DynamicQuantizeLinear', [a], 3);
  const wq = g.initializer('w', { type: 'int8', dims: [K, N], data: new Uint8Array(q.buffer) });
  const y = g.op('MatMulInteger', [qa, wq, za]);
  g.output(g.op('Mul', [g.op('Cast', [y], { to: 1 }), g.op('Mul', [sa, g.constF([scale], [])])]), 'y');
  return g.toModel();
}

const results = [];
for (const shape of shapes) {
  const { M, K, N } = shape;
  const x = normal(M * K, 1, 1); // LayerNorm-like activations
  const w = normal(N * K, 2, 1 / Math.sqrt(K));
  const wt = transpose(w, N, K);
  // float64 reference on the first 64 rows
  const R = 64;
  const ref = new Float64Array(R * N);
  let refScale = 0;
  for (let r = 0; r < R; r++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += x[r * K + k] * w[n * K + k];
    ref[r * N + n] = s;
    refScale = Math.max(refScale, Math.abs(s));
  }
  const contenders = {};
  const notes = {};
  const ortVariant = async (name, bytes) => {
    try {
      const session = await createSession(bytes, { threads, spinning: false });
      const feeds = { a: new ort.Tensor('float32', x, [M, K]) };
      contenders[name] = async () => (await session.run(feeds)).y.data;
    } catch (e) {
      notes[name] = e.message.split('\n')[0].slice(0, 200);
    }
  };
  await ortVariant('onnxruntime fp32 MatMul', matmulModel(K, N, wt, null));
  await ortVariant('onnxruntime fp16 MatMul', matmulModel(K, N, wt, 'float16'));
  await ortVariant('onnxruntime bf16 MatMul', matmulModel(K, N, wt, 'bfloat16'));
  await ortVariant('onnxruntime int8 DynamicQuantizeMatMul (per channel)', int8Model(K, N, w, 'dqmm'));
  await ortVariant('onnxruntime int8 MatMulInteger (per tensor)', int8Model(K, N, w, 'mmi'));
  if (dense) {
    const xt = tensor(x, [M, K]);
    for (const p of dense.paths()) {
      const packed = dense.packFor({ weight: w, bias: null, inFeatures: K, outFeatures: N }, p);
      const out = [tensor(new Float32Array(M * N), [M, N])];
      contenders[`ditfa dense ${p === 'avx512' ? 'fp32' : 'bf16'} (${p})`] = async () => (await dense.linear(xt, packed, { out }))[0].data;
    }
  }
  const times = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  const last = {};
  for (const [k, f] of Object.entries(contenders)) last[k] = await f(); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [k, f] of Object.entries(contenders)) {
      const t0 = performance.now();
      last[k] = await f();
      times[k].push(performance.now() - t0);
    }
  }
  const rows = Object.keys(contenders).map((k) => {
    const best = Math.min(...times[k]);
    let maxErr = 0;
    let sumRel = 0;
    for (let i = 0; i < R * N; i++) {
      const e = Math.abs(last[k][i] - ref[i]);
      maxErr = Math.max(maxErr, e);
      sumRel += e / (Math.abs(ref[i]) + 1e-3 * refScale);
    }
    return { variant: k, bestMs: best, gflops: (2 * M * N * K) / best / 1e6, maxAbsErrorOverScale: maxErr / refScale, meanRelError: sumRel / (R * N) };
  });
  say(`\n${shape.name}: M=${M} K=${K} N=${N}, ${threads} thread(s), best of ${rounds}`);
  for (const r of rows) say(`  ${r.variant.padEnd(56)} ${r.bestMs.toFixed(2).padStart(8)} ms ${r.gflops.toFixed(0).padStart(6)} GFLOP/s  max err ${r.maxAbsErrorOverScale.toExponential(1)}  mean rel ${r.meanRelError.toExponential(1)}`);
  for (const [k, v] of Object.entries(notes)) say(`  ${k.padEnd(56)} unavailable: ${v}`);
  results.push({ ...shape, rows, unavailable: notes });
}

const out = {
  benchmark: 'dense-precision', issue: 16, date: new Date().toISOString(), threads, rounds,
  machine: { cpu: os.cpus()[0]?.model, logicalCpus: os.cpus().length, flags: (readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '').split(/\s+/).filter((f) => /^(avx512f|avx512_bf16|avx512_fp16|avx512_vnni|amx_bf16|amx_int8|amx_tile)$/.test(f)), node: process.version, onnxruntime: '1.30.0', kernels: { densePaths: status.densePaths }, loadAverage: os.loadavg() },
  notes: ['Activations ~ N(0, 1), weights ~ N(0, 1/K); errors against a float64 product on the first 64 rows: max |error| / max |reference|, and the mean of |error| / (|reference| + 1e-3·max|reference|).'],
  results,
};
mkdirSync(path.join(repoRoot, 'bench', 'results'), { recursive: true });
writeFileSync(path.join(repoRoot, 'bench', 'results', 'dense-precision.json'), `${JSON.stringify(out, null, 2)}\n`);
say('\nwrote bench/results/dense-precision.json');
