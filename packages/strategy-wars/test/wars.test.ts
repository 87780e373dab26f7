import {
  CacheKind,
  CacheManager,
  StrategyRegistry,
  bandPairs1D,
  defineStrategy,
  fullStrategy,
  maxAbsDiff,
  referenceAttention,
  referenceWindowAttention,
  sliceBatch,
  strategyRegistry,
  strategySet,
  type StrategyEvent,
  type WindowSpec,
} from '@ditfa/core';
import { countingBackend, createToyModel, randomTensor, runToyPipeline, toyContext } from '@ditfa-examples/toy-pipeline';
import { describe, expect, it } from 'vitest';
import { defaultWindow, neighbourhoodWindow, register, strategies, wars, windowAttentionNoResidual } from '../src/index.js';

const set = strategySet([fullStrategy(), ...strategies()]);
const shape = [2, 12, 2, 4] as const;
const qkv = (seed: number) => ({ q: randomTensor(shape, seed), k: randomTensor(shape, seed + 1), v: randomTensor(shape, seed + 2) });

/** Runs `full` at step 0 of `methods` (refreshing the residual when the plan needs it), then `wars` at `step` on `at`. */
async function refreshThenWars(window: WindowSpec, methods: string[], step: number, from = qkv(1), at = from, cache = new CacheManager()) {
  const events: StrategyEvent[] = [];
  const ctx = (s: number) => toyContext({ methods, step: s, strategies: set, window, cache, events });
  const full = await fullStrategy().run(ctx(0), { rows: 'all', ...from });
  const out = await wars().run(ctx(step), { rows: 'all', ...at });
  if (out.kind !== 'attention') throw new Error('expected an attention result');
  return { full: full.kind === 'attention' ? full.output : null, out: out.output, events, cache };
}

describe('wars (WA-RS)', () => {
  it('equals full attention when the window covers every token (w >= L), even for other q/k/v', async () => {
    for (const window of [{ kind: '1d', size: 12 }, { kind: '1d', size: 11 }, { kind: '2d', rows: 4, cols: 3, radius: 3 }] as const) {
      const later = qkv(7);
      const { out } = await refreshThenWars(window, ['full', 'wars'], 1, qkv(1), later);
      expect(maxAbsDiff(out.data, referenceAttention(later.q, later.k, later.v).data)).toBeLessThan(1e-6);
    }
  });

  it('reproduces the full output to 1e-6 when its q/k/v equal those of the refresh step (1-D and 2-D windows)', async () => {
    for (const window of [{ kind: '1d', size: 2 }, neighbourhoodWindow(4, 3, 1)] as const) {
      const { full, out } = await refreshThenWars(window, ['full', 'ast', 'wars'], 2);
      expect(maxAbsDiff(out.data, full!.data)).toBeLessThan(1e-6);
      // and the window alone is far from it, so the residual did the work
      const { q, k, v } = qkv(1);
      expect(maxAbsDiff(referenceWindowAttention(q, k, v, window).data, full!.data)).toBeGreaterThan(1e-3);
    }
  });

  it('is window(q, k, v) + the cached residual for new q/k/v', async () => {
    const window = { kind: '1d', size: 2 } as const;
    const first = qkv(1);
    const later = qkv(9);
    const { out } = await refreshThenWars(window, ['full', 'wars'], 1, first, later);
    const residual = referenceAttention(first.q, first.k, first.v).data.map((x, i) => x - referenceWindowAttention(first.q, first.k, first.v, window).data[i]!);
    const expected = referenceWindowAttention(later.q, later.k, later.v, window).data.map((x, i) => x + residual[i]!);
    expect(maxAbsDiff(out.data, expected)).toBeLessThan(1e-6);
  });

  it('keeps the residual in the cache with exact bytes until its last reader, then drops it', async () => {
    const cache = new CacheManager();
    const window = { kind: '1d', size: 2 } as const;
    const methods = ['full', 'wars', 'wars', 'full'];
    const ctx = (s: number) => toyContext({ methods, step: s, strategies: set, window, cache });
    const { q, k, v } = qkv(1);
    await fullStrategy().run(ctx(0), { rows: 'all', q, k, v });
    const bytes = 2 * 12 * 2 * 4 * 4;
    expect(cache.entries()).toEqual([{ block: 0, kind: CacheKind.Residual, bytes }]);
    expect(cache.currentBytes).toBe(bytes);
    await wars().run(ctx(1), { rows: 'all', q, k, v });
    expect(cache.currentBytes).toBe(bytes); // step 2 still reads it
    await wars().run(ctx(2), { rows: 'all', q, k, v });
    expect(cache.currentBytes).toBe(0); // step 3 refreshes without a later reader
    expect(cache.peakBytes).toBe(bytes);
  });

  it('falls back to full attention and reports it when no residual is cached', async () => {
    const events: StrategyEvent[] = [];
    const window = { kind: '1d', size: 2 } as const;
    const { q, k, v } = qkv(3);
    const ctx = toyContext({ methods: ['full', 'wars'], step: 1, strategies: set, window, events });
    expect(wars().needs(ctx)).toBe('all');
    const out = await wars().run(ctx, { rows: 'all', q, k, v });
    expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceAttention(q, k, v).data)).toBeLessThan(1e-6);
    expect(events).toEqual([expect.objectContaining({ type: 'fallback', step: 1, block: 0, method: 'wars', to: 'full' })]);
  });

  it('rejects a missing input and a residual of another shape with coded errors', async () => {
    const cache = new CacheManager();
    const window = { kind: '1d', size: 2 } as const;
    const ctx = (s: number) => toyContext({ methods: ['full', 'wars'], step: s, strategies: set, window, cache });
    await expect(wars().run(ctx(1), null)).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT', message: expect.stringContaining('received null') });
    cache.scope(0).put(CacheKind.Residual, randomTensor([2, 12, 2, 8], 1));
    await expect(wars().run(ctx(1), { rows: 'all', ...qkv(1) })).rejects.toMatchObject({ code: 'ERR_DITFA_SHAPE_MISMATCH', message: expect.stringContaining('[2, 12, 2, 8]') });
    cache.scope(0).put(CacheKind.Residual, randomTensor([3, 12, 2, 4], 1));
    await expect(wars().run(ctx(1), { rows: 'all', ...qkv(1) })).rejects.toMatchObject({ code: 'ERR_DITFA_SHAPE_MISMATCH', message: expect.stringContaining('but it has 3 rows') });
    await expect(wars().run(ctx(1), { rows: 'conditional', ...qkv(1) })).rejects.toMatchObject({
      code: 'ERR_DITFA_INVALID_ARGUMENT',
      message: 'Expected q/k/v of every row for a batch without CFG but received the conditional rows only',
    });
  });

  it('counts exact band FLOPs, never zero', () => {
    const s = { batch: 4, tokens: 16, channels: 8, cfg: true, window: { kind: '1d', size: 2 } } as const;
    expect(bandPairs1D(16, 2)).toBe(16 * 5 - 2 * 3);
    expect(wars().flops(s)).toBe(4 * 4 * (16 * 5 - 6) * 8);
    expect(wars().flops({ ...s, window: { kind: '2d', rows: 4, cols: 4, radius: 1 } })).toBe(4 * 4 * (4 * 3 - 2) ** 2 * 8);
  });
});

describe('wars in a generation (toy driver)', () => {
  const model = createToyModel({ blocks: 2, tokens: 16, heads: 2, headDim: 4 });
  const window = { kind: '1d', size: 2 } as const;

  it('computes the residual only at full steps that a later WA-RS step reads (count kernel calls)', async () => {
    const { backend, calls } = countingBackend();
    const b0 = ['full', 'full', 'wars', 'full', 'wars', 'wars', 'full'];
    const plan = b0.map((m) => [m, 'full']);
    const run = await runToyPipeline({ model, samples: [1], cfg: 'cond-first', plan, strategies: set, window, backend });
    // block 0: attention at steps 0 and 6, the residual at steps 1 and 3 only; block 1: attention at every step
    expect(calls).toEqual({ attention: 2 + 7, fullWithResidual: 2, windowWithResidual: 3, windowAttention: 0 });
    expect(run.trace.filter((t) => t.block === 0 && t.method === 'wars').map((t) => t.step)).toEqual([2, 4, 5]);
    expect(run.events).toEqual([]);
    expect(run.cache.currentBytes).toBe(0);
    expect(run.cache.peakBytes).toBe(2 * 16 * 8 * 4);
  });

  it('with w >= L gives the raw model', async () => {
    const plan = ['full', 'wars', 'wars', 'full', 'wars'].map((m) => [m, m]);
    const raw = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan: plan.map((r) => r.map(() => 'full')), strategies: set, window });
    const all = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan, strategies: set, window: { kind: '1d', size: 16 } });
    const narrow = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan, strategies: set, window });
    expect(maxAbsDiff(all.latents.data, raw.latents.data)).toBeLessThan(1e-5);
    expect(maxAbsDiff(narrow.latents.data, raw.latents.data)).toBeGreaterThan(1e-4);
  });

  it('gives each sample of a batch what it gives alone', async () => {
    const plan = ['full', 'wars', 'wars', 'full', 'wars'].map((m) => [m, m]);
    const batch = await runToyPipeline({ model, samples: [4, 5, 6], cfg: 'cond-second', plan, strategies: set, window });
    for (const [i, seed] of [4, 5, 6].entries()) {
      const alone = await runToyPipeline({ model, samples: [seed], cfg: 'cond-second', plan, strategies: set, window });
      expect(maxAbsDiff(sliceBatch(batch.latents, i, i + 1).data, alone.latents.data)).toBeLessThan(1e-6);
    }
  });

  it('falls back to full attention for the block when the budget refuses the residual, and says so', async () => {
    const plan = ['full', 'wars', 'wars'].map((m) => [m, m]);
    const residualBytes = 2 * 16 * 8 * 4;
    const raw = await runToyPipeline({ model, samples: [1], cfg: 'cond-first', plan: plan.map((r) => r.map(() => 'full')), strategies: set, window });
    // room for one block's residual: block 0 gets WA-RS, block 1 falls back at both WA-RS steps
    const run = await runToyPipeline({ model, samples: [1], cfg: 'cond-first', plan, strategies: set, window, cache: new CacheManager({ budgetBytes: residualBytes }) });
    const fallbacks = run.events.filter((e) => e.type === 'fallback');
    expect(fallbacks.map((e) => [e.step, e.block, e.method, e.to])).toEqual([
      [1, 1, 'wars', 'full'],
      [2, 1, 'wars', 'full'],
    ]);
    expect(run.events.filter((e) => e.type === 'cache-refused').map((e) => [e.step, e.block])).toEqual([
      [0, 1],
      [1, 1],
    ]);
    expect(run.cache.peakBytes).toBe(residualBytes);
    expect(run.cache.refusals).toBe(2);
    // the fallback steps computed full attention on their own q/k/v
    for (const t of run.trace.filter((t) => t.block === 1)) {
      const { q, k, v } = t.inputs!;
      expect(maxAbsDiff(t.output!.data, referenceAttention(q, k, v).data)).toBeLessThan(1e-6);
    }
    // with no budget at all every WA-RS step falls back: the raw model
    const none = await runToyPipeline({ model, samples: [1], cfg: 'cond-first', plan, strategies: set, window, cache: new CacheManager({ budgetBytes: 0 }) });
    expect(none.events.filter((e) => e.type === 'fallback')).toHaveLength(4);
    expect(maxAbsDiff(none.latents.data, raw.latents.data)).toBeLessThan(1e-6);
  });
});

describe('window-no-residual (ablation baseline)', () => {
  it('is plain window attention, caches nothing, and differs from WA-RS', async () => {
    const window = { kind: '1d', size: 2 } as const;
    const cache = new CacheManager();
    const { q, k, v } = qkv(1);
    const ctx = toyContext({ methods: ['full', 'window-no-residual'], step: 1, strategies: set, window, cache });
    const out = await windowAttentionNoResidual().run(ctx, { rows: 'all', q, k, v });
    expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceWindowAttention(q, k, v, window).data)).toBe(0);
    expect(cache.peakBytes).toBe(0);
    const own = windowAttentionNoResidual({ window: { kind: '1d', size: 0 } });
    const diag = await own.run(ctx, { rows: 'all', q, k, v });
    expect(diag.kind === 'attention' && maxAbsDiff(diag.output.data, v.data)).toBeLessThan(1e-6);
    const { out: withResidual } = await refreshThenWars(window, ['full', 'wars'], 1, qkv(1));
    expect(out.kind === 'attention' && maxAbsDiff(out.output.data, withResidual.data)).toBeGreaterThan(1e-3);
  });

  it('counts the FLOPs of its own window', () => {
    const s = { batch: 2, tokens: 16, channels: 8, cfg: false, window: { kind: '1d', size: 2 } } as const;
    expect(windowAttentionNoResidual().flops(s)).toBe(wars().flops(s));
    expect(windowAttentionNoResidual({ window: { kind: '1d', size: 0 } }).flops(s)).toBe(4 * 2 * 16 * 8);
    expect(() => windowAttentionNoResidual({ window: { kind: '3d' } as never })).toThrow(/Expected a window .* but received object/);
  });
});

describe('windows and registration', () => {
  it('defaults to L/8 tokens per side and offers the 2-D neighbourhood', () => {
    expect(defaultWindow(1024)).toEqual({ kind: '1d', size: 128 });
    expect(defaultWindow(4096)).toEqual({ kind: '1d', size: 512 });
    expect(neighbourhoodWindow(32, 32)).toEqual({ kind: '2d', rows: 32, cols: 32, radius: 8 });
    expect(() => defaultWindow(0)).toThrow('Expected a positive integer for tokens but received 0 (number)');
    expect(() => neighbourhoodWindow(4, 4, -1)).toThrow('Expected a non-negative integer for radius but received -1 (number)');
  });

  it('registers nothing at import, registers explicitly and idempotently, and refuses a different "wars"', () => {
    expect(strategyRegistry.get('wars')).toBeUndefined();
    const registry = new StrategyRegistry();
    register(registry);
    register(registry);
    expect(registry.names()).toEqual(['wars', 'window-no-residual']);
    expect(registry.get('wars')?.traits).toEqual({ consumesResidual: true, refreshesResidual: false, reusesOutput: false });
    const impostor = defineStrategy({ name: 'wars', needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 });
    expect(() => registry.register(impostor)).toThrow(expect.objectContaining({ code: 'ERR_DITFA_STRATEGY_CONFLICT' }));
  });
});
