import { describe, expect, it } from 'vitest';
import {
  CacheManager,
  ShapeMismatchError,
  createReferenceBackend,
  defineStrategy,
  executeAttention,
  strategySet,
  tensor,
  type AttentionHooks,
  type AttentionStrategy,
  type RowSelection,
  type StrategyContext,
  type StrategyEvent,
  type Tensor,
} from '../src/index.js';
import { randomTensor } from './helpers.js';

// n = 2 samples under CFG (B = 4 rows), L = 3 tokens, H = 2 heads, D = 2, C = H·D = 4
const n = 2, L = 3, H = 2, D = 2, C = 4;
const B = 2 * n;
const shape = { batch: B, tokens: L, heads: H, headDim: D, channels: C };

/** q/k/v rows are numbered so a test can see which rows were asked for; project sums heads into channels ×10. */
function hooks(log: { qkv: RowSelection[]; project: [RowSelection, number][] }, withShape = true): AttentionHooks {
  return {
    qkv: async (rows) => {
      log.qkv.push(rows);
      const R = rows === 'conditional' ? n : B;
      const t = randomTensor([R, L, H, D], 7);
      return { q: t, k: t, v: t };
    },
    project: async (attention, rows) => {
      log.project.push([rows, attention.shape[0]!]);
      return tensor(attention.data.map((x) => 10 * x), [attention.shape[0]!, L, C]);
    },
    ...(withShape ? { shape } : {}),
  };
}

function context(strategy: AttentionStrategy, observed: StrategyEvent[], cfg = true): StrategyContext {
  const watcher = defineStrategy({ name: 'watcher', needs: () => 'none', run: async () => { throw new Error('not run'); }, observe: (_ctx, e) => void observed.push(e), flops: () => 0 });
  return {
    step: 0, block: 0, numSteps: 1, numBlocks: 1, method: strategy.name,
    cfg: cfg ? { order: 'cond-first' } : null,
    backend: createReferenceBackend(), plan: { numSteps: 1, numBlocks: 1, methodAt: () => strategy.name },
    cache: new CacheManager().scope(0), window: { kind: '1d', size: 1 }, compute: 'fp32',
    strategies: strategySet([strategy, watcher]), report: () => undefined,
  };
}

const attentionOf = (name: string, need: 'all' | 'conditional', rowsOut: RowSelection, outRows: number): AttentionStrategy =>
  defineStrategy({ name, needs: () => need, run: async (_c, inputs) => ({ kind: 'attention', rows: rowsOut, output: randomTensor([outRows, L, H, D], inputs!.q.shape[0]!) }), flops: () => 1 });

describe('executeAttention', () => {
  it('projects the conditional half once and copies it to both halves; observers see the copy', async () => {
    const log = { qkv: [] as RowSelection[], project: [] as [RowSelection, number][] };
    const observed: StrategyEvent[] = [];
    const s = attentionOf('cond', 'conditional', 'conditional', n);
    const out = await executeAttention(s, context(s, observed), hooks(log));
    expect(log).toEqual({ qkv: ['conditional'], project: [['conditional', n]] });
    expect(out.shape).toEqual([B, L, C]);
    const half = n * L * C;
    expect(Array.from(out.data.subarray(half))).toEqual(Array.from(out.data.subarray(0, half)));
    expect(observed.map((e) => e.kind)).toEqual(['projected']);
    expect((observed[0] as { output: Tensor }).output).toBe(out);
  });

  it('asks for all rows when a strategy needs the conditional half of a batch without CFG', async () => {
    const log = { qkv: [] as RowSelection[], project: [] as [RowSelection, number][] };
    const s = attentionOf('cond', 'conditional', 'all', n);
    await executeAttention(s, context(s, [], false), { ...hooks(log, false) });
    expect(log.qkv).toEqual(['all']);
  });

  it('computes nothing for a strategy that needs nothing and passes its projected output through', async () => {
    const log = { qkv: [] as RowSelection[], project: [] as [RowSelection, number][] };
    const observed: StrategyEvent[] = [];
    const cached = randomTensor([B, L, C], 3);
    const s = defineStrategy({ name: 'reuse', needs: () => 'none', run: async (_c, inputs) => { expect(inputs).toBeNull(); return { kind: 'projected', output: cached }; }, flops: () => 0 });
    expect(await executeAttention(s, context(s, observed), hooks(log))).toBe(cached);
    expect(log).toEqual({ qkv: [], project: [] });
    expect(observed).toEqual([]); // nothing was computed, so nothing to observe
  });

  it('rejects results of the wrong shape with a ShapeMismatchError naming the strategy, before projecting', async () => {
    const log = { qkv: [] as RowSelection[], project: [] as [RowSelection, number][] };
    const rowsWrong = attentionOf('rows-wrong', 'all', 'all', n); // B/2 rows claimed as 'all'
    await expect(executeAttention(rowsWrong, context(rowsWrong, []), hooks(log))).rejects.toThrow(ShapeMismatchError);
    await expect(executeAttention(rowsWrong, context(rowsWrong, []), hooks(log))).rejects.toThrow(/"rows-wrong" to return attention \(rows all\) of shape \[4, 3, 2, 2\] but received \[2, 3, 2, 2\]/);
    expect(log.project).toEqual([]);
    const flat = defineStrategy({ name: 'flat', needs: () => 'none', run: async () => ({ kind: 'projected', output: randomTensor([B, L * C], 1) }), flops: () => 0 });
    await expect(executeAttention(flat, context(flat, []), hooks(log))).rejects.toThrow(/"flat" to return a projected output of shape \[4, 3, 4\] but received \[4, 12\]/);
    // without `shape` the adapter checks for itself: the same result goes through to its projection
    await executeAttention(rowsWrong, context(rowsWrong, []), hooks(log, false));
    expect(log.project).toEqual([['all', n]]);
  });

  it('rejects conditional rows from a batch without CFG and unknown result kinds', async () => {
    const log = { qkv: [] as RowSelection[], project: [] as [RowSelection, number][] };
    const s = attentionOf('cond', 'all', 'conditional', n);
    await expect(executeAttention(s, context(s, [], false), hooks(log, false))).rejects.toThrow(/not a CFG batch/);
    const odd = defineStrategy({ name: 'odd', needs: () => 'none', run: async () => ({ kind: 'weird' }) as never, flops: () => 0 });
    await expect(executeAttention(odd, context(odd, []), hooks(log))).rejects.toThrow(/"odd" to return an 'attention' or 'projected' result but received "weird"/);
  });
});
