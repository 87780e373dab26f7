import { describe, expect, it } from 'vitest';
import {
  CacheManager,
  createReferenceBackend,
  defineLayers,
  fullStrategy,
  layerShape,
  referenceAttention,
  strategyContext,
  strategySet,
  uniformPlanView,
  type KernelBackend,
  type StrategyEvent,
} from '../src/index.js';
import { maxDiff, randomTensor } from './helpers.js';

function counting(): { backend: KernelBackend; calls: Record<string, number> } {
  const ref = createReferenceBackend();
  const calls: Record<string, number> = { attention: 0, windowAttention: 0, fullWithResidual: 0, windowWithResidual: 0 };
  return {
    calls,
    backend: {
      ...ref,
      attention: (...a) => (calls.attention!++, ref.attention(...a)),
      windowAttention: (...a) => (calls.windowAttention!++, ref.windowAttention(...a)),
      fullWithResidual: (...a) => (calls.fullWithResidual!++, ref.fullWithResidual(...a)),
      windowWithResidual: (...a) => (calls.windowWithResidual!++, ref.windowWithResidual(...a)),
    },
  };
}

// B = 2 (one sample under CFG), L = 6, H = 2, D = 4
const [layer, cross] = defineLayers([
  { block: 0, site: 'self', batch: 2, tokens: 6, heads: 2, headDim: 4, cfg: true, window: { kind: '1d', size: 1 } },
  { block: 0, site: 'cross', batch: 2, tokens: 6, kvTokens: 3, heads: 2, headDim: 4, cfg: true, window: null },
]);

describe('strategyContext', () => {
  const base = () => ({
    step: 1,
    numSteps: 3,
    method: 'full',
    cfg: { order: 'cond-second' } as const,
    backend: createReferenceBackend(),
    plan: uniformPlanView(3, 2),
    strategies: strategySet([fullStrategy()]),
  });

  it('takes the window from the layer and computes in fp32 unless told', () => {
    const cache = new CacheManager();
    const ctx = strategyContext({ ...base(), layer: layer!, cache: cache.scope(0) });
    expect(ctx.window).toBe(layer!.window);
    expect(ctx.compute).toBe('fp32');
    expect(ctx.layer).toBe(layer);
    expect(ctx.cache.layer).toBe(0);
    expect(ctx.cfg).toEqual({ order: 'cond-second' });
    expect(strategyContext({ ...base(), layer: cross!, cache: cache.scope(1), compute: 'bf16' })).toMatchObject({ window: null, compute: 'bf16' });
  });

  it('is frozen and reports through the given callback (or nowhere)', () => {
    const events: StrategyEvent[] = [];
    const ctx = strategyContext({ ...base(), layer: layer!, cache: new CacheManager().scope(0), report: (e) => void events.push(e) });
    expect(Object.isFrozen(ctx)).toBe(true);
    const event: StrategyEvent = { type: 'fallback', step: 1, layer: 0, method: 'wars', to: 'full', reason: 'no residual' };
    ctx.report(event);
    expect(events).toEqual([event]);
    expect(() => strategyContext({ ...base(), layer: layer!, cache: new CacheManager().scope(0) }).report(event)).not.toThrow();
  });
});

describe('the full strategy', () => {
  const q = randomTensor([2, 6, 2, 4], 1);
  const k = randomTensor([2, 6, 2, 4], 2);
  const v = randomTensor([2, 6, 2, 4], 3);

  it('computes plain attention once on the rows it was given and caches nothing', async () => {
    const { backend, calls } = counting();
    const cache = new CacheManager();
    const full = fullStrategy();
    const ctx = strategyContext({ step: 0, numSteps: 2, layer: layer!, method: 'full', cfg: { order: 'cond-first' }, backend, plan: uniformPlanView(2, 1), cache: cache.scope(0), strategies: strategySet([full]) });
    expect(full.needs(ctx)).toBe('all');
    const r = await full.run(ctx, { rows: 'all', q, k, v });
    expect(calls).toEqual({ attention: 1, windowAttention: 0, fullWithResidual: 0, windowWithResidual: 0 });
    expect(r.kind).toBe('attention');
    expect(r.kind === 'attention' && r.rows).toBe('all');
    expect(r.kind === 'attention' && maxDiff(r.output.data, referenceAttention(q, k, v).data)).toBe(0);
    expect(cache.currentBytes).toBe(0);
    expect(cache.entries()).toEqual([]);
  });

  it('keeps the row selection of its inputs', async () => {
    const full = fullStrategy();
    const ctx = strategyContext({ step: 0, numSteps: 1, layer: layer!, method: 'full', cfg: { order: 'cond-first' }, backend: createReferenceBackend(), plan: uniformPlanView(1, 1), cache: new CacheManager().scope(0), strategies: strategySet([full]) });
    const [hq, hk, hv] = [11, 12, 13].map((seed) => randomTensor([1, 6, 2, 4], seed)) as [typeof q, typeof q, typeof q];
    const r = await full.run(ctx, { rows: 'conditional', q: hq, k: hk, v: hv });
    expect(r.kind === 'attention' && maxDiff(r.output.data, referenceAttention(hq, hk, hv).data)).toBe(0);
    expect(r).toMatchObject({ kind: 'attention', rows: 'conditional' });
    await expect(full.run(ctx, null)).rejects.toThrow(/Expected q\/k\/v inputs for full attention/);
  });

  it('declares no cache and costs the raw attention whatever it is told to write', () => {
    const full = fullStrategy();
    expect(full.caches).toEqual({ reads: [], writes: [], observes: [] });
    // 4·B·Lq·Lkv·C: 4·2·6·6·8 and, for cross-attention, 4·2·6·3·8
    expect(full.flops(layerShape(layer!))).toBe(2304);
    expect(full.flops(layerShape(layer!), { writes: ['residual'] })).toBe(2304);
    expect(full.flops(layerShape(cross!))).toBe(1152);
  });
});
