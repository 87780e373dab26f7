import { CacheOverlay, uniformPlanView } from '@ditfa/core';
import { asc } from '@ditfa/strategy-asc';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { ditConfig } from '../src/config.js';
import { loadModel } from '../src/load.js';
import { createPipeline } from '../src/pipeline.js';
import { randomCheckpoint } from '../src/random.js';
import { maxRelError } from './fixtures.js';

// @ditfa/planner depends on this package (its integration tests run searchPlan on this target), so
// the target is driven by hand here, the way the planner drives it.
const config = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 3, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });

describe('Pipeline.calibrationTarget (the CalibrationTarget of the planner)', () => {
  it('replays generate() step by step, and trials from a stored prefix leave the caches untouched', async () => {
    const model = await loadModel(randomCheckpoint(config, { seed: 21 }), { config, threads: 1 });
    const pipe = createPipeline(model, { strategies: [wars(), ast(), ...asc()] });
    try {
      const gen = { classLabels: [1, 4], seed: 3, steps: 3, guidanceScale: 4 } as const;
      const target = pipe.calibrationTarget(gen);
      expect(target.fingerprint).toEqual(pipe.fingerprint(gen));
      expect(target.attentionShape(0)).toMatchObject({ batch: 4, tokens: 16, channels: 32, cfg: true });
      const { cache } = await target.begin();
      const plan = uniformPlanView(3, 3, 'wars');
      let last = null;
      for (let step = 0; step < 3; step++) {
        const methodFor = (b: number): string => plan.methodAt(step, b)!;
        const h0 = await target.embed(step);
        const h1 = await target.runBlocks(h0, 0, 1, { step, methodFor, plan, cache });
        if (step > 0) {
          // a trial of block 1 from the stored prefix, through an overlay: the real caches stay as they were
          const before = cache.entries();
          const trial = await target.runBlocks(h1, 1, 3, { step, methodFor: () => 'full+asc', plan, cache: new CacheOverlay(cache) });
          expect(trial.block).toBe(3);
          expect(cache.entries()).toEqual(before);
        }
        const end = await target.runBlocks(h1, 1, 3, { step, methodFor, plan, cache });
        last = await target.output(end, step);
        await target.advance(step, last);
      }
      expect(last!.shape).toEqual([4, 8, 8, 8]);
      const fp = pipe.fingerprint(gen);
      const doc = {
        format: 'ditfa-plan', version: 1, fingerprint: fp, threshold: { delta: 0.1 }, candidates: ['wars'], numBlocks: 3,
        steps: [0, 1, 2].map((s) => [0, 1, 2].map((b) => ({ method: plan.methodAt(s, b)!, loss: null, flopsFraction: 1 }))),
        totals: { attentionFlopsFraction: 1 },
      } as const;
      const viaGenerate = await pipe.generate({ ...gen, plan: doc, images: false });
      // drive it once more and compare the final sample with generate()'s
      const again = pipe.calibrationTarget(gen);
      const c2 = (await again.begin()).cache;
      let out = null;
      let x = null;
      for (let step = 0; step < 3; step++) {
        const h = await again.runBlocks(await again.embed(step), 0, 3, { step, methodFor: (b) => plan.methodAt(step, b)!, plan, cache: c2 });
        out = await again.output(h, step);
        await again.advance(step, out);
      }
      x = again.latents();
      expect(maxRelError(x!.data, viaGenerate.latents.data)).toBe(0);
    } finally {
      await pipe.dispose();
    }
  });
});
