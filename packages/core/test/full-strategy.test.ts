import { describe, expect, it } from 'vitest';
import {
  CacheKind,
  CacheManager,
  blockAttentionFlops,
  createReferenceBackend,
  defineStrategy,
  fullStrategy,
  residualNeededAhead,
  outputNeededNext,
  referenceAttention,
  referenceFullWithResidual,
  strategySet,
  type KernelBackend,
  type PlanView,
  type StrategyContext,
  type StrategyEvent,
} from '../src/index.js';
import { maxDiff, randomTensor } from './helpers.js';

const consumer = defineStrategy({
  name: 'wars',
  traits: { consumesResidual: true },
  needs: () => 'all',
  run: async () => ({ kind: 'projected', output: null as never }),
  flops: () => 0,
});
const reuser = defineStrategy({ name: 'ast', traits: { reusesOutput: true }, needs: () => 'none', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 });

function counting(): { backend: KernelBackend; calls: Record<string, number> } {
  const ref = createReferenceBackend();
  const calls: Record<string, number> = { attention: 0, fullWithResidual: 0 };
  return {
    calls,
    backend: {
      ...ref,
      attention: (...a) => (calls.attention!++, ref.attention(...a)),
      fullWithResidual: (...a) => (calls.fullWithResidual!++, ref.fullWithResidual(...a)),
    },
  };
}

function context(rows: (string | undefined)[], step: number, backend: KernelBackend, cache = new CacheManager(), events: StrategyEvent[] = []): StrategyContext {
  const plan: PlanView = { numSteps: rows.length, numBlocks: 1, methodAt: (s) => rows[s] };
  return {
    step,
    block: 0,
    numSteps: rows.length,
    numBlocks: 1,
    method: rows[step] ?? 'full',
    cfg: null,
    backend,
    plan,
    cache: cache.scope(0),
    window: { kind: '1d', size: 1 },
    compute: 'fp32',
    strategies: strategySet([fullStrategy(), consumer, reuser]),
    report: (e) => void events.push(e),
  };
}

describe('plan lookahead', () => {
  const b = createReferenceBackend();
  it('needs a residual when a consumer follows before the next refresh', () => {
    expect(residualNeededAhead(context(['full', 'ast', 'wars'], 0, b))).toBe(true);
    expect(residualNeededAhead(context(['full', 'full', 'wars'], 0, b))).toBe(false);
    expect(residualNeededAhead(context(['full', 'ast', 'ast'], 0, b))).toBe(false);
    // undecided future steps (calibration) might consume it
    expect(residualNeededAhead(context(['full', undefined], 0, b))).toBe(true);
  });
  it('counts a full step\'s FLOPs with the residual refresh only when a later step reads it', () => {
    // B = 2, L = 8, C = 4, window 1 token per side: 8 + 2·7 = 22 pairs
    const shape = { batch: 2, tokens: 8, channels: 4, cfg: false, window: { kind: '1d', size: 1 } } as const;
    const full = fullStrategy();
    expect(blockAttentionFlops(full, shape, context(['full', 'ast', 'wars'], 0, b))).toBe(4 * 2 * 64 * 4 + 4 * 2 * 22 * 4);
    expect(blockAttentionFlops(full, shape, context(['full', 'full', 'wars'], 0, b))).toBe(4 * 2 * 64 * 4);
  });
  it('keeps the output only when the next step reuses it', () => {
    expect(outputNeededNext(context(['full', 'ast'], 0, b))).toBe(true);
    expect(outputNeededNext(context(['full', 'wars', 'ast'], 0, b))).toBe(false);
    expect(outputNeededNext(context(['full'], 0, b))).toBe(false);
  });
});

describe('the full strategy', () => {
  const q = randomTensor([2, 6, 2, 4], 1);
  const k = randomTensor([2, 6, 2, 4], 2);
  const v = randomTensor([2, 6, 2, 4], 3);

  it('computes no residual when no later step consumes one', async () => {
    const { backend, calls } = counting();
    const ctx = context(['full', 'full', 'ast'], 0, backend);
    const r = await fullStrategy().run(ctx, { rows: 'all', q, k, v });
    expect(calls).toEqual({ attention: 1, fullWithResidual: 0 });
    expect(r.kind === 'attention' && maxDiff(r.output.data, referenceAttention(q, k, v).data)).toBe(0);
    expect(ctx.cache.has(CacheKind.Residual)).toBe(false);
  });

  it('stores the residual through the fused call when a WA-RS step follows', async () => {
    const { backend, calls } = counting();
    const cache = new CacheManager();
    const ctx = context(['full', 'wars'], 0, backend, cache);
    await fullStrategy().run(ctx, { rows: 'all', q, k, v });
    expect(calls).toEqual({ attention: 0, fullWithResidual: 1 });
    const expected = referenceFullWithResidual(q, k, v, { kind: '1d', size: 1 }).residual;
    expect(maxDiff(ctx.cache.get(CacheKind.Residual)!.data, expected.data)).toBe(0);
    expect(cache.currentBytes).toBe(expected.data.byteLength);
  });

  it('drops a stale residual and reports when the budget refuses the new one', async () => {
    const { backend } = counting();
    const events: StrategyEvent[] = [];
    const cache = new CacheManager({ budgetBytes: 100 });
    cache.scope(0).put(CacheKind.Residual, randomTensor([5], 9));
    const ctx = context(['full', 'wars'], 0, backend, cache, events);
    await fullStrategy().run(ctx, { rows: 'all', q, k, v });
    expect(ctx.cache.has(CacheKind.Residual)).toBe(false);
    expect(events).toEqual([{ type: 'cache-refused', step: 0, block: 0, method: 'full', kind: CacheKind.Residual, bytes: q.data.byteLength }]);
  });
});
