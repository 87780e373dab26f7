#!/usr/bin/env node
// Plan search cost, naive vs prefix reuse, on a DiT-XL-2-shaped model (28 blocks, learned sigma, CFG)
// with random weights at a small width so the search runs in minutes on a CPU. Both modes run on the
// same calibration generation; the plans must be identical. Writes bench/results/planner-prefix-reuse.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createReferenceBackend } from '@ditfa/core';
import { createPipeline, ditConfig, loadModel, randomCheckpoint } from '@ditfa/models-dit';
import { searchPlan } from '@ditfa/planner';
import { strategies as asc } from '@ditfa/strategy-asc';
import { strategies as ast } from '@ditfa/strategy-ast';
import { strategies as wars } from '@ditfa/strategy-wars';

const steps = Number(process.env.STEPS ?? 10);
const thresholds = (process.env.THRESHOLDS ?? 'D2,D4,D6').split(',');
const config = ditConfig({ inputSize: 16, patchSize: 2, inChannels: 4, hiddenSize: 64, depth: 28, numHeads: 4, mlpRatio: 4, numClasses: 10, learnSigma: true });
let backend = createReferenceBackend();
try {
  const cpu = await import('@ditfa/kernels-cpu/base');
  backend = cpu.createCpuBackend();
} catch {
  // reference backend: slower, same counts
}
const model = await loadModel(randomCheckpoint(config, { seed: 11 }), { config });
const pipe = createPipeline(model, { strategies: [...wars(), ...ast(), ...asc()], backend });
const request = { classLabels: [1, 4, 7, 9], seed: 3, steps, guidanceScale: 4 };

const machine = { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, backend: backend.name, load: os.loadavg() };
console.log(`planner bench: DiT-shaped (${config.depth} blocks, ${(config.inputSize / config.patchSize) ** 2} tokens, hidden ${config.hiddenSize}), ${steps} steps, 4 calibration samples with CFG`);
console.log(`machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, backend ${machine.backend}, load ${machine.load.map((l) => l.toFixed(1)).join(' ')}`);
const results = [];
for (const threshold of thresholds) {
  const row = { threshold };
  const plans = {};
  for (const mode of ['naive', 'prefix']) {
    const t0 = performance.now();
    const plan = await searchPlan(pipe.calibrationTarget(request), { threshold, mode });
    row[mode] = { layerEvaluations: plan.totals.layerEvaluations, seconds: (performance.now() - t0) / 1000, attentionFlopsFraction: plan.totals.attentionFlopsFraction };
    plans[mode] = JSON.stringify(plan.steps.map((r) => r.map((e) => e.method)));
  }
  row.identicalPlans = plans.naive === plans.prefix;
  row.evaluationRatio = row.prefix.layerEvaluations / row.naive.layerEvaluations;
  row.timeRatio = row.prefix.seconds / row.naive.seconds;
  results.push(row);
  console.log(
    `${threshold}: naive ${row.naive.layerEvaluations} evaluations in ${row.naive.seconds.toFixed(1)} s, prefix ${row.prefix.layerEvaluations} in ${row.prefix.seconds.toFixed(1)} s → ` +
      `${row.evaluationRatio.toFixed(3)}× evaluations (goal ≤ 0.55), ${row.timeRatio.toFixed(3)}× time; identical plans: ${row.identicalPlans}; attention FLOPs ${(100 * row.prefix.attentionFlopsFraction).toFixed(1)} %`,
  );
}
await pipe.dispose();
const out = path.resolve(new URL('../../../bench/results', import.meta.url).pathname);
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'planner-prefix-reuse.json'), `${JSON.stringify({ benchmark: 'planner-prefix-reuse', date: new Date().toISOString(), machine, config, steps, results }, null, 2)}\n`);
console.log(`written to ${path.join(out, 'planner-prefix-reuse.json')}`);
