// What a library user writes after `npm install` of the packed tarballs (run by .ci/plain-npm.sh in an
// empty npm project): a 4-step generation of the bundled model under a plan built with core's builder,
// on the native CPU kernels, in-thread and in a worker thread. Exits non-zero with the reason on failure.
import assert from 'node:assert/strict';
import { buildPlan } from '@ditfa/core';
import { cpuBackendStatus } from '@ditfa/kernels-cpu'; // registers the native CPU kernels
import { createPipeline, loadModel } from '@ditfa/models-dit';
import { openWorkerPipeline } from '@ditfa/models-dit/worker';
import { strategies } from '@ditfa/strategy-wars';

const modelDir = process.argv[2];
assert.ok(modelDir, 'usage: node generate.mjs <models/fashion-dit>');

const status = cpuBackendStatus();
assert.ok(status.available, `the native CPU kernels did not build at install:\n  ${status.errors.join('\n  ')}\n${status.remedy}`);

const events = [];
const pipe = createPipeline(await loadModel(modelDir), { strategies: strategies(), onEvent: (e) => events.push(e) });
const options = { classLabels: [1, 7], seed: 0, steps: 4, guidanceScale: 4 };
const plan = buildPlan({ fingerprint: pipe.fingerprint(options), layers: pipe.layers(options), strategies: pipe.strategies, method: (step) => (step === 0 ? 'full' : 'wars') });
const result = await pipe.generate({ ...options, plan });
await pipe.dispose();

const backend = events.find((e) => e.type === 'backend');
assert.deepEqual(backend, { type: 'backend', name: 'cpu' }, `expected the native "cpu" backend but got ${JSON.stringify(backend)}`);
assert.deepEqual(result.latents.shape, [2, 1, 32, 32]);
assert.ok(result.latents.data.every(Number.isFinite), 'the latents hold NaN or Inf');
assert.equal(result.png?.length, 2);
assert.equal(result.attention.fallbacks, 0);
assert.equal(result.attention.fraction, plan.totals.attentionFlopsFraction);

// the same generation in a worker thread, resolving the packages from this project
const worker = await openWorkerPipeline(modelDir, { strategies: [{ module: '@ditfa/strategy-wars', export: 'strategies' }], imports: ['@ditfa/kernels-cpu'], parentURL: import.meta.url });
const there = await worker.generate({ ...options, plan });
assert.equal((await worker.backend()).name, 'cpu');
await worker.dispose();
assert.deepEqual(Array.from(there.latents.data), Array.from(result.latents.data), 'the worker generated other latents');

process.stdout.write(`plain npm: 2 samples × 4 steps on the "cpu" backend, attention FLOPs ${(100 * result.attention.fraction).toFixed(1)} % of raw under a wars plan; the worker pipeline agrees bit for bit\n`);
