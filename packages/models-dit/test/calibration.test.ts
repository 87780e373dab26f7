import { CacheOverlay, type PlanDocument, type Tensor, planView, uniformPlanView } from '@ditfa/core';
import { asc } from '@ditfa/strategy-asc';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { ditConfig } from '../src/config.js';
import { loadModel } from '../src/load.js';
import { createPipeline } from '../src/pipeline.js';
import { randomCheckpoint } from '../src/random.js';
import { maxRelError } from './fixtures.js';

// @ditfa/planner drives this target in its own tests (on @ditfa/pipeline's toy model); here it is
// driven by hand on a real DiT adapter, the way the planner drives it.
const config = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 3, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });

describe('Pipeline.calibrationTarget (the CalibrationTarget of the planner) over the DiT adapter', () => {
  it('replays generate() step by step, and trials from a stored prefix leave the caches untouched', async () => {
    const model = await loadModel(randomCheckpoint(config, { seed: 21 }), { config, threads: 1 });
    const pipe = createPipeline(model, { strategies: [wars(), ast(), ...asc()] });
    try {
      const gen = { classLabels: [1, 4], seed: 3, steps: 3, guidanceScale: 4 } as const;
      const target = pipe.calibrationTarget(gen);
      expect(target.fingerprint).toEqual(pipe.fingerprint(gen));
      expect(target.numSteps).toBe(3);
      // one self-attention layer per block: 2 samples under CFG, (8/2)² tokens, 2 heads of 16, window L/8
      expect(target.layers.map((l) => l.id)).toEqual(['0.self', '1.self', '2.self']);
      expect(target.layers[0]).toMatchObject({ batch: 4, tokens: 16, heads: 2, headDim: 16, cfg: true, window: { kind: '1d', size: 2 } });
      const plan = uniformPlanView(3, 3, 'wars');
      const { cache } = await target.begin();
      for (let step = 0; step < 3; step++) {
        const methodFor = (j: number): string => plan.methodAt(step, j)!;
        const h0 = await target.embed(step);
        const h1 = await target.runLayers(h0, 0, 1, { step, methodFor, plan, cache });
        let same: Tensor | null = null;
        if (step > 0) {
          // trials of layers 1–2 from the stored prefix, through overlays: the real caches stay as they were
          const before = cache.entries();
          const trial = await target.runLayers(h1, 1, 3, { step, methodFor: () => 'full+asc', plan, cache: new CacheOverlay(cache) });
          expect(trial.block).toBe(3);
          same = (await target.runLayers(h1, 1, 3, { step, methodFor, plan, cache: new CacheOverlay(cache) })).hidden;
          expect(cache.entries()).toEqual(before);
          // every layer keeps its WA-RS residual until its last reader (layer 0 read it at step 2 already)
          expect(before.map((e) => `${e.layer}:${e.kind}`)).toEqual(step === 1 ? ['0:residual', '1:residual', '2:residual'] : ['1:residual', '2:residual']);
        }
        const end = await target.runLayers(h1, 1, 3, { step, methodFor, plan, cache });
        // a trial with the committed methods is the committed run
        if (same) expect(maxRelError(same.data, end.hidden.data)).toBe(0);
        const out = await target.output(end, step);
        expect(out.shape).toEqual([4, 8, 8, 8]);
        await target.advance(step, out);
      }
      // the last WA-RS steps dropped their residuals
      expect(cache.entries()).toEqual([]);
      const split = target.latents()!;

      // the same plan as a document, through generate()
      const fp = pipe.fingerprint(gen);
      const doc: PlanDocument = {
        format: 'ditfa-plan',
        version: 2,
        fingerprint: fp,
        threshold: { delta: 0.1 },
        candidates: ['wars'],
        steps: [0, 1, 2].map((s) => [0, 1, 2].map((j) => ({ method: plan.methodAt(s, j)!, loss: null, flopsFraction: 1 }))),
        totals: { attentionFlopsFraction: 1 },
      };
      expect(planView(doc).methodAt(1, 2)).toBe('wars');
      const viaGenerate = await pipe.generate({ ...gen, plan: doc, images: false });
      // the split run (prefix reuse + trials) is exactly generate()
      expect(maxRelError(split.data, viaGenerate.latents.data)).toBe(0);

      // and once more in one range per step, from a fresh begin()
      const again = pipe.calibrationTarget(gen);
      expect(again.latents()).toBeNull();
      const c2 = (await again.begin()).cache;
      for (let step = 0; step < 3; step++) {
        const h = await again.runLayers(await again.embed(step), 0, 3, { step, methodFor: (j) => plan.methodAt(step, j)!, plan, cache: c2 });
        await again.advance(step, await again.output(h, step));
      }
      expect(maxRelError(again.latents()!.data, viaGenerate.latents.data)).toBe(0);
    } finally {
      await pipe.dispose();
    }
  });
});
