import {
  StrategyRegistry,
  checkStrategySet,
  createReferenceBackend,
  defineLayers,
  fullStrategy,
  getKernel,
  maxAbsDiff,
  referenceAttention,
  referenceWindowAttention,
  strategyRegistry,
  tensor,
  validatePlan,
  type AttentionShape,
  type AttentionLayer,
  type PlanDocument,
  type Tensor,
} from '@ditfa/core';
import { countingBackend, createToyModel, randomTensor, runToyPipeline } from '@ditfa-examples/toy-pipeline';
import { register as registerAsc } from '@ditfa/strategy-asc';
import { register as registerAst } from '@ditfa/strategy-ast';
import { register as registerWars } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { DILATED_KERNEL, dilated, dilatedPairs, dilatedWindowAttention, register, registerKernels } from '../src/index.js';

const shape = [2, 12, 2, 4] as const;
const q = randomTensor(shape, 1);
const k = randomTensor(shape, 2);
const v = randomTensor(shape, 3);

/** Tokens `i ≡ c (mod d)` of `t`, in order, as their own sequence. */
function residueClass(t: Tensor, c: number, d: number): Tensor {
  const [B, L, H, D] = t.shape as [number, number, number, number];
  const idx = Array.from({ length: L }, (_, i) => i).filter((i) => i % d === c);
  const out = new Float32Array(B * idx.length * H * D);
  for (let b = 0; b < B; b++) idx.forEach((i, n) => out.set(t.data.subarray(((b * L + i) * H) * D, ((b * L + i + 1) * H) * D), ((b * idx.length + n) * H) * D));
  return tensor(out, [B, idx.length, H, D]);
}

describe('the dilated kernel', () => {
  it('is window attention for dilation 1, full attention for a radius that covers every token, v for radius 0', () => {
    expect(maxAbsDiff(dilatedWindowAttention({ q, k, v, radius: 3, dilation: 1 }).data, referenceWindowAttention(q, k, v, { kind: '1d', size: 3 }).data)).toBeLessThan(1e-6);
    expect(maxAbsDiff(dilatedWindowAttention({ q, k, v, radius: 12, dilation: 1 }).data, referenceAttention(q, k, v).data)).toBeLessThan(1e-6);
    expect(maxAbsDiff(dilatedWindowAttention({ q, k, v, radius: 0, dilation: 3 }).data, v.data)).toBeLessThan(1e-6);
  });

  it('is window attention within each residue class of the dilation', () => {
    const d = 3;
    const out = dilatedWindowAttention({ q, k, v, radius: 1, dilation: d });
    for (let c = 0; c < d; c++) {
      const expected = referenceWindowAttention(residueClass(q, c, d), residueClass(k, c, d), residueClass(v, c, d), { kind: '1d', size: 1 });
      expect(maxAbsDiff(residueClass(out, c, d).data, expected.data)).toBeLessThan(1e-6);
    }
  });

  it('counts its pairs exactly and rejects bad arguments with coded errors', () => {
    // L = 12, radius 1, dilation 3: every token sees itself and ±3 when they exist
    expect(dilatedPairs(12, 1, 3)).toBe(12 * 3 - 3 - 3);
    expect(dilatedPairs(12, 1, 1)).toBe(12 * 3 - 2);
    expect(() => dilatedWindowAttention({ q, k, v, radius: 1, dilation: 0 })).toThrow('Expected a positive integer for dilation but received 0 (number)');
    expect(() => dilated({ radius: -1 })).toThrow(expect.objectContaining({ code: 'ERR_DITFA_INVALID_ARGUMENT' }));
  });
});

describe('the plugin through the registries', () => {
  const registry = new StrategyRegistry();
  registry.register(fullStrategy());
  registerWars(registry);
  registerAst(registry);
  registerAsc(registry);

  it('registers nothing at import; register() adds its kernel and its strategy, idempotently', () => {
    expect(strategyRegistry.get('dilated')).toBeUndefined();
    expect(getKernel(DILATED_KERNEL, 'reference')).toBeUndefined();
    register(registry);
    register(registry);
    registerKernels();
    expect(getKernel(DILATED_KERNEL, 'reference')).toBeDefined();
    expect(registry.names()).toEqual(['full', 'wars', 'window-no-residual', 'ast', 'full+asc', 'wars+asc', 'dilated']);
    // core's plain full gave way to @ditfa/strategy-wars's, which writes what wars reads
    expect(registry.get('full')?.caches.writes).toEqual(['residual']);
    expect(() => checkStrategySet(registry)).not.toThrow();
    expect(registry.get('dilated')?.caches).toEqual({ reads: [], writes: [], observes: [] });
  });

  it('applies to self-attention layers, with or without a window', () => {
    const spec = { batch: 4, tokens: 12, heads: 2, headDim: 4, cfg: true } as const;
    const layers: readonly AttentionLayer[] = defineLayers([
      { ...spec, block: 0, site: 'self', window: { kind: '1d', size: 2 } },
      { ...spec, block: 0, site: 'temporal', window: null },
      { ...spec, block: 0, site: 'cross', kvTokens: 5, window: null },
    ]);
    expect(layers.map((l) => dilated().appliesTo!(l))).toEqual([true, true, false]);
    // no window: the default radius spans L/8 tokens, ceil(12 / 8 / 2) = 1
    const s: AttentionShape = { batch: 4, tokens: 12, channels: 8, cfg: true, window: null };
    expect(dilated().flops(s)).toBe(4 * 4 * dilatedPairs(12, 1, 2) * 8);
    expect(() => dilated().flops({ ...s, kvTokens: 5 })).toThrow(expect.objectContaining({ code: 'ERR_DITFA_INVALID_ARGUMENT' }));
  });

  it('takes its place among the planner candidates by FLOPs', () => {
    register(registry);
    // PixArt-like proportions, scaled down: L = 64, default window L/8 = 8, CFG batch
    const s: AttentionShape = { batch: 4, tokens: 64, channels: 8, cfg: true, window: { kind: '1d', size: 8 } };
    const names = ['full', 'full+asc', 'wars', 'wars+asc', 'ast', 'dilated'];
    const flops = Object.fromEntries(names.map((n) => [n, registry.require(n).flops(s)]));
    // radius ceil(8/2) = 4 with dilation 2: 64·9 pairs minus 20 clipped at each end
    expect(flops.dilated).toBe(4 * 4 * (64 * 9 - 40) * 8);
    expect(names.sort((a, b) => flops[a]! - flops[b]!)).toEqual(['ast', 'wars+asc', 'dilated', 'wars', 'full+asc', 'full']);
  });

  it('is accepted by plan validation once registered, and refused by a registry without it', () => {
    register(registry);
    const window = { kind: '1d', size: 2 } as const;
    const plan: PlanDocument = {
      format: 'ditfa-plan',
      version: 2,
      fingerprint: {
        model: { architecture: 'toy depth=2', weightsHash: 'sha256:0' },
        latent: { channels: 8, height: 4, width: 4 },
        steps: 3,
        sampler: 'toy',
        guidance: 4,
        cfgOrder: 'cond-first',
        layers: [
          { id: '0.self', window },
          { id: '1.self', window },
        ],
      },
      threshold: { delta: 0.05 },
      candidates: ['ast', 'wars+asc', 'dilated', 'wars', 'full+asc'],
      steps: [
        [{ method: 'full', loss: null, flopsFraction: 1 }, { method: 'dilated', loss: null, flopsFraction: 0.4 }],
        [{ method: 'dilated', loss: 0.01, flopsFraction: 0.4 }, { method: 'wars', loss: 0.01, flopsFraction: 0.6 }],
        [{ method: 'ast', loss: 0.02, flopsFraction: 0 }, { method: 'dilated', loss: 0.02, flopsFraction: 0.4 }],
      ],
      totals: { attentionFlopsFraction: 0.47 },
    };
    expect(validatePlan(JSON.parse(JSON.stringify(plan)), { methods: registry })).toEqual(plan);
    // core knows no method by name: a plan is checked against the strategies a run has
    const without = new StrategyRegistry();
    for (const name of registry.names()) if (name !== 'dilated') without.register(registry.require(name));
    expect(() => validatePlan(plan, { methods: without })).toThrow(/steps\[0\]\[1\]\.method: unknown method "dilated"/);
  });

  it('runs in a generation through the registry, on the reference backend and on a backend without its own kernel', async () => {
    register(registry);
    const model = createToyModel({ blocks: 2, tokens: 12, heads: 2, headDim: 4 });
    const plan = [
      ['full', 'full'],
      ['dilated', 'wars'],
      ['ast', 'dilated'],
    ];
    const window = { kind: '1d', size: 2 } as const;
    const run = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan, strategies: registry, window });
    expect(run.events).toEqual([]);
    const steps = run.trace.filter((t) => t.method === 'dilated');
    expect(steps.map((t) => [t.step, t.layer])).toEqual([
      [1, 0],
      [2, 1],
    ]);
    for (const t of steps) {
      const { q, k, v } = t.inputs!;
      expect(maxAbsDiff(t.output!.data, dilatedWindowAttention({ q, k, v, radius: 1, dilation: 2 }).data)).toBe(0);
    }
    const other = countingBackend({ ...createReferenceBackend(), name: 'some-native-backend' });
    const elsewhere = await runToyPipeline({ model, samples: [1, 2], cfg: 'cond-first', plan, strategies: registry, window, backend: other.backend });
    expect(maxAbsDiff(elsewhere.latents.data, run.latents.data)).toBe(0);
  });
});
