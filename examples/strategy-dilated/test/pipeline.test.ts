import { createReferenceBackend, parsePlan, serializePlan, strategySet, validatePlan, type PlanDocument } from '@ditfa/core';
import { createPipeline as createDitPipeline, ditConfig, loadModel, randomCheckpoint } from '@ditfa/models-dit';
import { type PipelineEvent, createPipeline } from '@ditfa/pipeline';
import { createGridModel } from '@ditfa/pipeline/testing';
import { searchPlan } from '@ditfa/planner';
import { asc } from '@ditfa/strategy-asc';
import { wars } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { registerKernels, strategies } from '../src/index.js';

const methods = (plan: PlanDocument): string[][] => plan.steps.map((row) => row.map((e) => e.method));

/**
 * The plugin as a user meets it: a planner candidate on the calibration target of `@ditfa/pipeline`
 * (over a real model adapter, a small random DiT of `@ditfa/models-dit`, and over the pipeline's toy
 * model with two attention sites per block), then a generation under the plan it chose.
 */
describe('the dilated plugin in a calibration and a generation', () => {
  it('is chosen by the planner on a DiT when it is the most compressive candidate that passes, and runs in generate()', async () => {
    registerKernels();
    const config = ditConfig({ inputSize: 16, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 2, numClasses: 10, learnSigma: true });
    const model = await loadModel(randomCheckpoint(config, { seed: 5 }), { config, threads: 1 });
    const events: PipelineEvent[] = [];
    // beside WA-RS (which brings its residual-refreshing `full`) and the ASC pair
    const pipe = createDitPipeline(model, { strategies: [...strategies(), wars(), ...asc()], backend: createReferenceBackend(), onEvent: (e) => events.push(e) });
    try {
      const request = { classLabels: [1, 2], seed: 0, steps: 3, guidanceScale: 4, images: false };
      const target = pipe.calibrationTarget(request);
      expect(target.layers.map((l) => l.id)).toEqual(['0.self', '1.self']);
      const plan = await searchPlan(target, { threshold: 1e9, candidates: ['full+asc', 'wars', 'dilated'] });
      // ordered by each method's own `flops` on the layer (64 tokens, window 8: dilation 2 sees 9 keys, WA-RS 17)
      expect(plan.candidates).toEqual(['dilated', 'wars', 'full+asc']);
      expect(plan.fingerprint).toEqual(pipe.fingerprint(request));
      expect(methods(plan)[0]).toEqual(['full', 'full']);
      expect(methods(plan).slice(1).flat().every((m) => m === 'dilated')).toBe(true);
      expect(plan.totals.attentionFlopsFraction).toBeLessThan(1);
      // a saved plan naming the plugin validates when the plugin is known, and not otherwise
      const reloaded = parsePlan(serializePlan(plan), { methods: pipe.strategies });
      expect(() => validatePlan(JSON.parse(serializePlan(plan)), { methods: strategySet([]) })).toThrow(/unknown method "dilated"/);
      const planned = await pipe.generate({ ...request, plan: reloaded });
      expect(events.filter((e) => e.type === 'fallback')).toEqual([]);
      expect(planned.attention.fraction).toBe(plan.totals.attentionFlopsFraction);
      const raw = await pipe.generate(request);
      expect(planned.latents.shape).toEqual(raw.latents.shape);
      expect(planned.latents.data.some((v, i) => v !== raw.latents.data[i])).toBe(true);
      expect(planned.latents.data.every(Number.isFinite)).toBe(true);
    } finally {
      await pipe.dispose();
    }
  });

  it('is a candidate per attention layer on a model with two sites per block (rows, then columns)', async () => {
    registerKernels();
    const model = createGridModel({ blocks: 2, height: 8, width: 12, heads: 2, headDim: 4, sites: ['rows', 'cols'], seed: 2 });
    const pipe = createPipeline(model, { strategies: strategies(), backend: createReferenceBackend() });
    const request = { classLabels: [3, 4], seed: 1, steps: 4, guidanceScale: 3, sampler: 'ddim' as const, images: false };
    const target = pipe.calibrationTarget(request);
    // rows: B·H rows of W = 12 tokens, columns: B·W rows of H = 8 tokens
    expect(target.layers.map((l) => [l.id, l.tokens])).toEqual([['0.rows', 12], ['0.cols', 8], ['1.rows', 12], ['1.cols', 8]]);
    expect(target.layers.every((l) => strategies()[0]!.appliesTo?.(l) ?? true)).toBe(true);
    const plan = await searchPlan(target, { threshold: 1e9, candidates: ['dilated'] });
    expect(plan.fingerprint.layers.map((l) => l.id)).toEqual(['0.rows', '0.cols', '1.rows', '1.cols']);
    expect(methods(plan).slice(1).flat().every((m) => m === 'dilated')).toBe(true);
    const planned = await pipe.generate({ ...request, plan });
    expect(planned.attention).toMatchObject({ fallbacks: 0, fraction: plan.totals.attentionFlopsFraction });
    expect(planned.attention.fraction).toBeLessThan(1);
    // nothing the plan needs is in any cache: dilated keeps none
    expect(planned.cache.peakBytes).toBe(0);
    // δ = 0 keeps full attention everywhere, and the run is the raw one
    const none = await searchPlan(pipe.calibrationTarget(request), { threshold: 0, candidates: ['dilated'] });
    expect(methods(none).flat().every((m) => m === 'full')).toBe(true);
    expect(Array.from((await pipe.generate({ ...request, plan: none })).latents.data)).toEqual(Array.from((await pipe.generate(request)).latents.data));
  });
});
