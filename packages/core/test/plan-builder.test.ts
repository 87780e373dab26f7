import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  buildPlan,
  defineLayers,
  defineStrategy,
  strategySet,
  validatePlan,
  type AttentionLayer,
  type PlanFingerprint,
  type StrategySpec,
} from '../src/index.js';

/**
 * Test strategies whose FLOPs are simple numbers of the layer shape, so every expected fraction below is
 * worked out by hand from the FLOP model (4·B·L²·C for full attention) and not by the code under test:
 * - `full` writes kind `r` and costs 1.5× full attention when a later step reads `r` (like WA-RS's refresh);
 * - `cheap` reads `r` and costs a quarter; `free` keeps nothing and costs nothing;
 * - `wide-only` applies only to layers with a window.
 */
const raw = (s: { batch: number; tokens: number; channels: number }): number => 4 * s.batch * s.tokens * s.tokens * s.channels;
const spec = (s: StrategySpec): StrategySpec => s;
const full = defineStrategy(
  spec({ name: 'full', caches: { writes: ['r'] }, needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: (shape, o) => raw(shape) * (o?.writes?.includes('r') ? 1.5 : 1) }),
);
const cheap = defineStrategy(spec({ name: 'cheap', caches: { reads: ['r'] }, needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: (shape) => raw(shape) / 4 }));
const free = defineStrategy(spec({ name: 'free', needs: () => 'none', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 }));
const wideOnly = defineStrategy(
  spec({ name: 'wide-only', appliesTo: (l) => l.window !== null, needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: (shape) => raw(shape) / 2 }),
);
const strategies = [full, cheap, free, wideOnly];

// Two layers of different sizes: raw FLOPs 4·2·16²·8 = 16384 and 4·2·4²·8 = 1024.
const layers: readonly AttentionLayer[] = defineLayers([
  { block: 0, site: 'self', batch: 2, tokens: 16, heads: 2, headDim: 4, cfg: true, window: { kind: '1d', size: 2 } },
  { block: 0, site: 'cross', batch: 2, tokens: 4, heads: 2, headDim: 4, cfg: true, window: null },
]);
const fingerprint: PlanFingerprint = {
  model: { architecture: 'toy', weightsHash: 'sha256:0' },
  latent: { channels: 4, height: 4, width: 4 },
  steps: 3,
  sampler: 'ddim',
  guidance: 4,
  cfgOrder: 'cond-first',
  layers: layers.map((l) => ({ id: l.id, window: l.window })),
};

describe('buildPlan', () => {
  it('fills in every entry and the total from the FLOP model, refresh costs included', () => {
    // step 0: full, full; step 1: cheap (reads r), free; step 2: free, full
    const plan = buildPlan({
      fingerprint,
      layers,
      strategies,
      method: (step, layer) => (step === 0 ? 'full' : step === 1 ? (layer.site === 'self' ? 'cheap' : 'free') : layer.site === 'self' ? 'free' : 'full'),
    });
    expect(plan.steps.map((row) => row.map((e) => e.method))).toEqual([
      ['full', 'full'],
      ['cheap', 'free'],
      ['free', 'full'],
    ]);
    // 0.self's full at step 0 writes r for step 1's cheap: 1.5; 0.cross's full never refreshes for a reader: 1
    expect(plan.steps.map((row) => row.map((e) => e.flopsFraction))).toEqual([
      [1.5, 1],
      [0.25, 0],
      [0, 1],
    ]);
    const total = (16384 * (1.5 + 0.25 + 0) + 1024 * (1 + 0 + 1)) / (3 * (16384 + 1024));
    expect(plan.totals.attentionFlopsFraction).toBeCloseTo(total, 15);
    expect(plan.steps.flat().every((e) => e.loss === null)).toBe(true);
    expect(plan.candidates).toEqual(['cheap', 'free']);
    expect(plan.threshold).toEqual({ delta: 0 });
    expect(plan.fingerprint).toBe(fingerprint);
    // a valid version-2 document, and the same one for the same inputs
    expect(validatePlan(JSON.parse(JSON.stringify(plan)), { methods: strategySet(strategies) })).toEqual(plan);
    expect(buildPlan({ fingerprint, layers, strategies: strategySet(strategies), method: (s, l) => (s === 0 ? 'full' : s === 1 ? (l.site === 'self' ? 'cheap' : 'free') : l.site === 'self' ? 'free' : 'full') })).toEqual(plan);
  });

  it('takes a threshold, candidates, generator and date; adds core full when the strategies have none', () => {
    const plan = buildPlan({ fingerprint, layers, strategies: [free], method: () => 'full', threshold: { delta: 0.05, name: 'D2' }, candidates: ['free'], generator: 'me', createdAt: '2026-01-01T00:00:00.000Z' });
    expect(plan.threshold).toEqual({ delta: 0.05, name: 'D2' });
    expect(plan.candidates).toEqual(['free']);
    expect(plan.generator).toBe('me');
    expect(plan.createdAt).toBe('2026-01-01T00:00:00.000Z');
    expect(plan.totals.attentionFlopsFraction).toBe(1);
    expect(buildPlan({ fingerprint, layers, strategies: [free], method: () => 'full', threshold: 0.1 }).threshold).toEqual({ delta: 0.1 });
  });

  it('refuses what a plan cannot hold, with coded errors that name the place', () => {
    const run = (method: (step: number, layer: AttentionLayer) => string) => () => buildPlan({ fingerprint, layers, strategies, method });
    expect(run(() => 'nope')).toThrow(expect.objectContaining({ code: ErrorCode.StrategyNotFound, message: expect.stringContaining('method(0, 0.self)') }));
    expect(run((s) => (s === 0 ? 'full' : 'wide-only'))).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('layer 0.cross at step 1') }));
    // step 0 cannot read a cache of an earlier step
    expect(run(() => 'cheap')).toThrow(expect.objectContaining({ code: ErrorCode.PlanInvalid, message: expect.stringContaining('steps[0][0].method') }));
    expect(() => buildPlan({ fingerprint, layers: layers.slice(1), strategies, method: () => 'full' })).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('2 attention layers') }));
    const otherWindow = defineLayers(layers.map(({ id: _i, index: _x, ...l }) => ({ ...l, window: l.window === null ? null : { kind: '1d' as const, size: 3 } })));
    expect(() => buildPlan({ fingerprint, layers: otherWindow, strategies, method: () => 'full' })).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('layers[0]') }));
  });
});
