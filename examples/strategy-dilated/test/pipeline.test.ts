import { createReferenceBackend, serializePlan, parsePlan, strategySet, validatePlan } from '@ditfa/core';
import { createPipeline, ditConfig, loadModel, randomCheckpoint } from '@ditfa/models-dit';
import { searchPlan, type CalibrationTarget } from '@ditfa/planner';
import { describe, expect, it } from 'vitest';
import { registerKernels, strategies } from '../src/index.js';

/**
 * The plugin as a user meets it: a planner candidate on a real model adapter (models-dit with a small
 * random DiT), then a generation under the plan it chose.
 */
describe('the dilated plugin in a calibration and a generation', () => {
  it('is chosen by the planner when it is the most compressive candidate that passes, and runs in generate()', async () => {
    registerKernels();
    const config = ditConfig({ inputSize: 16, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 2, numClasses: 10, learnSigma: true });
    const model = await loadModel(randomCheckpoint(config, { seed: 5 }), { config });
    const pipe = createPipeline(model, { strategies: [...strategies()], backend: createReferenceBackend() });
    const request = { classLabels: [1, 2], seed: 0, steps: 3, guidanceScale: 4 };
    const plan = await searchPlan(pipe.calibrationTarget(request) as CalibrationTarget<unknown>, { threshold: 1e9, candidates: ['dilated'] });
    expect(plan.candidates).toEqual(['dilated']);
    expect(plan.steps.slice(1).flat().every((e) => e.method === 'dilated')).toBe(true);
    expect(plan.totals.attentionFlopsFraction).toBeLessThan(1);
    // a saved plan naming the plugin validates when the plugin is known, and not otherwise
    const reloaded = parsePlan(serializePlan(plan), { methods: strategySet([...strategies()]) });
    expect(() => validatePlan(JSON.parse(serializePlan(plan)))).toThrow(/unknown method "dilated"/);
    const planned = await pipe.generate({ ...request, plan: reloaded });
    const raw = await pipe.generate(request);
    expect(planned.latents.shape).toEqual(raw.latents.shape);
    expect(planned.latents.data.some((v, i) => v !== raw.latents.data[i])).toBe(true);
    await pipe.dispose();
  });
});
