import {
  CacheManager,
  StrategyRegistry,
  cacheNeededAhead,
  checkStrategySet,
  fullStrategy,
  maxAbsDiff,
  referenceAttention,
  referenceWindowAttention,
  sliceBatch,
  strategyRegistry,
  strategySet,
  type StrategyEvent,
} from '@ditfa/core';
import { countingBackend, createToyModel, randomTensor, runToyPipeline, toyContext } from '@ditfa-examples/toy-pipeline';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { PROJECTED_CACHE, ast, register, strategies } from '../src/index.js';

const model = createToyModel({ blocks: 2, tokens: 12, heads: 2, headDim: 4 });
const window = { kind: '1d', size: 2 } as const;
const shape = [2, 12, 2, 4] as const;
const set = strategySet([...warsStrategies(), ...strategies()]);
const both = (methods: string[]) => methods.map((m) => [m, m]);
const projectedBytes = (B: number) => B * 12 * 8 * 4;

describe('ast (AST)', () => {
  it('returns exactly the projected output cached at the last computed step, with no q/k/v or out-projection', async () => {
    const { backend, calls } = countingBackend();
    const run = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan: both(['full', 'ast', 'ast', 'full', 'ast']), strategies: set, window, backend });
    for (const t of run.trace) {
      const computed = [0, 3].includes(t.step);
      expect([t.need, t.qkvRows, t.outProjectionRows, t.result.kind]).toEqual(computed ? ['all', 4, 4, 'attention'] : ['none', 0, 0, 'projected']);
    }
    const at = (step: number, block: number) => run.trace.find((t) => t.step === step && t.block === block)!;
    for (const block of [0, 1]) {
      expect(at(1, block).output!.data).toEqual(at(0, block).projected!.data);
      expect(at(2, block).output!.data).toEqual(at(0, block).projected!.data);
      expect(at(4, block).output!.data).toEqual(at(3, block).projected!.data);
      expect(maxAbsDiff(at(3, block).projected!.data, at(0, block).projected!.data)).toBeGreaterThan(1e-3);
    }
    expect(run.counts).toEqual({ qkvRows: 2 * 2 * 4, outProjectionRows: 2 * 2 * 4, outProjectionCalls: 4 });
    expect(calls.attention).toBe(4);
    expect(run.events).toEqual([]);
    // one [B, L, C] output per block at a time, dropped after the last AST step
    expect(run.cache.peakBytes).toBe(2 * projectedBytes(4));
    expect(run.cache.currentBytes).toBe(0);
  });

  it('keeps an output only when the next step reuses it, with exact bytes', async () => {
    const cache = new CacheManager();
    const methods = ['full', 'wars', 'ast', 'full'];
    const s = ast();
    const output = randomTensor([2, 12, 8], 1);
    s.observe!(toyContext({ methods, step: 0, strategies: set, window, shape, cache }), { kind: 'projected', output });
    expect(cache.currentBytes).toBe(0);
    s.observe!(toyContext({ methods, step: 1, strategies: set, window, shape, cache }), { kind: 'projected', output });
    expect(cache.entries()).toEqual([{ layer: 0, kind: PROJECTED_CACHE, bytes: output.data.byteLength }]);
    expect(cache.scope(0).get(PROJECTED_CACHE)).not.toBe(output); // a copy: the adapter owns its buffer
    const ctx = toyContext({ methods, step: 2, strategies: set, window, shape, cache });
    expect(s.needs(ctx)).toBe('none');
    const result = await s.run(ctx, null);
    expect(result.kind === 'projected' && result.output.data).toEqual(output.data);
    expect(cache.currentBytes).toBe(0);
  });

  it('leaves the WA-RS residual untouched', async () => {
    const run = await runToyPipeline({ model, samples: [3], cfg: 'cond-second', plan: both(['full', 'ast', 'wars', 'ast']), strategies: set, window });
    const at = (step: number) => run.trace.find((t) => t.step === step && t.block === 0)!;
    const r = at(0).inputs!;
    const residual = referenceAttention(r.q, r.k, r.v).data.map((x, i) => x - referenceWindowAttention(r.q, r.k, r.v, window).data[i]!);
    const w = at(2).inputs!;
    const expected = referenceWindowAttention(w.q, w.k, w.v, window).data.map((x, i) => x + residual[i]!);
    expect(maxAbsDiff(at(2).output!.data, expected)).toBeLessThan(1e-6);
    // and step 3 reuses the output of step 2, the most recent computed step
    expect(at(3).output!.data).toEqual(at(2).projected!.data);
  });

  it('gives each sample of a batch what it gives alone', async () => {
    const plan = both(['full', 'ast', 'full', 'ast', 'ast']);
    const batch = await runToyPipeline({ model, samples: [4, 5, 6], cfg: 'cond-first', plan, strategies: set, window });
    for (const [i, seed] of [4, 5, 6].entries()) {
      const alone = await runToyPipeline({ model, samples: [seed], cfg: 'cond-first', plan, strategies: set, window });
      expect(maxAbsDiff(sliceBatch(batch.latents, i, i + 1).data, alone.latents.data)).toBeLessThan(1e-6);
    }
  });

  it('falls back to full attention for the block when the budget refuses the output, and says so', async () => {
    const plan = both(['full', 'ast', 'ast']);
    const raw = await runToyPipeline({ model, samples: [1], cfg: 'cond-first', plan: both(['full', 'full', 'full']), strategies: set, window });
    // room for one block's output: block 0 reuses, block 1 computes
    const run = await runToyPipeline({ model, samples: [1], cfg: 'cond-first', plan, strategies: set, window, cache: new CacheManager({ budgetBytes: projectedBytes(2) }) });
    expect(run.events.map((e) => [e.type, e.step, e.layer])).toEqual([
      ['cache-refused', 0, 1],
      ['fallback', 1, 1],
      ['cache-refused', 1, 1],
      ['fallback', 2, 1],
    ]);
    expect(run.events[1]).toMatchObject({ method: 'ast', to: 'full' });
    expect(run.trace.filter((t) => t.block === 1).map((t) => t.qkvRows)).toEqual([2, 2, 2]);
    expect(run.cache.peakBytes).toBe(projectedBytes(2));
    const none = await runToyPipeline({ model, samples: [1], cfg: 'cond-first', plan, strategies: set, window, cache: new CacheManager({ budgetBytes: 0 }) });
    expect(maxAbsDiff(none.latents.data, raw.latents.data)).toBeLessThan(1e-6);
  });

  it('asks for q/k/v when nothing is cached and refuses to run without them', async () => {
    const ctx = toyContext({ methods: ['full', 'ast'], step: 1, strategies: set, window, shape });
    expect(ast().needs(ctx)).toBe('all');
    await expect(ast().run(ctx, null)).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT', message: expect.stringContaining('received null') });
  });

  it('costs no attention FLOPs and registers explicitly', () => {
    expect(ast().flops({ batch: 4, tokens: 16, channels: 8, cfg: true, window })).toBe(0);
    expect(ast().flops({ batch: 4, tokens: 16, kvTokens: 7, channels: 8, cfg: true, window: null })).toBe(0);
    expect(strategyRegistry.get('ast')).toBeUndefined();
    const registry = new StrategyRegistry();
    register(registry);
    register(registry);
    expect(registry.names()).toEqual(['ast']);
    expect(strategies()).toBe(strategies());
    expect(registry.get('ast')?.caches).toEqual({ reads: [PROJECTED_CACHE], writes: [], observes: [PROJECTED_CACHE] });
    expect(ast().appliesTo).toBeUndefined();
  });

  it('declares its cache so that core keeps an output exactly until the next computed step', () => {
    // AST writes its own cache from observe(): it works beside core's plain full, with no companion
    expect(() => checkStrategySet(strategySet([fullStrategy(), ast()]))).not.toThrow();
    const ahead = (methods: (string | undefined)[], step: number) =>
      cacheNeededAhead({ step, numSteps: methods.length, layer: 0, plan: { numSteps: methods.length, numLayers: 1, methodAt: (t) => methods[t] }, strategies: set }, PROJECTED_CACHE);
    expect(ahead(['full', 'ast', 'ast', 'full'], 0)).toBe(true);
    expect(ahead(['full', 'ast', 'ast', 'full'], 1)).toBe(true);
    expect(ahead(['full', 'ast', 'ast', 'full'], 2)).toBe(false);
    // any computed step refreshes it (it is observed), so an AST step two steps later does not keep it
    expect(ahead(['full', 'wars', 'ast'], 0)).toBe(false);
    // undecided (calibration): kept
    expect(ahead(['full', undefined], 0)).toBe(true);
  });

  it('reports events with the computed step as method when the budget refuses in observe', () => {
    const events: StrategyEvent[] = [];
    const cache = new CacheManager({ budgetBytes: 10 });
    ast().observe!(toyContext({ methods: ['full', 'ast'], step: 0, strategies: set, window, shape: [1, 12, 2, 4], cache, events }), { kind: 'projected', output: randomTensor([1, 12, 8], 2) });
    expect(events).toEqual([{ type: 'cache-refused', step: 0, layer: 0, method: 'full', kind: PROJECTED_CACHE, bytes: 12 * 8 * 4 }]);
  });
});
