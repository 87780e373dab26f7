import { CacheManager, checkStrategySet, maxAbsDiff, sliceBatch, strategySet, type CfgOrder } from '@ditfa/core';
import { countingBackend, createToyModel, runToyPipeline } from '@ditfa-examples/toy-pipeline';
import { PROJECTED_CACHE, ast } from '@ditfa/strategy-ast';
import { RESIDUAL_CACHE, fullWithResidual, wars } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { fullAsc, warsAsc } from '../src/index.js';

// Every built-in method in one plan, per block (3 blocks, 8 steps).
const plan = [
  ['full', 'full', 'full'],
  ['ast', 'wars+asc', 'full+asc'],
  ['full+asc', 'wars', 'ast'],
  ['wars', 'ast', 'wars+asc'],
  ['wars+asc', 'wars+asc', 'full'],
  ['ast', 'full+asc', 'wars'],
  ['full', 'wars', 'ast'],
  ['ast', 'ast', 'full+asc'],
];
const model = createToyModel({ blocks: 3, tokens: 12, heads: 2, headDim: 4, seed: 5 });
const window = { kind: '1d', size: 2 } as const;
const strategies = strategySet([fullWithResidual(), wars(), ast(), fullAsc(), warsAsc()]);

describe('every strategy in one generation (toy driver)', () => {
  it('is a consistent strategy set: every cache read has a writer', () => {
    expect(() => checkStrategySet(strategies)).not.toThrow();
  });

  it('gives each sample of a batch of n calibration samples what it gives alone, for both CFG orders', async () => {
    const seeds = [11, 12, 13];
    for (const cfg of ['cond-first', 'cond-second'] as CfgOrder[]) {
      const batch = await runToyPipeline({ model, samples: seeds, cfg, plan, strategies, window });
      expect(batch.events).toEqual([]);
      for (const [i, seed] of seeds.entries()) {
        const alone = await runToyPipeline({ model, samples: [seed], cfg, plan, strategies, window });
        expect(maxAbsDiff(sliceBatch(batch.latents, i, i + 1).data, alone.latents.data)).toBeLessThan(1e-6);
      }
    }
  });

  it('keeps cache bytes equal to the cached tensors at every block, and frees everything by the end', async () => {
    let peakSeen = 0;
    const run = await runToyPipeline({
      model,
      samples: [1, 2],
      cfg: 'cond-second',
      plan,
      strategies,
      window,
      afterBlock: (_t, cache) => {
        let tensors = 0;
        for (let b = 0; b < 3; b++) for (const kind of [RESIDUAL_CACHE, PROJECTED_CACHE]) tensors += cache.scope(b).get(kind)?.data.byteLength ?? 0;
        expect(cache.currentBytes).toBe(tensors);
        expect(cache.entries().reduce((s, e) => s + e.bytes, 0)).toBe(tensors);
        peakSeen = Math.max(peakSeen, tensors);
      },
    });
    expect(run.cache.currentBytes).toBe(0);
    expect(run.cache.peakBytes).toBe(peakSeen);
    expect(peakSeen).toBeGreaterThan(0);
  });

  it('does only the dense work each method asks for', async () => {
    const { backend, calls } = countingBackend();
    const run = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan, strategies, window, backend });
    const B = 4;
    const expected = { none: 0, conditional: B / 2, all: B } as const;
    for (const t of run.trace) {
      const want = t.method === 'ast' ? 'none' : t.method.endsWith('+asc') ? 'conditional' : 'all';
      expect([t.method, t.need, t.qkvRows, t.outProjectionRows]).toEqual([t.method, want, expected[want], expected[want]]);
    }
    const count = (m: string) => plan.flat().filter((x) => x === m).length;
    expect(run.counts.outProjectionCalls).toBe(plan.flat().length - count('ast'));
    expect(calls.windowWithResidual).toBeGreaterThan(0);
    expect(calls.windowAttention).toBe(0);
  });

  it('falls back, and reports it, under a budget that fits some caches but not all', async () => {
    const full = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan, strategies, window });
    const budget = Math.floor(full.cache.peakBytes / 2);
    const run = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan, strategies, window, cache: new CacheManager({ budgetBytes: budget }) });
    expect(run.cache.peakBytes).toBeLessThanOrEqual(budget);
    const fallbacks = run.events.filter((e) => e.type === 'fallback');
    const refused = run.events.filter((e) => e.type === 'cache-refused');
    expect(fallbacks.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const f of fallbacks) {
      const t = run.trace.find((x) => x.step === f.step && x.layer === f.layer)!;
      expect(t.method).toBe(f.method);
      expect(t.need).toBe('all');
    }
  });
});
