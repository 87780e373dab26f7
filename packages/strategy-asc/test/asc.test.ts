import {
  CacheKind,
  CacheManager,
  StrategyRegistry,
  builtinMethodFlops,
  cfgHalves,
  fullStrategy,
  maxAbsDiff,
  referenceAttention,
  referenceFullWithResidual,
  referenceWindowAttention,
  sliceBatch,
  strategyRegistry,
  strategySet,
  tensor,
  type CfgOrder,
  type StrategyEvent,
  type Tensor,
} from '@ditfa/core';
import { countingBackend, createToyModel, randomTensor, runToyPipeline, toyContext, type BlockTrace } from '@ditfa-examples/toy-pipeline';
import { wars } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { asc, fullAsc, register, strategies, warsAsc } from '../src/index.js';

const window = { kind: '1d', size: 2 } as const;
const set = strategySet([fullStrategy(), wars(), ...strategies()]);
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
const qkv = (seed: number) => ({ q: randomTensor(shape, seed), k: randomTensor(shape, seed + 1), v: randomTensor(shape, seed + 2) });
const condOf = (x: ReturnType<typeof qkv>, order: CfgOrder) => {
  const pick = (t: Tensor) => cfgHalves(t, { order }).cond;
  return { q: pick(x.q), k: pick(x.k), v: pick(x.v) };
};

describe('full+asc', () => {
  it('computes the conditional half only, taken from the stated side, for both CFG orders', async () => {
    for (const order of orders) {
      const x = qkv(1);
      const ctx = toyContext({ methods: ['full', 'full+asc'], step: 1, strategies: set, window, cfg: order });
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
      await fullAsc().run(toyContext({ methods: ['full+asc', 'wars'], step: 0, strategies: set, window, cfg: order, cache }), { rows: 'conditional', ...c });
      const stored = cache.scope(0).get(CacheKind.Residual)!;
      expect(stored.shape).toEqual([2, 12, 2, 4]);
      expect(maxAbsDiff(stored.data, residualOf(c).data)).toBeLessThan(1e-6);
      expect(cache.entries()).toEqual([{ block: 0, kind: CacheKind.Residual, bytes: 2 * 12 * 2 * 4 * 4 }]);
      expect(cache.currentBytes).toBe(stored.data.byteLength);
    }
  });

  it('without CFG is full attention on every row', async () => {
    const x = qkv(3);
    const ctx = toyContext({ methods: ['full', 'full+asc'], step: 1, strategies: set, window, cfg: null });
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
      await fullStrategy().run(toyContext({ methods, step: 0, strategies: set, window, cfg: order, cache }), { rows: 'all', ...first });
      const ctx = toyContext({ methods, step: 1, strategies: set, window, cfg: order, cache });
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
    const full = await fullAsc().run(toyContext({ methods, step: 0, strategies: set, window, cfg: 'cond-second', cache }), { rows: 'conditional', ...c });
    const out = await warsAsc().run(toyContext({ methods, step: 1, strategies: set, window, cfg: 'cond-second', cache }), { rows: 'conditional', ...c });
    expect(full.kind === 'attention' && out.kind === 'attention' && maxAbsDiff(out.output.data, full.output.data)).toBeLessThan(1e-6);
  });

  it('falls back to full attention on every row and reports it when no residual is cached', async () => {
    const events: StrategyEvent[] = [];
    const ctx = toyContext({ methods: ['full', 'wars+asc'], step: 1, strategies: set, window, cfg: 'cond-first', events });
    expect(warsAsc().needs(ctx)).toBe('all');
    const x = qkv(6);
    const out = await warsAsc().run(ctx, { rows: 'all', ...x });
    expect(out.kind === 'attention' && out.rows).toBe('all');
    expect(out.kind === 'attention' && maxAbsDiff(out.output.data, referenceAttention(x.q, x.k, x.v).data)).toBeLessThan(1e-6);
    expect(events).toEqual([expect.objectContaining({ type: 'fallback', step: 1, block: 0, method: 'wars+asc', to: 'full' })]);
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
        for (const b of [0, 1]) tensors += cache.scope(b).get(CacheKind.Residual)?.data.byteLength ?? 0;
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
  it('counts half the batch through core\'s FLOP model', () => {
    const full = 4 * 4 * 16 * 16 * 8;
    const band = 4 * 4 * (16 * 5 - 6) * 8;
    expect(fullAsc().flops(s)).toBe(full / 2);
    expect(fullAsc().flops(s, { refreshResidual: true })).toBe((full + band) / 2);
    expect(warsAsc().flops(s)).toBe(band / 2);
    expect(warsAsc().flops(s)).toBe(builtinMethodFlops['wars+asc'](s));
    expect(fullAsc().flops({ ...s, cfg: false })).toBe(full);
  });

  it('registers nothing at import, both compositions explicitly', () => {
    expect(strategyRegistry.get('full+asc')).toBeUndefined();
    const registry = new StrategyRegistry();
    register(registry);
    register(registry);
    expect(registry.names()).toEqual(['full+asc', 'wars+asc']);
    expect(asc().map((x) => [x.name, x.traits])).toEqual([
      ['full+asc', { consumesResidual: false, refreshesResidual: true, reusesOutput: false }],
      ['wars+asc', { consumesResidual: true, refreshesResidual: false, reusesOutput: false }],
    ]);
  });
});
