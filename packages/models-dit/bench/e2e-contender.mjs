#!/usr/bin/env node
// One ditfa contender of bench/e2e.mjs, in a process of its own so that its peak RSS is its own. Loads the
// model as asked, then serves the bench over stdin/stdout (the protocol of tools/bench_torch_step.py):
// prints `ready <load seconds> <engine> <dense dtype>`; each `run` line runs the work once and answers
// the seconds of each denoising step (comma-separated; forward mode adds `|` and the seconds in attention,
// `|` and the seconds in the dense layers of each forward); `quit` writes the last output (float32, raw)
// and answers `rss <peak RSS in KiB>`.
//
// Config (JSON file, argv[2]):
//   model: 'bundled' | 'dit' | 'pixart'; dir (bundled) or weights + config (random-weight models);
//   inputs: safetensors with x, t, y (DiT) or captions, mask (PixArt) for 'forward' mode;
//   engine: 'native' | 'onnxruntime'; dense: 'fp32' | 'bf16'; compute: attention 'fp32' | 'bf16';
//   spinning: onnxruntime's intra-op spinning, ortBlocks: 'shared' | 'per-block' (true and 'per-block'
//   reproduce the onnxruntime engine as it was before issue 16);
//   threads: onnxruntime intra-op threads; kernelThreads: the native pool;
//   mode: 'forward' (forwards per run) | 'generate' (one generation per run: samples, steps, guidance,
//   seed, plan path or null); output: path.
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { tensor } from '@ditfa/core';
import { createCpuBackend } from '@ditfa/kernels-cpu/base';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import { configFromJson, createPipeline, loadModel } from '../dist/index.js';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const backend = createCpuBackend(cfg.kernelThreads ? { threads: cfg.kernelThreads } : {});
const t0 = performance.now();
const loadOptions = {
  backend,
  denseEngine: cfg.engine,
  dense: cfg.dense ?? 'fp32',
  ...(cfg.threads ? { threads: cfg.threads } : {}),
  ...(cfg.spinning === undefined ? {} : { spinning: cfg.spinning }),
  ...(cfg.memArena === undefined ? {} : { memArena: cfg.memArena }),
  ...(cfg.ortBlocks === undefined ? {} : { ortBlocks: cfg.ortBlocks }),
};
const model = cfg.model === 'bundled' ? await loadModel(cfg.dir, loadOptions) : await loadModel(cfg.weights, { ...loadOptions, config: configFromJson(cfg.config) });
const loadSeconds = (performance.now() - t0) / 1000;
const compute = cfg.compute ?? 'fp32';
const strategies = [...warsStrategies(), ...astStrategies(), ...ascStrategies()];
let last = null;

let work;
if (cfg.mode === 'generate') {
  const pipe = createPipeline(model, { backend, strategies, compute });
  const plan = cfg.plan ? JSON.parse(readFileSync(cfg.plan, 'utf8')) : undefined;
  const classLabels = Array.from({ length: cfg.samples }, (_, i) => i % 10);
  work = async () => {
    const steps = [];
    let s0 = performance.now();
    const r = await pipe.generate({
      classLabels, seed: cfg.seed ?? 0, steps: cfg.steps, guidanceScale: cfg.guidance, images: false, ...(plan ? { plan } : {}),
      onProgress: () => {
        const now = performance.now();
        steps.push((now - s0) / 1000);
        s0 = now;
      },
    });
    if (r.attention.fallbacks) throw new Error(`${r.attention.fallbacks} strategy fallbacks: the plan did not run as planned`);
    last = r.latents.data;
    return steps;
  };
} else {
  const io = readSafetensors(cfg.inputs).tensors;
  const f32 = (k) => tensor(toFloat32(io.get(k)), io.get(k).shape);
  const ints = (k) => Array.from(toFloat32(io.get(k)), Math.round);
  const x = f32('x');
  const t = ints('t');
  const cond = io.has('y') ? { classLabels: ints('y') } : { captions: f32('captions'), mask: ints('mask') };
  const options = { backend, cfg: { order: model.cfgOrder }, compute };
  work = async () => {
    const steps = [];
    const attention = [];
    const dense = [];
    for (let i = 0; i < (cfg.forwards ?? 1); i++) {
      const s0 = performance.now();
      const { output, timings } = await model.forward(x, t, cond, options);
      steps.push((performance.now() - s0) / 1000);
      attention.push(timings.attentionMs / 1000);
      dense.push(timings.ortMs / 1000);
      last = output.data;
    }
    return [steps, attention, dense];
  };
}

const say = (line) => process.stdout.write(`${line}\n`);
say(`ready ${loadSeconds.toFixed(3)} ${model.denseEngine} ${model.denseDtype}`);
for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  if (cmd === 'quit') break;
  if (cmd === 'run') {
    const r = await work();
    say((Array.isArray(r[0]) ? r : [r]).map((xs) => xs.map((s) => s.toFixed(6)).join(',')).join('|'));
  }
}
if (last && cfg.output) writeFileSync(cfg.output, new Uint8Array(last.buffer, last.byteOffset, last.byteLength));
say(`rss ${process.resourceUsage().maxRSS}`);
await model.dispose();
process.exit(0);
