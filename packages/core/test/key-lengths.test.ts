import { describe, expect, it } from 'vitest';
import {
  CacheManager,
  ErrorCode,
  attentionWithKeyLengths,
  cfgHalves,
  cloneTensor,
  createReferenceBackend,
  defineLayers,
  defineStrategy,
  executeAttention,
  fullStrategy,
  strategyContext,
  strategySet,
  tensor,
  uniformPlanView,
  type AttentionHooks,
  type AttentionStrategy,
  type RowSelection,
  type Tensor,
} from '../src/index.js';
import { maxDiff, randomTensor } from './helpers.js';

/** Independent oracle: per row, per head, per query, softmax over keys j < len[b] only (float64 loops). */
function maskedOracle(q: Tensor, k: Tensor, v: Tensor, lengths: readonly number[]): Float32Array {
  const [B, Lq, H, D] = q.shape as [number, number, number, number];
  const Lkv = k.shape[1]!;
  const out = new Float32Array(q.data.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Lq; i++) {
        const s: number[] = [];
        for (let j = 0; j < lengths[b]!; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q.data[((b * Lq + i) * H + h) * D + d]! * k.data[((b * Lkv + j) * H + h) * D + d]!;
          s.push(dot / Math.sqrt(D));
        }
        const m = Math.max(...s);
        const p = s.map((x) => Math.exp(x - m));
        const z = p.reduce((a, c) => a + c, 0);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < p.length; j++) acc += p[j]! * v.data[((b * Lkv + j) * H + h) * D + d]!;
          out[((b * Lq + i) * H + h) * D + d] = acc / z;
        }
      }
    }
  }
  return out;
}

const B = 4, Lq = 5, Lkv = 6, H = 2, D = 3;
const q = randomTensor([B, Lq, H, D], 1);
const k = randomTensor([B, Lkv, H, D], 2);
const v = randomTensor([B, Lkv, H, D], 3);
const backend = createReferenceBackend();

describe('attentionWithKeyLengths', () => {
  it('equals masked attention over each row’s first keys (rows of one length not contiguous)', async () => {
    const lengths = [2, 6, 2, 4];
    const out = await attentionWithKeyLengths(backend, q, k, v, lengths);
    expect(out.shape).toEqual(q.shape);
    expect(maxDiff(out.data, maskedOracle(q, k, v, lengths))).toBeLessThan(1e-6);
    // masking matters: the unmasked result differs
    expect(maxDiff(out.data, (await backend.attention(q, k, v)).data)).toBeGreaterThan(1e-3);
  });

  it('is plain attention when every key is valid, writes into out, and counts one call per distinct length', async () => {
    const full = await attentionWithKeyLengths(backend, q, k, v, [Lkv, Lkv, Lkv, Lkv]);
    expect(Array.from(full.data)).toEqual(Array.from((await backend.attention(q, k, v)).data));
    const calls: number[] = [];
    const counting = { ...backend, attention: async (a: Tensor, b: Tensor, c: Tensor) => (calls.push(a.shape[0]!), backend.attention(a, b, c)) };
    const out = tensor(new Float32Array(q.data.length), q.shape);
    const r = await attentionWithKeyLengths(counting, q, k, v, [3, 3, 1, 3], { out });
    expect(r.data).toBe(out.data);
    expect(calls.sort()).toEqual([1, 3]);
    expect(maxDiff(out.data, maskedOracle(q, k, v, [3, 3, 1, 3]))).toBeLessThan(1e-6);
  });

  it("writes its output into the backend's allocate memory when it has one, every element", async () => {
    const lengths = [2, 6, 2, 4];
    const given: Float32Array[] = [];
    const pooled = { ...backend, allocate: (n: number) => (given.push(new Float32Array(n).fill(Number.NaN)), given.at(-1)!) };
    const out = await attentionWithKeyLengths(pooled, q, k, v, lengths);
    expect(given).toHaveLength(1);
    expect(out.data).toBe(given[0]);
    expect(maxDiff(out.data, maskedOracle(q, k, v, lengths))).toBeLessThan(1e-6);
    const short = { ...backend, allocate: (n: number) => new Float32Array(n - 1) };
    await expect(attentionWithKeyLengths(short, q, k, v, lengths)).rejects.toMatchObject({ code: ErrorCode.ShapeMismatch });
  });

  it('refuses lengths outside [1, Lkv] or of the wrong count with coded errors', async () => {
    await expect(attentionWithKeyLengths(backend, q, k, v, [0, 1, 1, 1])).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('keyLengths[0]') });
    await expect(attentionWithKeyLengths(backend, q, k, v, [7, 1, 1, 1])).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(attentionWithKeyLengths(backend, q, k, v, [1, 1])).rejects.toMatchObject({ code: ErrorCode.ShapeMismatch });
  });
});

describe('executeAttention with per-row key lengths', () => {
  // a CFG cross-attention layer: 2 samples (lengths 2 and 5), both halves share the prompt's lengths
  const lengths = [2, 5, 2, 5];
  const [layer] = defineLayers([{ block: 0, site: 'cross', batch: B, tokens: Lq, kvTokens: Lkv, heads: H, headDim: D, cfg: true, window: null }]);
  const hooks = (log: RowSelection[] = []): AttentionHooks => ({
    qkv: async (rows) => {
      log.push(rows);
      if (rows === 'all') return { q, k, v, keyLengths: lengths };
      const half = (t: Tensor) => cfgHalves(t, { order: 'cond-first' }).cond;
      return { q: half(q), k: half(k), v: half(v), keyLengths: lengths.slice(0, 2) };
    },
    project: async (attention) => tensor(new Float32Array(attention.data), [attention.shape[0]!, Lq, H * D]),
  });
  const run = (strategy: AttentionStrategy, h = hooks()) =>
    executeAttention(
      strategy,
      strategyContext({ step: 0, numSteps: 1, layer: layer!, method: strategy.name, cfg: { order: 'cond-first' }, backend, plan: uniformPlanView(1, 1, strategy.name), cache: new CacheManager().scope(0), strategies: strategySet([strategy]) }),
      h,
    );
  const expected = maskedOracle(q, k, v, lengths);

  it('core full attends to each row’s valid keys without knowing about them', async () => {
    const out = await run(fullStrategy());
    expect(maxDiff(out.data, expected)).toBeLessThan(1e-6);
  });

  it('applies the lengths of the rows a strategy takes: a view of the conditional half, or the conditional rows asked for', async () => {
    const sliced = defineStrategy({
      name: 'slice',
      needs: () => 'all',
      run: async (ctx, inputs) => {
        const c = (t: Tensor) => cfgHalves(t, ctx.cfg!).cond;
        return { kind: 'attention', rows: 'conditional', output: await ctx.backend.attention(c(inputs!.q), c(inputs!.k), c(inputs!.v)) };
      },
      flops: () => 0,
    });
    const log: RowSelection[] = [];
    const asked = defineStrategy({
      name: 'asked',
      needs: () => 'conditional',
      run: async (ctx, inputs) => ({ kind: 'attention', rows: inputs!.rows, output: await ctx.backend.attention(inputs!.q, inputs!.k, inputs!.v) }),
      flops: () => 0,
    });
    const half = expected.subarray(0, expected.length / 2);
    for (const out of [await run(sliced), await run(asked, hooks(log))]) {
      expect(maxDiff(out.data.subarray(0, half.length), half)).toBeLessThan(1e-6);
      expect(maxDiff(out.data.subarray(half.length), half)).toBeLessThan(1e-6);
    }
    expect(log).toEqual(['conditional']);
  });

  it('refuses keys it cannot place and window kernels with coded errors', async () => {
    const copying = defineStrategy({
      name: 'copy',
      needs: () => 'all',
      run: async (ctx, inputs) => ({ kind: 'attention', rows: 'all', output: await ctx.backend.attention(inputs!.q, cloneTensor(inputs!.k), inputs!.v) }),
      flops: () => 0,
    });
    await expect(run(copying)).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('masked per row') });
    const windowed = defineStrategy({
      name: 'win',
      needs: () => 'all',
      run: async (ctx, inputs) => ({ kind: 'attention', rows: 'all', output: await ctx.backend.windowAttention(inputs!.q, inputs!.k, inputs!.v, { kind: '1d', size: 1 }) }),
      flops: () => 0,
    });
    await expect(run(windowed)).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('windowAttention') });
    const bad: AttentionHooks = { ...hooks(), qkv: async () => ({ q, k, v, keyLengths: [1, 2] }) };
    await expect(run(fullStrategy(), bad)).rejects.toMatchObject({ code: ErrorCode.ShapeMismatch });
  });
});
