#!/usr/bin/env node
// Quality of the reduced-precision dense option on the bundled model (issue 16): the same seeds sampled
// with the blocks' dense layers in fp32 (the reference), in bf16 (`loadModel(…, { dense: 'bf16' })`),
// and in bf16 with bf16 attention kernels too (the pipeline's `compute: 'bf16'`). Reports, per variant,
// PSNR of every sample against the fp32 sample from the same noise (images in [-1, 1], peak 2), the
// bundled classifier's class accuracy and the Fréchet distance to the real test set. Writes
// bench/results/quality-dense-<date>.json at the repository root.
//
// Env: DITFA_QUALITY_PER_CLASS=50 (500 samples)  DITFA_QUALITY_STEPS=20  DITFA_QUALITY_BATCH=50 (samples
//      per generation, ×2 rows with CFG)  DITFA_QUALITY_GUIDANCE=4
import { mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { psnr, tensor } from '@ditfa/core';
import { createCpuBackend, cpuBackendStatus } from '@ditfa/kernels-cpu/base';
import { Judge } from '@ditfa/quality';
import { createPipeline, loadModel } from '../dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../..');
const env = process.env;
const perClass = Number(env.DITFA_QUALITY_PER_CLASS ?? 50);
const steps = Number(env.DITFA_QUALITY_STEPS ?? 20);
const batch = Number(env.DITFA_QUALITY_BATCH ?? 50);
const guidance = Number(env.DITFA_QUALITY_GUIDANCE ?? 4);
const dir = path.join(repoRoot, 'models', 'fashion-dit');
const say = (line) => process.stdout.write(`${line}\n`);

const status = cpuBackendStatus();
const backend = createCpuBackend();
const labels = Array.from({ length: 10 * perClass }, (_, i) => i % 10);
const variants = [
  { name: 'fp32', dense: 'fp32', compute: 'fp32' },
  { name: 'dense bf16', dense: 'bf16', compute: 'fp32' },
  { name: 'dense bf16 + attention bf16', dense: 'bf16', compute: 'bf16' },
];
const judge = await Judge.create({ classifier: path.join(repoRoot, 'models', 'fashion-classifier.onnx'), stats: path.join(repoRoot, 'models', 'fashion-classifier-stats.safetensors') });
const machine = {
  cpu: os.cpus()[0]?.model, logicalCpus: os.cpus().length, node: process.version,
  kernels: { isa: status.activeIsa, bf16: status.activeBf16Isa ?? null, densePaths: status.densePaths, threads: status.threads },
  loadAverageBefore: os.loadavg(),
};
say(`machine: ${JSON.stringify(machine)}`);
say(`${labels.length} samples (${perClass} per class), ${steps} DPM-Solver++ steps, guidance ${guidance}, generations of ${batch} samples`);

const results = [];
const images = {};
for (const v of variants) {
  const model = await loadModel(dir, { backend, dense: v.dense });
  const pipe = createPipeline(model, { backend, compute: v.compute });
  const t0 = performance.now();
  const parts = [];
  for (let i = 0; i < labels.length; i += batch) {
    // seed per generation: the same noise for every variant
    const r = await pipe.generate({ classLabels: labels.slice(i, i + batch), seed: 1000 + i, steps, guidanceScale: guidance });
    parts.push(r.images);
    say(`  ${v.name}: ${Math.min(i + batch, labels.length)} / ${labels.length} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
  const seconds = (performance.now() - t0) / 1000;
  await pipe.dispose();
  const [, C, H, W] = parts[0].shape;
  const all = new Float32Array(labels.length * C * H * W);
  let at = 0;
  for (const p of parts) {
    all.set(p.data, at);
    at += p.data.length;
  }
  images[v.name] = tensor(all, [labels.length, C, H, W]);
  const scores = await judge.score(images[v.name], labels);
  results.push({ ...v, seconds, accuracy: scores.accuracy, frechet: scores.frechet, perClassAccuracy: scores.perClassAccuracy });
  say(`${v.name}: accuracy ${(100 * scores.accuracy).toFixed(1)} %, Fréchet ${scores.frechet.toFixed(3)}, ${seconds.toFixed(0)} s`);
}
await judge.dispose();

const ref = images.fp32;
const per = ref.data.length / labels.length;
for (const r of results) {
  const x = images[r.name];
  const values = labels.map((_, i) => psnr(ref.data.subarray(i * per, (i + 1) * per), x.data.subarray(i * per, (i + 1) * per), { peak: 2 }));
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  r.psnrVsFp32 = r.name === 'fp32' ? null : {
    mean: finite.reduce((a, b) => a + b, 0) / Math.max(1, finite.length),
    median: finite[Math.floor((finite.length - 1) / 2)] ?? null,
    min: finite[0] ?? null,
    identical: values.length - finite.length,
    whole: psnr(ref.data, x.data, { peak: 2 }),
  };
  if (r.psnrVsFp32) say(`${r.name}: PSNR vs fp32 mean ${r.psnrVsFp32.mean.toFixed(2)} dB (median ${r.psnrVsFp32.median?.toFixed(2)}, min ${r.psnrVsFp32.min?.toFixed(2)}), whole set ${r.psnrVsFp32.whole.toFixed(2)} dB`);
}
machine.loadAverageAfter = os.loadavg();
const out = {
  benchmark: 'quality-dense', issue: 16, date: new Date().toISOString(), machine,
  settings: { samples: labels.length, perClass, steps, sampler: 'dpmpp-2m', guidance, samplesPerGeneration: batch, seeds: 'seed 1000 + index of the generation\'s first sample, the same for every variant', model: 'models/fashion-dit' },
  notes: ['PSNR per sample against the fp32 sample from the same noise, images in [-1, 1] (peak 2); accuracy and Fréchet distance from the bundled classifier (models/fashion-classifier.onnx).'],
  results,
};
const outDir = path.join(repoRoot, 'bench', 'results');
mkdirSync(outDir, { recursive: true });
const file = path.join(outDir, `quality-dense-${out.date.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
say(`wrote ${path.relative(repoRoot, file)}`);
