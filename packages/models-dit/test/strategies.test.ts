import { CacheManager, type Tensor, cloneTensor, createReferenceBackend, defineStrategy, fullStrategy, strategySet, tensor, uniformPlanView } from '@ditfa/core';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ditConfig } from '../src/config.js';
import { loadModel } from '../src/load.js';
import type { TransformerModel } from '../src/model.js';
import { randomCheckpoint } from '../src/random.js';
import { maxRelError } from './fixtures.js';

const config = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 3, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });

function noise(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) d[i] = Math.sin((s = s * 16807 % 2147483647) * 1e-3);
  return tensor(d, shape);
}

const rowsOf = (t: Tensor, start: number, end: number): Float32Array => {
  const row = t.data.length / t.shape[0]!;
  return t.data.subarray(start * row, end * row);
};

// 'auto' is the native dense engine where @ditfa/kernels-cpu runs (its project() hook writes an ASC half in
// place); onnxruntime's hook returns its own tensor, which executeAttention copies in.
describe.each(['auto', 'onnxruntime'] as const)('the attention-strategy contract in the adapter (dense engine %s)', (denseEngine) => {
  let model: TransformerModel;
  beforeAll(async () => {
    model = await loadModel(randomCheckpoint(config, { seed: 11 }), { config, threads: 1, denseEngine });
  });
  afterAll(() => model?.dispose());

  const seen: number[] = [];
  const projected: Tensor[] = [];
  const asc = defineStrategy({
    name: 'cond-only',
    needs: () => 'conditional',
    async run(ctx, inputs) {
      seen.push(inputs!.q.shape[0]!);
      return { kind: 'attention', rows: inputs!.rows, output: await ctx.backend.attention(inputs!.q, inputs!.k, inputs!.v) };
    },
    observe: (_ctx, event) => void projected.push(event.output),
    flops: () => 0,
  });

  for (const order of ['cond-first', 'cond-second'] as const) {
    it(`'conditional' projects only the conditional half (${order}) and copies its attention to both halves`, async () => {
      const x = noise([4, 4, 8, 8], 5);
      const labels = order === 'cond-first' ? [3, 7, 10, 10] : [10, 10, 3, 7];
      const cond = { classLabels: labels };
      const strategies = strategySet([fullStrategy(), asc]);
      seen.length = 0;
      projected.length = 0;
      const full = await model.forward(x, 400, cond, { cfg: { order } });
      const halved = await model.forward(x, 400, cond, { cfg: { order }, strategies, methods: ['cond-only', 'cond-only', 'cond-only'] });
      expect(seen).toEqual([2, 2, 2]);
      // each layer's projected output holds the conditional half's projection in both halves
      expect(projected.map((p) => p.shape)).toEqual(new Array(3).fill([4, 64 / 4, config.hiddenSize]));
      for (const p of projected) {
        const half = p.data.length / 2;
        expect(p.data.every(Number.isFinite)).toBe(true);
        expect(Array.from(p.data.subarray(0, half))).toEqual(Array.from(p.data.subarray(half)));
        expect(p.data.some((v) => v !== 0)).toBe(true);
      }
      const c = order === 'cond-first' ? [0, 2] : [2, 4];
      const u = order === 'cond-first' ? [2, 4] : [0, 2];
      // the conditional rows are computed exactly as in the full model
      expect(maxRelError(rowsOf(halved.output, c[0]!, c[1]!), rowsOf(full.output, c[0]!, c[1]!))).toBeLessThan(1e-5);
      // the unconditional rows got the conditional attention, so they differ from the full model's
      expect(maxRelError(rowsOf(halved.output, u[0]!, u[1]!), rowsOf(full.output, u[0]!, u[1]!))).toBeGreaterThan(1e-4);
    });
  }

  it("'none' skips q/k/v and the out-projection; a 'projected' result is the attention branch; observers see computed outputs", async () => {
    const stored = new Map<number, Tensor>();
    const observed: number[] = [];
    const reuse = defineStrategy({
      name: 'reuse',
      needs: () => 'none',
      async run(ctx, inputs) {
        expect(inputs).toBeNull();
        return { kind: 'projected', output: stored.get(ctx.layer.index)! };
      },
      observe(ctx, event) {
        observed.push(ctx.layer.index);
        stored.set(ctx.layer.index, cloneTensor(event.output));
      },
      flops: () => 0,
    });
    const strategies = strategySet([fullStrategy(), reuse]);
    const x = noise([2, 4, 8, 8], 9);
    const cond = { classLabels: [1, 2] };
    const first = await model.forward(x, 300, cond, { strategies, step: 0 });
    expect(observed).toEqual([0, 1, 2]);
    const traced: string[] = [];
    const again = await model.forward(x, 300, cond, { strategies, step: 1, methods: [undefined, 'reuse', undefined], trace: (n) => traced.push(n) });
    expect(maxRelError(again.output.data, first.output.data)).toBeLessThan(1e-6);
    expect(traced).not.toContain('block.1.q');
    expect(traced).not.toContain('block.1.attn_core');
    expect(traced).toContain('block.0.q');
    expect(observed).toEqual([0, 1, 2, 0, 2]);
  });

  it('WA-RS and AST through forward(): the caches of step 0 serve step 1 of the same input, and the last reader drops them', async () => {
    // [wars()] brings the residual-refreshing `full` of @ditfa/strategy-wars as its companion
    const strategies = strategySet([wars(), ast()]);
    expect(strategies.get('full')!.caches.writes).toEqual(['residual']);
    const x = noise([4, 4, 8, 8], 13);
    const cond = { classLabels: [3, 7, 10, 10] };
    const cfg = { order: 'cond-first' } as const;
    for (const method of ['wars', 'ast'] as const) {
      const plan = uniformPlanView(2, 3, method);
      const cache = new CacheManager();
      const step0 = await model.forward(x, 250, cond, { strategies, plan, cache, cfg, step: 0 });
      // one entry per layer: the residual full − window [4, 16, 2, 16], or the projected output [4, 16, 32]
      expect(cache.entries()).toEqual([0, 1, 2].map((layer) => ({ layer, kind: method === 'wars' ? 'residual' : 'projected', bytes: 4 * 16 * 32 * 4 })));
      const events: unknown[] = [];
      const step1 = await model.forward(x, 250, cond, { strategies, plan, cache, cfg, step: 1, onEvent: (e) => events.push(e) });
      expect(events).toEqual([]);
      expect(cache.entries()).toEqual([]);
      // window + (full − window) is full attention up to rounding; AST returns the very output of step 0
      if (method === 'wars') expect(maxRelError(step1.output.data, step0.output.data)).toBeLessThan(1e-5);
      else expect(maxRelError(step1.output.data, step0.output.data)).toBe(0);
    }
  });

  it('reports attention and other time separately', async () => {
    const r = await model.forward(noise([1, 4, 8, 8], 2), 10, { classLabels: [0] }, { backend: createReferenceBackend() });
    expect(r.timings.attentionMs).toBeGreaterThan(0);
    expect(r.timings.otherMs).toBeGreaterThan(0);
  });
});

describe('timings', () => {
  it('onnxruntime time is part of the other time', async () => {
    const model = await loadModel(randomCheckpoint(config, { seed: 1 }), { config, threads: 1 });
    const r = await model.forward(noise([2, 4, 8, 8], 3), 10, { classLabels: [0, 1] });
    expect(r.timings.ortMs).toBeGreaterThan(0);
    expect(r.timings.ortMs).toBeLessThanOrEqual(r.timings.otherMs);
    await model.dispose();
  });
});
