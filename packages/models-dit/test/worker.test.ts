import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
// The native CPU kernels, registered here as the worker registers them there (`imports`).
import '@ditfa/kernels-cpu';
import { DitfaError, ErrorCode, buildPlan } from '@ditfa/core';
import type { PipelineEvent, StepEvent } from '@ditfa/pipeline';
import type { WorkerPipeline } from '@ditfa/pipeline/worker';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/load.js';
import { type GenerateOptions, type Pipeline, createPipeline } from '../src/pipeline.js';
import { openWorkerPipeline } from '../src/worker.js';

// The bundled model (models/fashion-dit) in-thread and in a worker thread; the worker runs the build.
const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../models/fashion-dit');
const present = existsSync(path.join(dir, 'weights.safetensors'));
const built = existsSync(fileURLToPath(new URL('../dist/worker.js', import.meta.url)));

const refs = ['@ditfa/strategy-wars', '@ditfa/strategy-ast', '@ditfa/strategy-asc'].map((module) => ({ module, export: 'strategies' }));
const request = { classLabels: [3, 8], seed: 5, steps: 4, guidanceScale: 4 } satisfies GenerateOptions;

describe.skipIf(!present || !built)('models/fashion-dit in a worker thread', () => {
  let here: Pipeline;
  let there: WorkerPipeline<GenerateOptions>;
  const events: PipelineEvent[] = [];

  beforeAll(async () => {
    // one onnxruntime thread on each side: the same summation order whatever the machine's load
    here = createPipeline(await loadModel(dir, { threads: 1 }), { strategies: [...warsStrategies(), ...astStrategies(), ...ascStrategies()] });
    there = await openWorkerPipeline(dir, { threads: 1, strategies: refs, imports: ['@ditfa/kernels-cpu'], parentURL: import.meta.url, onEvent: (e) => events.push(e) });
  });
  afterAll(async () => {
    await here?.dispose();
    await there?.dispose();
  });

  it('reports the model and its configuration', async () => {
    expect(there.model.architecture).toBe(here.model.architecture);
    expect(there.model.weightsHash).toBe(here.model.weightsHash);
    expect(there.model.config).toEqual(here.model.config);
    expect(await there.fingerprint(request)).toEqual(here.fingerprint(request));
  });

  it('generates bit for bit what the in-thread pipeline generates, under a plan, on the same kernel backend', async () => {
    const plan = buildPlan({
      fingerprint: here.fingerprint(request),
      layers: here.layers(request),
      strategies: here.strategies,
      method: (step, layer) => (step === 0 ? 'full' : step === 2 ? 'ast' : layer.block % 2 === 0 ? 'wars+asc' : 'full+asc'),
    });
    const progress: StepEvent[] = [];
    const a = await here.generate({ ...request, plan });
    const b = await there.generate({ ...request, plan, onProgress: (e) => progress.push(e) });
    expect(b.latents.shape).toEqual([2, 1, 32, 32]);
    expect(Buffer.from(b.latents.data.buffer).equals(Buffer.from(a.latents.data.buffer))).toBe(true);
    expect(b.png!.map((p) => Buffer.from(p).toString('base64'))).toEqual(a.png!.map((p) => Buffer.from(p).toString('base64')));
    expect(b.attention).toEqual(a.attention);
    expect(b.attention.fraction).toBe(plan.totals.attentionFlopsFraction);
    expect(progress.map((e) => e.step)).toEqual([1, 2, 3, 4]);
    expect(events.find((e) => e.type === 'backend')).toEqual({ type: 'backend', name: (await here.backend()).name });
  });

  it('aborts with name AbortError and our code; errors arrive with their code', async () => {
    const controller = new AbortController();
    const progress: number[] = [];
    const error = (await there
      .generate({ ...request, steps: 40, signal: controller.signal, onProgress: (e) => (progress.push(e.step), e.step === 1 && controller.abort()) })
      .then(
        () => null,
        (e: unknown) => e,
      )) as DitfaError;
    expect(error).toBeInstanceOf(DitfaError);
    expect([error.name, error.code]).toEqual(['AbortError', ErrorCode.Aborted]);
    // the step in flight when the signal fired is the last that can report
    expect(progress.length).toBeLessThanOrEqual(2);
    const bad = (await there.generate({ ...request, classLabels: [10] }).then(
      () => null,
      (e: unknown) => e,
    )) as DitfaError;
    const same = (await here.generate({ ...request, classLabels: [10] }).then(
      () => null,
      (e: unknown) => e,
    )) as DitfaError;
    expect(bad).toBeInstanceOf(DitfaError);
    expect([bad.code, bad.name, bad.message]).toEqual([same.code, same.name, same.message]);
    expect(bad.code).toBe(ErrorCode.InvalidArgument);
  });
});
