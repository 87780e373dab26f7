import {
  CacheManager,
  StrategyRegistry,
  attentionFlops,
  cfgHalves,
  checkStrategySet,
  condRows,
  createReferenceBackend,
  defineLayers,
  fullStrategy,
  layerAttentionFlops,
  maxAbsDiff,
  referenceAttention,
  referenceFullWithResidual,
  referenceWindowAttention,
  sliceBatch,
  strategyRegistry,
  strategyContext,
  strategySet,
  tensor,
  windowFlops,
  type AttentionShape,
  type CfgOrder,
  type StrategyEvent,
  type Tensor,
} from '@ditfa/core';
import { countingBackend, createToyModel, randomTensor, runToyPipeline, toyContext, type BlockTrace } from '@ditfa-examples/toy-pipeline';
import { RESIDUAL_CACHE, fullWithResidual, residualFull, strategies as warsStrategies } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { asc, fullAsc, register, strategies, warsAsc } from '../src/index.js';

const window = { kind: '1d', size: 2 } as const;
const set = strategySet([...warsStrategies(), ...strategies()]);
const orders: CfgOrder[] = ['cond-first', 'cond-second'];
const model = createToyModel({ blocks: 2, tokens: 12, heads: 2, headDim: 4 });
const both = (methods: string[]) => methods.map((m) => [m, m]);
const halves = (t: Tensor) => [sliceBatch(t, 0, (t.shape[0] ?? 0) / 2), sliceBatch(t, (t.shape[0] ?? 0) / 2, t.shape[0] ?? 0)] as const;
const add = (a: Tensor, b: Tensor) => tensor(a.data.map((x, i) => x + b.data[i]!), a.shape);
/** `full − window` of some q/k/v. */
const residualOf = ({ q, k, v }: { q: Tensor; k: Tensor; v: Tensor }) => referenceFullWithResidual(q, k, v, window).residual;
const windowOf = ({ q, k, v }: { q: Tensor; k: Tensor; v: Tensor }) => referenceWindowAttention(q, k, v, window);

/** q/k/v of 4 rows whose halves differ. */
const shape = [4, 12, 2, 4] as const;
/** Plain (old builtin) FLOP formulas, to check the strategies count exactly what they always did. */
const oldFull = (s: AttentionShape, refreshResidual = false) => attentionFlops(s.batch, s.tokens, s.tokens, s.channels) + (refreshResidual ? windowFlops(s.batch, s.tokens, s.channels, s.window!) : 0);
const qkv = (seed: number) => ({ q: randomTensor(shape, seed), k: randomTensor(shape, seed + 1), v: randomTensor(shape, seed + 2) });
const condOf = (x: ReturnType<typeof qkv>, order: CfgOrder) => {
  const pick = (t: Tensor) => cfgHalves(t, { order }).cond;
  return { q: pick(x.q), k: pick(x.k), v: pick(x.v) };
};

describe('full+asc', () => {
  it('computes the conditional half only, taken from the stated side, for both CFG orders', async () => {
    for (const order of orders) {
      const x = qkv(1);
      const ctx = toyContext({ methods: ['full', 'full+asc'], step: 1, strategies: set, window, shape, cfg: order });
      expect(fullAsc().needs(ctx)).toBe('conditional');
      // an adapter that hands over every row: the strategy takes the conditional half itself
      const out = await fullAsc().run(ctx, { rows: 'all', ...x });
      const c = condOf(x, order);
      expect(out.kind === 'attention' && out.rows).toBe('conditional');
      expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceAttention(c.q, c.k, c.v).data)).toBeLessThan(1e-6);
      const other = condOf(x, order === 'cond-first' ? 'cond-second' : 'cond-first');
      expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceAttention(other.q, other.k, other.v).data)).toBeGreaterThan(1e-3);
    }
  });

  it('refreshes the residual from the conditional half, stored once for that half with exact bytes', async () => {
    for (const order of orders) {
      const cache = new CacheManager();
      const x = qkv(2);
      const c = condOf(x, order);
      await fullAsc().run(toyContext({ methods: ['full+asc', 'wars'], step: 0, strategies: set, window, shape, cfg: order, cache }), { rows: 'conditional', ...c });
      const stored = cache.scope(0).get(RESIDUAL_CACHE)!;
      expect(stored.shape).toEqual([2, 12, 2, 4]);
      expect(maxAbsDiff(stored.data, residualOf(c).data)).toBeLessThan(1e-6);
      expect(cache.entries()).toEqual([{ layer: 0, kind: RESIDUAL_CACHE, bytes: 2 * 12 * 2 * 4 * 4 }]);
      expect(cache.currentBytes).toBe(stored.data.byteLength);
    }
  });

  it('without CFG is full attention on every row', async () => {
    const x = qkv(3);
    const ctx = toyContext({ methods: ['full', 'full+asc'], step: 1, strategies: set, window, shape, cfg: null });
    expect(fullAsc().needs(ctx)).toBe('all');
    const out = await fullAsc().run(ctx, { rows: 'all', ...x });
    expect(out.kind === 'attention' && out.rows).toBe('all');
    expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceAttention(x.q, x.k, x.v).data)).toBeLessThan(1e-6);
  });
});

describe('wars+asc', () => {
  it('is window(conditional q/k/v) + the conditional half of a whole-batch residual, for both CFG orders', async () => {
    for (const order of orders) {
      const cache = new CacheManager();
      const methods = ['full', 'wars+asc'];
      const first = qkv(4);
      await fullWithResidual().run(toyContext({ methods, step: 0, strategies: set, window, shape, cfg: order, cache }), { rows: 'all', ...first });
      const ctx = toyContext({ methods, step: 1, strategies: set, window, shape, cfg: order, cache });
      expect(warsAsc().needs(ctx)).toBe('conditional');
      const later = condOf(qkv(8), order);
      const out = await warsAsc().run(ctx, { rows: 'conditional', ...later });
      const residualCond = cfgHalves(residualOf(first), { order }).cond;
      expect(out.kind === 'attention' && out.rows).toBe('conditional');
      expect(out.kind === 'attention' && maxAbsDiff(out.output.data, add(windowOf(later), residualCond).data)).toBeLessThan(1e-6);
      const residualUncond = cfgHalves(residualOf(first), { order }).uncond;
      expect(out.kind === 'attention' && maxAbsDiff(out.output.data, add(windowOf(later), residualUncond).data)).toBeGreaterThan(1e-3);
      expect(cache.currentBytes).toBe(0); // its last reader dropped it
    }
  });

  it('with the refresh step\'s q/k/v reproduces the full conditional output', async () => {
    const cache = new CacheManager();
    const methods = ['full+asc', 'wars+asc'];
    const c = condOf(qkv(5), 'cond-second');
    const full = await fullAsc().run(toyContext({ methods, step: 0, strategies: set, window, shape, cfg: 'cond-second', cache }), { rows: 'conditional', ...c });
    const out = await warsAsc().run(toyContext({ methods, step: 1, strategies: set, window, shape, cfg: 'cond-second', cache }), { rows: 'conditional', ...c });
    expect(full.kind === 'attention' && out.kind === 'attention' && maxAbsDiff(out.output.data, full.output.data)).toBeLessThan(1e-6);
  });

  it('falls back to full attention on every row and reports it when no residual is cached', async () => {
    const events: StrategyEvent[] = [];
    const ctx = toyContext({ methods: ['full', 'wars+asc'], step: 1, strategies: set, window, shape, cfg: 'cond-first', events });
    expect(warsAsc().needs(ctx)).toBe('all');
    const x = qkv(6);
    const out = await warsAsc().run(ctx, { rows: 'all', ...x });
    expect(out.kind === 'attention' && out.rows).toBe('all');
    expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceAttention(x.q, x.k, x.v).data)).toBeLessThan(1e-6);
    expect(events).toEqual([expect.objectContaining({ type: 'fallback', step: 1, layer: 0, method: 'wars+asc', to: 'full' })]);
    await expect(warsAsc().run(ctx, null)).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT' });
  });
});

describe('ASC in a generation (toy driver)', () => {
  const plan = both(['full', 'wars+asc', 'full+asc', 'wars', 'wars+asc', 'full+asc', 'full']);
  const at = (trace: readonly BlockTrace[], step: number, block = 0) => trace.find((t) => t.step === step && t.block === block)!;

  it('projects q/k/v and out-projects the conditional rows only, and copies the result to identical halves', async () => {
    for (const order of orders) {
      const run = await runToyPipeline({ model, samples: [1, 2], cfg: order, plan, strategies: set, window });
      for (const t of run.trace.filter((t) => t.method.endsWith('+asc'))) {
        expect([t.need, t.qkvRows, t.outProjectionRows, t.result.rows]).toEqual(['conditional', 2, 2, 'conditional']);
        const [a, b] = halves(t.projected!);
        expect(a.data).toEqual(b.data);
      }
      expect(run.events).toEqual([]);
    }
  });

  it('matches the definitions of full+asc, wars+asc and wars after full+asc, step by step', async () => {
    for (const order of orders) {
      const run = await runToyPipeline({ model, samples: [1, 2], cfg: order, plan, strategies: set, window });
      for (const block of [0, 1]) {
        const s = (step: number) => at(run.trace, step, block);
        // step 1, wars+asc after full: window on the conditional rows + conditional half of the full residual
        const r0 = cfgHalves(residualOf(s(0).inputs!), { order }).cond;
        expect(maxAbsDiff(s(1).output!.data, add(windowOf(s(1).inputs!), r0).data)).toBeLessThan(1e-6);
        // step 2, full+asc: full attention of the conditional rows; refreshes R from them
        const c2 = s(2).inputs!;
        expect(maxAbsDiff(s(2).output!.data, referenceAttention(c2.q, c2.k, c2.v).data)).toBeLessThan(1e-6);
        const r2 = residualOf(c2);
        // step 3, wars on every row: each half adds the conditional residual
        const w3 = windowOf(s(3).inputs!);
        const [o1, o2] = halves(s(3).output!);
        const [w1, w2] = halves(w3);
        expect(maxAbsDiff(o1.data, add(w1, r2).data)).toBeLessThan(1e-6);
        expect(maxAbsDiff(o2.data, add(w2, r2).data)).toBeLessThan(1e-6);
        // step 4, wars+asc after full+asc: the same residual
        expect(maxAbsDiff(s(4).output!.data, add(windowOf(s(4).inputs!), r2).data)).toBeLessThan(1e-6);
        // sanity: the residual is not negligible
        expect(maxAbsDiff(add(windowOf(s(4).inputs!), r2).data, windowOf(s(4).inputs!).data)).toBeGreaterThan(1e-3);
      }
    }
  });

  it('gives the same latents for both CFG orders (the conditional half is taken from the stated side)', async () => {
    const first = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan, strategies: set, window });
    const second = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-second', plan, strategies: set, window });
    expect(maxAbsDiff(first.latents.data, second.latents.data)).toBeLessThan(1e-6);
    const raw = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan: plan.map((r) => r.map(() => 'full')), strategies: set, window });
    expect(maxAbsDiff(first.latents.data, raw.latents.data)).toBeGreaterThan(1e-4);
  });

  it('computes residuals only where the plan reads them, and reports cache bytes equal to the cached tensors', async () => {
    const { backend, calls } = countingBackend();
    const B = 4;
    const row = 12 * 2 * 4 * 4; // bytes of one batch row of attention output
    const expectedBytes: Record<string, number> = {};
    const run = await runToyPipeline({
      model,
      samples: [1, 2],
      cfg: 'cond-first',
      plan,
      strategies: set,
      window,
      backend,
      afterBlock: (t, cache) => {
        const held = cache.entries().reduce((sum, e) => sum + e.bytes, 0);
        expect(cache.currentBytes).toBe(held);
        let tensors = 0;
        for (const b of [0, 1]) tensors += cache.scope(b).get(RESIDUAL_CACHE)?.data.byteLength ?? 0;
        expect(cache.currentBytes).toBe(tensors);
        expectedBytes[`${t.step}/${t.block}`] = cache.currentBytes;
      },
    });
    // steps 0 (full) and 2 (full+asc) refresh; 5 (full+asc) and 6 (full) have no later reader
    expect(calls).toEqual({ fullWithResidual: 2 * 2, windowWithResidual: 2 * (1 + 2 + 1), attention: 2 * 2, windowAttention: 0 });
    // after step 0 block 0: one whole-batch residual; after step 2 both blocks: two conditional-half residuals
    expect(expectedBytes['0/0']).toBe(B * row);
    expect(expectedBytes['0/1']).toBe(2 * B * row);
    expect(expectedBytes['2/1']).toBe(2 * (B / 2) * row);
    expect(expectedBytes['4/1']).toBe(0);
    expect(run.cache.peakBytes).toBe(2 * B * row);
  });

  it('falls back to full attention for the block when the budget refuses the residual, and says so', async () => {
    const raw = await runToyPipeline({ model, samples: [1], cfg: 'cond-second', plan: plan.map((r) => r.map(() => 'full')), strategies: set, window });
    const run = await runToyPipeline({ model, samples: [1], cfg: 'cond-second', plan, strategies: set, window, cache: new CacheManager({ budgetBytes: 0 }) });
    const fallbacks = run.events.filter((e) => e.type === 'fallback');
    expect(fallbacks.map((e) => [e.step, e.method, e.to])).toEqual(
      [1, 1, 3, 3, 4, 4].map((step) => [step, step === 3 ? 'wars' : 'wars+asc', 'full']),
    );
    for (const t of run.trace.filter((t) => t.method === 'wars+asc')) expect([t.need, t.qkvRows]).toEqual(['all', 2]);
    // the fallback steps are full attention; full+asc steps still share across CFG, so only those differ from the raw model
    const noAsc = await runToyPipeline({ model, samples: [1], cfg: 'cond-second', plan: plan.map((r) => r.map((m) => (m === 'full+asc' ? m : 'full'))), strategies: set, window });
    expect(maxAbsDiff(run.latents.data, noAsc.latents.data)).toBeLessThan(1e-6);
    expect(maxAbsDiff(run.latents.data, raw.latents.data)).toBeGreaterThan(1e-5);
  });
});

describe('FLOPs and registration', () => {
  const s = { batch: 4, tokens: 16, channels: 8, cfg: true, window } as const;
  it('counts half the batch, exactly as the built-in formulas did', () => {
    const full = 4 * 4 * 16 * 16 * 8;
    const band = 4 * 4 * (16 * 5 - 6) * 8;
    expect(fullAsc().flops(s)).toBe(full / 2);
    expect(fullAsc().flops(s, { writes: [RESIDUAL_CACHE] })).toBe((full + band) / 2);
    expect(warsAsc().flops(s)).toBe(band / 2);
    expect(fullAsc().flops({ ...s, cfg: false })).toBe(full);
    expect(fullAsc().flops({ ...s, cfg: false }, { writes: [RESIDUAL_CACHE] })).toBe(full + band);
    // old builtinMethodFlops: full+asc = full on condRows (+ its window when refreshing), wars+asc = window on condRows
    for (const shape of [s, { ...s, cfg: false }, { ...s, batch: 6, window: { kind: '2d', rows: 4, cols: 4, radius: 1 } } as const]) {
      const half = { ...shape, batch: condRows(shape) };
      expect(fullAsc().flops(shape)).toBe(oldFull(half));
      expect(fullAsc().flops(shape, { writes: [RESIDUAL_CACHE] })).toBe(oldFull(half, true));
      expect(warsAsc().flops(shape)).toBe(windowFlops(condRows(shape), shape.tokens, shape.channels, shape.window));
    }
  });

  it('counts the residual refresh of full+asc only before a reader (core look-ahead)', () => {
    const ctx = (methods: string[], step: number) => ({ step, numSteps: methods.length, layer: 0, plan: { numSteps: methods.length, numLayers: 1, methodAt: (t: number) => methods[t] }, strategies: set });
    const full = 4 * 4 * 16 * 16 * 8;
    const band = 4 * 4 * (16 * 5 - 6) * 8;
    expect(layerAttentionFlops(fullAsc(), s, ctx(['full', 'full+asc', 'ast', 'wars+asc'], 1))).toBe((full + band) / 2);
    expect(layerAttentionFlops(fullAsc(), s, ctx(['full', 'full+asc', 'full', 'wars+asc'], 1))).toBe(full / 2);
    expect(layerAttentionFlops(warsAsc(), s, ctx(['full', 'wars+asc'], 1))).toBe(band / 2);
  });

  it('registers nothing at import, both compositions explicitly, with their cache declarations', () => {
    expect(strategyRegistry.get('full+asc')).toBeUndefined();
    const registry = new StrategyRegistry();
    register(registry);
    register(registry);
    // wars+asc brings its companion, the residual-refreshing full of @ditfa/strategy-wars
    expect(registry.names()).toEqual(['full+asc', 'wars+asc', 'full']);
    expect(registry.get('full')).toBe(residualFull());
    expect(strategies()).toBe(strategies());
    expect(asc().map((x) => [x.name, x.caches])).toEqual([
      ['full+asc', { reads: [], writes: [RESIDUAL_CACHE], observes: [] }],
      ['wars+asc', { reads: [RESIDUAL_CACHE], writes: [], observes: [] }],
    ]);
    // full+asc writes what wars+asc reads: the set stands alone, and beside core's plain full
    expect(() => checkStrategySet(strategySet([...strategies()]))).not.toThrow();
    expect(() => checkStrategySet(strategySet([fullStrategy(), warsAsc()]))).toThrow(expect.objectContaining({ code: 'ERR_DITFA_INVALID_STRATEGY' }));
  });
});

describe('layers: where ASC applies', () => {
  const spec = { block: 0, batch: 4, tokens: 12, heads: 2, headDim: 4 } as const;
  const layers = defineLayers([
    { ...spec, site: 'self', cfg: true, window },
    { ...spec, block: 1, site: 'self', cfg: false, window },
    { ...spec, site: 'temporal', cfg: true, window: null },
  ]);
  const [cfgSelf, plainSelf, cfgNoWindow] = [layers[0]!, layers[1]!, layers[2]!];

  it('full+asc applies to CFG layers, wars+asc to CFG layers with a window', () => {
    expect([cfgSelf, plainSelf, cfgNoWindow].map((l) => fullAsc().appliesTo!(l))).toEqual([true, false, true]);
    expect([cfgSelf, plainSelf, cfgNoWindow].map((l) => warsAsc().appliesTo!(l))).toEqual([true, false, false]);
  });

  it('on a non-CFG layer both run their inner method on every row', async () => {
    const cache = new CacheManager();
    const methods = ['full+asc', 'wars+asc'];
    const ctx = (step: number) =>
      strategyContext({
        step,
        numSteps: 2,
        layer: plainSelf,
        method: methods[step]!,
        cfg: null,
        backend: createReferenceBackend(),
        plan: { numSteps: 2, numLayers: 2, methodAt: (t, l) => (l === plainSelf.index ? methods[t] : undefined) },
        cache: cache.scope(plainSelf.index),
        strategies: set,
      });
    const x = qkv(9);
    expect(fullAsc().needs(ctx(0))).toBe('all');
    const full = await fullAsc().run(ctx(0), { rows: 'all', ...x });
    expect(full.kind === 'attention' && full.rows).toBe('all');
    expect(full.kind === 'attention' && maxAbsDiff(full.output.data, referenceAttention(x.q, x.k, x.v).data)).toBeLessThan(1e-6);
    expect(cache.entries()).toEqual([{ layer: 1, kind: RESIDUAL_CACHE, bytes: 4 * 12 * 2 * 4 * 4 }]);
    expect(warsAsc().needs(ctx(1))).toBe('all');
    const out = await warsAsc().run(ctx(1), { rows: 'all', ...x });
    expect(out.kind === 'attention' && out.rows).toBe('all');
    expect(out.kind === 'attention' && full.kind === 'attention' && maxAbsDiff(out.output.data, full.output.data)).toBeLessThan(1e-6);
    expect(cache.currentBytes).toBe(0);
    await expect(warsAsc().run(ctx(1), { rows: 'conditional', ...x })).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT' });
  });

  it('wars+asc refuses a layer without a window with a coded error', async () => {
    const ctx = strategyContext({
      step: 1,
      numSteps: 2,
      layer: cfgNoWindow,
      method: 'wars+asc',
      cfg: { order: 'cond-first' },
      backend: createReferenceBackend(),
      plan: { numSteps: 2, numLayers: 3, methodAt: (t) => (t === 0 ? 'full' : 'wars+asc') },
      cache: new CacheManager().scope(cfgNoWindow.index),
      strategies: set,
    });
    await expect(warsAsc().run(ctx, { rows: 'all', ...qkv(1) })).rejects.toMatchObject({
      code: 'ERR_DITFA_INVALID_ARGUMENT',
      message: expect.stringContaining('Expected a window for method "wars+asc" on layer 0.temporal'),
    });
    expect(() => warsAsc().flops({ batch: 4, tokens: 12, channels: 8, cfg: true, window: null })).toThrow(expect.objectContaining({ code: 'ERR_DITFA_INVALID_ARGUMENT' }));
  });
});
