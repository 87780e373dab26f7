import { searchPlan } from '@ditfa/planner';
import { asc } from '@ditfa/strategy-asc';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { ditConfig } from '../src/config.js';
import { loadModel } from '../src/load.js';
import { createPipeline } from '../src/pipeline.js';
import { randomCheckpoint } from '../src/random.js';

const config = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 3, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });

describe('the planner drives the pipeline (CalibrationTarget)', () => {
  it('searches a plan that generate() then accepts, in prefix and naive mode alike', async () => {
    const model = await loadModel(randomCheckpoint(config, { seed: 21 }), { config, threads: 1 });
    const pipe = createPipeline(model, { strategies: [wars(), ast(), ...asc()] });
    try {
      const gen = { classLabels: [1, 4], seed: 3, steps: 4, guidanceScale: 4 } as const;
      const plan = await searchPlan(pipe.calibrationTarget(gen), { threshold: 'D6' });
      const naive = await searchPlan(pipe.calibrationTarget(gen), { threshold: 'D6', mode: 'naive' });
      expect(plan.steps.map((r) => r.map((e) => e.method))).toEqual(naive.steps.map((r) => r.map((e) => e.method)));
      expect(plan.fingerprint).toEqual(pipe.fingerprint(gen));
      expect(plan.steps[0]!.every((e) => e.method === 'full')).toBe(true);
      expect(plan.totals.attentionFlopsFraction).toBeLessThan(1);
      const r = await pipe.generate({ ...gen, plan, images: false });
      expect(r.latents.data.every(Number.isFinite)).toBe(true);
    } finally {
      await pipe.dispose();
    }
  });
});
