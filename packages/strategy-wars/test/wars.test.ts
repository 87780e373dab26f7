import {
  CacheManager,
  StrategyRegistry,
  attentionFlops,
  bandPairs1D,
  checkStrategySet,
  createReferenceBackend,
  defineLayers,
  defineStrategy,
  executeAttention,
  fullStrategy,
  layerAttentionFlops,
  layerShape,
  maxAbsDiff,
  referenceAttention,
  referenceWindowAttention,
  sliceBatch,
  strategyRegistry,
  strategyContext,
  strategySet,
  tensor,
  windowFlops,
  type StrategyEvent,
  type WindowSpec,
} from '@ditfa/core';
import { countingBackend, createToyModel, randomTensor, runToyPipeline, toyContext } from '@ditfa-examples/toy-pipeline';
import { describe, expect, it } from 'vitest';
import {
  FULL_PRIORITY,
  RESIDUAL_CACHE,
  defaultWindow,
  fullWithResidual,
  neighbourhoodWindow,
  register,
  residualNeededAhead,
  strategies,
  supportsResidual,
  wars,
  windowAttentionNoResidual,
} from '../src/index.js';

const set = strategySet([...strategies()]);
const shape = [2, 12, 2, 4] as const;
const qkv = (seed: number) => ({ q: randomTensor(shape, seed), k: randomTensor(shape, seed + 1), v: randomTensor(shape, seed + 2) });

/** Runs `full` (this package's) at step 0 of `methods` (refreshing the residual when the plan needs it), then `wars` at `step` on `at`. */
async function refreshThenWars(window: WindowSpec, methods: string[], step: number, from = qkv(1), at = from, cache = new CacheManager()) {
  const events: StrategyEvent[] = [];
  const ctx = (s: number) => toyContext({ methods, step: s, strategies: set, window, shape, cache, events });
  const full = await fullWithResidual().run(ctx(0), { rows: 'all', ...from });
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
    const ctx = (s: number) => toyContext({ methods, step: s, strategies: set, window, shape, cache });
    const { q, k, v } = qkv(1);
    await fullWithResidual().run(ctx(0), { rows: 'all', q, k, v });
    const bytes = 2 * 12 * 2 * 4 * 4;
    expect(cache.entries()).toEqual([{ layer: 0, kind: RESIDUAL_CACHE, bytes }]);
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
    const ctx = toyContext({ methods: ['full', 'wars'], step: 1, strategies: set, window, shape, events });
    expect(wars().needs(ctx)).toBe('all');
    const out = await wars().run(ctx, { rows: 'all', q, k, v });
    expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceAttention(q, k, v).data)).toBeLessThan(1e-6);
    expect(events).toEqual([expect.objectContaining({ type: 'fallback', step: 1, layer: 0, method: 'wars', to: 'full' })]);
  });

  it('rejects a missing input and a residual of another shape with coded errors', async () => {
    const cache = new CacheManager();
    const window = { kind: '1d', size: 2 } as const;
    const ctx = (s: number) => toyContext({ methods: ['full', 'wars'], step: s, strategies: set, window, shape, cache });
    await expect(wars().run(ctx(1), null)).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT', message: expect.stringContaining('received null') });
    cache.scope(0).put(RESIDUAL_CACHE, randomTensor([2, 12, 2, 8], 1));
    await expect(wars().run(ctx(1), { rows: 'all', ...qkv(1) })).rejects.toMatchObject({ code: 'ERR_DITFA_SHAPE_MISMATCH', message: expect.stringContaining('[2, 12, 2, 8]') });
    cache.scope(0).put(RESIDUAL_CACHE, randomTensor([3, 12, 2, 4], 1));
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

  it('counts full as raw attention, plus the band once more when it writes the residual for a later step', () => {
    const s = { batch: 4, tokens: 16, channels: 8, cfg: true, window: { kind: '1d', size: 2 } } as const;
    const raw = 4 * 4 * 16 * 16 * 8;
    const band = 4 * 4 * (16 * 5 - 6) * 8;
    expect(fullWithResidual().flops(s)).toBe(raw);
    expect(fullWithResidual().flops(s, { writes: [] })).toBe(raw);
    expect(fullWithResidual().flops(s, { writes: [RESIDUAL_CACHE] })).toBe(raw + band);
    expect(fullWithResidual().flops(s, { writes: [RESIDUAL_CACHE] })).toBe(attentionFlops(4, 16, 16, 8) + windowFlops(4, 16, 8, s.window));
    // core's look-ahead tells full which kinds it writes: the band is counted only before a reader
    const lookahead = (methods: string[], step: number) => ({ step, numSteps: methods.length, layer: 0, plan: { numSteps: methods.length, numLayers: 1, methodAt: (t: number) => methods[t] }, strategies: set });
    expect(layerAttentionFlops(fullWithResidual(), s, lookahead(['full', 'ast', 'wars'], 0))).toBe(raw + band);
    expect(layerAttentionFlops(fullWithResidual(), s, lookahead(['full', 'full', 'wars'], 0))).toBe(raw);
    expect(layerAttentionFlops(fullWithResidual(), s, lookahead(['full', 'window-no-residual'], 0))).toBe(raw);
    expect(layerAttentionFlops(wars(), s, lookahead(['full', 'wars', 'wars'], 1))).toBe(band);
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
    expect(fallbacks.map((e) => [e.step, e.layer, e.method, e.to])).toEqual([
      [1, 1, 'wars', 'full'],
      [2, 1, 'wars', 'full'],
    ]);
    expect(run.events.filter((e) => e.type === 'cache-refused').map((e) => [e.step, e.layer])).toEqual([
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
    const ctx = toyContext({ methods: ['full', 'window-no-residual'], step: 1, strategies: set, window, shape, cache });
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
    expect(registry.names()).toEqual(['full', 'wars', 'window-no-residual']);
    expect(registry.list()).toEqual([...strategies()]);
    expect(registry.get('wars')?.caches).toEqual({ reads: [RESIDUAL_CACHE], writes: [], observes: [] });
    expect(registry.get('full')?.caches).toEqual({ reads: [], writes: [RESIDUAL_CACHE], observes: [] });
    expect(registry.get('window-no-residual')?.caches).toEqual({ reads: [], writes: [], observes: [] });
    const impostor = defineStrategy({ name: 'wars', needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 });
    expect(() => registry.register(impostor)).toThrow(expect.objectContaining({ code: 'ERR_DITFA_STRATEGY_CONFLICT' }));
  });

  it('returns the same objects on every call, and its full replaces core\'s plain full in a registry in either order', () => {
    expect(strategies()).toBe(strategies());
    expect(strategies().map((s) => s.name)).toEqual(['full', 'wars', 'window-no-residual']);
    const before = new StrategyRegistry();
    before.register(fullStrategy());
    register(before);
    const after = new StrategyRegistry();
    register(after);
    after.register(fullStrategy());
    for (const registry of [before, after]) expect(registry.get('full')).toBe(strategies()[0]);
    expect(FULL_PRIORITY).toBeGreaterThan(0);
  });

  it('needs its own full: checkStrategySet refuses wars beside core\'s plain full and accepts strategies()', () => {
    expect(() => checkStrategySet(strategySet([fullStrategy(), wars()]))).toThrow(
      expect.objectContaining({ code: 'ERR_DITFA_INVALID_STRATEGY', message: expect.stringContaining('"wars" reads the cache kind "residual"') }),
    );
    expect(() => checkStrategySet(strategySet([...strategies()]))).not.toThrow();
    expect(() => checkStrategySet(strategySet([fullWithResidual(), wars()]))).not.toThrow();
  });
});

describe('layers: where the window methods apply', () => {
  const layers = defineLayers([
    { block: 0, site: 'self', batch: 2, tokens: 12, heads: 2, headDim: 4, cfg: true, window: { kind: '1d', size: 2 } },
    { block: 0, site: 'temporal', batch: 2, tokens: 12, heads: 2, headDim: 4, cfg: true, window: null },
    { block: 0, site: 'cross', batch: 2, tokens: 12, kvTokens: 7, heads: 2, headDim: 4, cfg: true, window: null },
  ]);
  const [self, noWindow, cross] = [layers[0]!, layers[1]!, layers[2]!];

  it('wars applies to self-attention layers with a window only', () => {
    expect(wars().appliesTo!(self)).toBe(true);
    expect(wars().appliesTo!(noWindow)).toBe(false);
    expect(wars().appliesTo!(cross)).toBe(false);
    expect(supportsResidual(self)).toBe(true);
    // a window on cross-attention (which defineLayers refuses) would still not hold a residual
    expect(supportsResidual({ tokens: 12, kvTokens: 7, window: { kind: '1d', size: 2 } })).toBe(false);
    expect(fullWithResidual().appliesTo).toBeUndefined();
  });

  it('window-no-residual applies where a window exists (or, with its own window, on self-attention)', () => {
    expect(windowAttentionNoResidual().appliesTo!(self)).toBe(true);
    expect(windowAttentionNoResidual().appliesTo!(noWindow)).toBe(false);
    const own = windowAttentionNoResidual({ window: { kind: '1d', size: 1 } });
    expect(own.appliesTo!(noWindow)).toBe(true);
    expect(own.appliesTo!(cross)).toBe(false);
    expect(windowAttentionNoResidual({ window: { kind: '2d', rows: 3, cols: 4, radius: 1 } }).appliesTo!(noWindow)).toBe(true);
    expect(windowAttentionNoResidual({ window: { kind: '2d', rows: 4, cols: 4, radius: 1 } }).appliesTo!(noWindow)).toBe(false);
  });

  it('wars and window-no-residual refuse a layer without a window with a coded error; full computes no residual there', async () => {
    const cache = new CacheManager();
    const ctx = (step: number, method: string) =>
      strategyContext({
        step,
        numSteps: 2,
        layer: noWindow,
        method,
        cfg: { order: 'cond-first' },
        backend: createReferenceBackend(),
        plan: { numSteps: 2, numLayers: 2, methodAt: (s) => (s === 0 ? 'full' : method) },
        cache: cache.scope(noWindow.index),
        strategies: set,
      });
    const x = qkv(1);
    await expect(wars().run(ctx(1, 'wars'), { rows: 'all', ...x })).rejects.toMatchObject({
      code: 'ERR_DITFA_INVALID_ARGUMENT',
      message: 'Expected a window for method "wars" on layer 0.temporal but the layer has none (window methods do not apply to it)',
    });
    await expect(windowAttentionNoResidual().run(ctx(1, 'window-no-residual'), { rows: 'all', ...x })).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT' });
    // a later step reads the residual, but the layer cannot hold one: plain attention, nothing cached
    expect(residualNeededAhead(ctx(0, 'wars'))).toBe(true);
    const out = await fullWithResidual().run(ctx(0, 'wars'), { rows: 'all', ...x });
    expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceAttention(x.q, x.k, x.v).data)).toBeLessThan(1e-6);
    expect(cache.currentBytes).toBe(0);
    const s = layerShape(noWindow);
    expect(() => wars().flops(s)).toThrow(expect.objectContaining({ code: 'ERR_DITFA_INVALID_ARGUMENT' }));
    expect(fullWithResidual().flops(s, { writes: [RESIDUAL_CACHE] })).toBe(attentionFlops(2, 12, 12, 8));
  });

  it('runs through executeAttention with a context from strategyContext, the residual scoped to the layer index', async () => {
    const layers = defineLayers([
      { block: 0, site: 'self', batch: 2, tokens: 12, heads: 2, headDim: 4, cfg: false, window: { kind: '1d', size: 2 } },
      { block: 1, site: 'self', batch: 2, tokens: 12, heads: 2, headDim: 4, cfg: false, window: { kind: '1d', size: 2 } },
    ]);
    const layer = layers[1]!;
    const cache = new CacheManager();
    const methods = ['full', 'wars'];
    const plan = { numSteps: 2, numLayers: 2, methodAt: (s: number) => methods[s] };
    const x = qkv(3);
    const outputs = [];
    for (const [step, method] of methods.entries()) {
      const ctx = strategyContext({ step, numSteps: 2, layer, method, cfg: null, backend: createReferenceBackend(), plan, cache: cache.scope(layer.index), strategies: set });
      outputs.push(await executeAttention(set.get(method)!, ctx, { qkv: async () => x, project: async (t) => tensor(t.data, [t.shape[0]!, 12, 8]) }));
      if (step === 0) expect(cache.entries()).toEqual([{ layer: 1, kind: RESIDUAL_CACHE, bytes: 2 * 12 * 8 * 4 }]);
    }
    expect(maxAbsDiff(outputs[1]!.data, outputs[0]!.data)).toBeLessThan(1e-6);
    expect(cache.currentBytes).toBe(0);
  });
});
