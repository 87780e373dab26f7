import {
  CacheManager,
  StrategyRegistry,
  cacheNeededAhead,
  checkStrategySet,
  createReferenceBackend,
  defineLayers,
  executeAttention,
  fullStrategy,
  layerAttentionFlops,
  layerShape,
  maxAbsDiff,
  rawAttentionFlops,
  referenceAttention,
  strategyContext,
  strategyRegistry,
  strategySet,
  tensor,
  type AttentionLayer,
  type CfgLayout,
  type StrategyEvent,
  type StrategyLookup,
  type Tensor,
} from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { REUSE_CACHE, attentionKeep, attentionReuse, register, strategies } from '../src/index.js';

/** Deterministic uniform values in [-1, 1) (mulberry32). */
function random(shape: readonly number[], seed: number): Tensor {
  let a = seed >>> 0;
  const data = new Float32Array(shape.reduce((x, y) => x * y, 1));
  for (let i = 0; i < data.length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    data[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return tensor(data, shape);
}

// A tiny model: two self-attention layers, batch 2, 6 tokens, 2 heads of 3 channels.
const [B, L, H, D] = [2, 6, 2, 3];
const C = H * D;
const layers = defineLayers([0, 1].map((block) => ({ block, site: 'self', batch: B, tokens: L, heads: H, headDim: D, cfg: false, window: null })));
const wo = random([C, C], 99);

/** The out-projection `[rows, L, H, D] → [rows, L, C]` (a fixed random linear map). */
function project(attention: Tensor): Tensor {
  const rows = attention.data.length / C;
  const out = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) out[r * C + j]! += attention.data[r * C + i]! * wo.data[i * C + j]!;
  return tensor(out, [attention.shape[0]!, L, C]);
}

/** q/k/v of a (step, layer): different at every step, so a reused output is not vacuously equal. */
const qkvAt = (step: number, layer: number) => ({ q: random([B, L, H, D], 100 * step + 10 * layer + 1), k: random([B, L, H, D], 100 * step + 10 * layer + 2), v: random([B, L, H, D], 100 * step + 10 * layer + 3) });

interface LayerRecord {
  readonly output: Tensor;
  /** The attention output handed to the out-projection (`null`: projection skipped). */
  readonly projected: Tensor | null;
  readonly qkvCalls: number;
}

/**
 * Plays the model adapter for a whole plan (`methods[step][layer]`) with core's `strategyContext` and
 * `executeAttention`; `after` sees the cache after each (step, layer).
 */
async function generate(
  methods: readonly (readonly string[])[],
  options: { strategies?: StrategyLookup; cache?: CacheManager; events?: StrategyEvent[]; after?: (step: number, layer: AttentionLayer, cache: CacheManager) => void } = {},
): Promise<LayerRecord[][]> {
  const lookup = options.strategies ?? strategySet([fullStrategy(), ...strategies()]);
  const cache = options.cache ?? new CacheManager();
  const backend = createReferenceBackend();
  const plan = { numSteps: methods.length, numLayers: layers.length, methodAt: (s: number, l: number) => methods[s]?.[l] };
  const records: LayerRecord[][] = [];
  for (let step = 0; step < methods.length; step++) {
    const row: LayerRecord[] = [];
    for (const layer of layers) {
      const method = methods[step]![layer.index]!;
      const ctx = strategyContext({ step, numSteps: methods.length, layer, method, cfg: null, backend, plan, cache: cache.scope(layer.index), strategies: lookup, report: (e) => options.events?.push(e) });
      let qkvCalls = 0;
      let projected: Tensor | null = null;
      const output = await executeAttention(lookup.get(method)!, ctx, {
        qkv: async () => (qkvCalls++, qkvAt(step, layer.index)),
        project: async (attention) => ((projected = attention), project(attention)),
      });
      row.push({ output, projected, qkvCalls });
      options.after?.(step, layer, cache);
    }
    records.push(row);
  }
  return records;
}

const full = (step: number, layer: number): Tensor => {
  const { q, k, v } = qkvAt(step, layer);
  return referenceAttention(q, k, v);
};

describe('attention-keep and attention-reuse', () => {
  // layer 0 uses the plugin, layer 1 is the raw model throughout
  const plan = [
    ['attention-keep', 'full'],
    ['attention-reuse', 'full'],
    ['full', 'full'],
    ['attention-reuse', 'full'],
    ['attention-keep', 'full'],
    ['full', 'full'],
  ];

  it('computes full attention at the keeping step and re-projects exactly the kept attention output at reuse steps', async () => {
    const run = await generate(plan);
    const [keep, reuse1, , reuse3, keep4] = run.map((row) => row[0]!);
    // the computing step is the raw model's output
    expect(maxAbsDiff(keep!.output.data, project(full(0, 0)).data)).toBeLessThan(1e-6);
    expect(keep!.qkvCalls).toBe(1);
    // reuse steps: no q/k/v, the out-projection runs on the attention output of step 0 (not on the projected output, as AST would)
    for (const r of [reuse1!, reuse3!]) {
      expect(r.qkvCalls).toBe(0);
      expect(r.projected).not.toBeNull();
      expect(maxAbsDiff(r.projected!.data, full(0, 0).data)).toBe(0);
      expect(maxAbsDiff(r.output.data, keep!.output.data)).toBe(0);
    }
    // and it is not what full attention would give at those steps
    expect(maxAbsDiff(reuse3!.output.data, project(full(3, 0)).data)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(keep4!.output.data, project(full(4, 0)).data)).toBeLessThan(1e-6);
    // the other layer is untouched: full attention at every step
    for (const [step, row] of run.entries()) expect(maxAbsDiff(row[1]!.output.data, project(full(step, 1)).data)).toBeLessThan(1e-6);
  });

  it('keeps the entry exactly from its writer to its last reader, scoped to its layer, with exact bytes', async () => {
    const held: boolean[] = [];
    const bytes = B * L * H * D * 4;
    const cache = new CacheManager();
    await generate(plan, {
      cache,
      after: (step, layer, c) => {
        if (layer.index === 0) held.push(c.scope(0).has(REUSE_CACHE));
        else expect(c.scope(1).has(REUSE_CACHE)).toBe(false);
        expect(c.currentBytes).toBe(held.at(-1) ? bytes : 0);
      },
    });
    // present after the keep (0), across a reuse (1) and a full step that neither reads nor writes it (2),
    // deleted by its last reader (3); the keep at 4 has no later reader and stores nothing
    expect(held).toEqual([true, true, true, false, false, false]);
    expect(cache.peakBytes).toBe(bytes);
    expect(cache.currentBytes).toBe(0);
  });

  it('follows core look-ahead: needed until the next writer, kept while the plan is undecided', () => {
    const lookup = strategySet([fullStrategy(), ...strategies()]);
    const ahead = (methods: (string | undefined)[], step: number) =>
      cacheNeededAhead({ step, numSteps: methods.length, layer: 0, plan: { numSteps: methods.length, numLayers: 1, methodAt: (s) => methods[s] }, strategies: lookup }, REUSE_CACHE);
    expect(ahead(['attention-keep', 'full', 'full', 'attention-reuse'], 0)).toBe(true);
    expect(ahead(['attention-keep', 'attention-keep', 'attention-reuse'], 0)).toBe(false);
    expect(ahead(['attention-keep', 'full'], 0)).toBe(false);
    expect(ahead(['attention-keep', undefined], 0)).toBe(true);
  });

  it('falls back to full attention, and says so, when the budget refuses the entry', async () => {
    const events: StrategyEvent[] = [];
    const run = await generate(plan, { cache: new CacheManager({ budgetBytes: 0 }), events });
    expect(events.map((e) => [e.type, e.step, e.layer, e.method])).toEqual([
      ['cache-refused', 0, 0, 'attention-keep'],
      ['fallback', 1, 0, 'attention-reuse'],
      ['cache-refused', 1, 0, 'attention-reuse'],
      ['fallback', 3, 0, 'attention-reuse'],
    ]);
    for (const [step, row] of run.entries()) {
      expect(row[0]!.qkvCalls).toBe(1);
      expect(maxAbsDiff(row[0]!.output.data, project(full(step, 0)).data)).toBeLessThan(1e-6);
    }
  });

  it('refuses to run without q/k/v when nothing is kept, and a kept output of another batch', async () => {
    const cache = new CacheManager();
    const ctx = strategyContext({
      step: 1,
      numSteps: 2,
      layer: layers[0]!,
      method: 'attention-reuse',
      cfg: null,
      backend: createReferenceBackend(),
      plan: { numSteps: 2, numLayers: 2, methodAt: (s) => (s === 0 ? 'attention-keep' : 'attention-reuse') },
      cache: cache.scope(0),
      strategies: strategySet([...strategies()]),
    });
    expect(attentionReuse().needs(ctx)).toBe('all');
    await expect(attentionReuse().run(ctx, null)).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT', message: expect.stringContaining('layer 0.self') });
    cache.scope(0).put(REUSE_CACHE, random([3, L, H, D], 5));
    expect(attentionReuse().needs(ctx)).toBe('none');
    await expect(attentionReuse().run(ctx, null)).rejects.toMatchObject({ code: 'ERR_DITFA_SHAPE_MISMATCH' });
  });

  it('reuses a kept conditional half under ASC-style CFG rows', async () => {
    const [layer] = defineLayers([{ block: 0, site: 'self', batch: 4, tokens: L, heads: H, headDim: D, cfg: true, window: null }]);
    const cfg: CfgLayout = { order: 'cond-first' };
    const cache = new CacheManager();
    const kept = random([2, L, H, D], 7);
    cache.scope(0).put(REUSE_CACHE, kept);
    const ctx = strategyContext({
      step: 1,
      numSteps: 2,
      layer: layer!,
      method: 'attention-reuse',
      cfg,
      backend: createReferenceBackend(),
      plan: { numSteps: 2, numLayers: 1, methodAt: (s) => (s === 0 ? 'attention-keep' : 'attention-reuse') },
      cache: cache.scope(0),
      strategies: strategySet([...strategies()]),
    });
    const out = await attentionReuse().run(ctx, null);
    expect(out).toEqual({ kind: 'attention', rows: 'conditional', output: kept });
    expect(cache.currentBytes).toBe(0);
  });
});

describe('declarations, FLOPs and registration', () => {
  it('declares its cache kind, so core refuses the reader without its writer', () => {
    expect(attentionKeep().caches).toEqual({ reads: [], writes: [REUSE_CACHE], observes: [] });
    expect(attentionReuse().caches).toEqual({ reads: [REUSE_CACHE], writes: [], observes: [] });
    expect(() => checkStrategySet(strategySet([fullStrategy(), attentionReuse()]))).toThrow(
      expect.objectContaining({ code: 'ERR_DITFA_INVALID_STRATEGY', message: expect.stringContaining('"attention-reuse" reads the cache kind "reuse-cache.attention"') }),
    );
    expect(() => checkStrategySet(strategySet([fullStrategy(), ...strategies()]))).not.toThrow();
  });

  it('costs full attention at the keeping step and nothing at a reuse step', () => {
    const shape = layerShape(layers[0]!);
    const lookup = strategySet([fullStrategy(), ...strategies()]);
    const ctx = { step: 0, numSteps: 2, layer: 0, plan: { numSteps: 2, numLayers: 2, methodAt: (s: number) => (s === 0 ? 'attention-keep' : 'attention-reuse') }, strategies: lookup };
    expect(layerAttentionFlops(attentionKeep(), shape, ctx)).toBe(rawAttentionFlops(shape));
    expect(layerAttentionFlops(attentionKeep(), shape, ctx)).toBe(4 * B * L * L * C);
    expect(layerAttentionFlops(attentionReuse(), shape, { ...ctx, step: 1 })).toBe(0);
  });

  it('registers nothing at import, then both strategies, idempotently; strategies() returns the same objects', () => {
    expect(strategyRegistry.get('attention-reuse')).toBeUndefined();
    expect(strategies()).toBe(strategies());
    const registry = new StrategyRegistry();
    register(registry);
    register(registry);
    expect(registry.names()).toEqual(['attention-keep', 'attention-reuse']);
    expect(registry.list()).toEqual([...strategies()]);
  });
});
