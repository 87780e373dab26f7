import { CacheManager, fullStrategy, maxAbsDiff, sliceBatch, strategySet, type Tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { countingBackend, createToyModel, runToyPipeline } from '../src/index.js';

const model = createToyModel({ blocks: 2, tokens: 8, heads: 2, headDim: 4 });
const strategies = strategySet([fullStrategy()]);
const window = { kind: '1d', size: 1 } as const;
const full = (steps: number): string[][] => Array.from({ length: steps }, () => ['full', 'full']);
const sample = (t: Tensor, i: number): Float32Array => sliceBatch(t, i, i + 1).data;

describe('the toy pipeline driver', () => {
  it('projects q/k/v and out-projects every row at full attention, and computes no residual', async () => {
    const { backend, calls } = countingBackend();
    const run = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan: full(3), strategies, window, backend });
    expect(run.batch).toBe(4);
    expect(run.counts).toEqual({ qkvRows: 3 * 2 * 4, outProjectionRows: 3 * 2 * 4, outProjectionCalls: 6 });
    expect(calls).toEqual({ attention: 6, windowAttention: 0, fullWithResidual: 0, windowWithResidual: 0 });
    expect(run.cache.peakBytes).toBe(0);
  });

  it('gives each sample of a batch what it gives alone, for both CFG orders', async () => {
    const batch = await runToyPipeline({ model, samples: [5, 6, 7], cfg: 'cond-first', plan: full(2), strategies, window });
    const second = await runToyPipeline({ model, samples: [5, 6, 7], cfg: 'cond-second', plan: full(2), strategies, window });
    for (const [i, seed] of [5, 6, 7].entries()) {
      const alone = await runToyPipeline({ model, samples: [seed], cfg: 'cond-first', plan: full(2), strategies, window });
      expect(maxAbsDiff(sample(batch.latents, i), sample(alone.latents, 0))).toBe(0);
      expect(maxAbsDiff(sample(second.latents, i), sample(alone.latents, 0))).toBe(0);
    }
  });

  it('makes samples and steps differ (so equalities in strategy tests are not vacuous)', async () => {
    const run = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan: full(2), strategies, window, cache: new CacheManager() });
    expect(maxAbsDiff(sample(run.latents, 0), sample(run.latents, 1))).toBeGreaterThan(1e-3);
    const [a, b] = [run.trace[0]!.inputs!.q, run.trace[2]!.inputs!.q];
    expect(maxAbsDiff(a.data, b.data)).toBeGreaterThan(1e-3);
    // the two CFG halves differ too
    const q = run.trace[0]!.inputs!.q;
    expect(maxAbsDiff(sliceBatch(q, 0, 2).data, sliceBatch(q, 2, 4).data)).toBeGreaterThan(1e-3);
  });

  it('refuses a plan naming an unknown method', async () => {
    await expect(runToyPipeline({ model, samples: [1], cfg: null, plan: [['full', 'nope']], strategies, window })).rejects.toMatchObject({
      code: 'ERR_DITFA_STRATEGY_NOT_FOUND',
    });
  });
});
