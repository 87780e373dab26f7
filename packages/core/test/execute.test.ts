import { describe, expect, it } from 'vitest';
import {
  CacheManager,
  ErrorCode,
  ShapeMismatchError,
  createReferenceBackend,
  defineLayers,
  defineStrategy,
  executeAttention,
  strategyContext,
  strategySet,
  tensor,
  uniformPlanView,
  type AttentionHooks,
  type AttentionStrategy,
  type CfgOrder,
  type ProjectedEvent,
  type RowSelection,
  type StrategyContext,
  type Tensor,
} from '../src/index.js';
import { randomTensor } from './helpers.js';

// n = 2 samples under CFG (B = 4 rows), L = 3 tokens, H = 2 heads, D = 2, C = H·D = 4
const n = 2, L = 3, H = 2, D = 2, C = 4;
const B = 2 * n;
const [cfgLayer, plainLayer] = defineLayers([
  { block: 0, site: 'self', batch: B, tokens: L, heads: H, headDim: D, cfg: true, window: { kind: '1d', size: 1 } },
  { block: 1, site: 'self', batch: B, tokens: L, heads: H, headDim: D, cfg: false, window: null },
]);

interface Log {
  qkv: RowSelection[];
  project: [RowSelection, number][];
}
const newLog = (): Log => ({ qkv: [], project: [] });

/** q/k/v of the rows asked for; project multiplies by 10 and flattens heads into channels. */
function hooks(log: Log, extra: Partial<AttentionHooks> = {}): AttentionHooks {
  return {
    qkv: async (rows) => {
      log.qkv.push(rows);
      const t = randomTensor([rows === 'conditional' ? n : B, L, H, D], 7);
      return { q: t, k: t, v: t };
    },
    project: async (attention, rows) => {
      log.project.push([rows, attention.shape[0]!]);
      return tensor(attention.data.map((x) => 10 * x), [attention.shape[0]!, L, C]);
    },
    ...extra,
  };
}

type Observed = { ctx: StrategyContext; event: ProjectedEvent; by: string };

function context(strategy: AttentionStrategy, observed: Observed[], options: { cfg?: CfgOrder | null } = {}): StrategyContext {
  const order = options.cfg === undefined ? 'cond-first' : options.cfg;
  const watcher = defineStrategy({
    name: 'watcher',
    needs: () => 'none',
    run: async () => {
      throw new Error('not run');
    },
    observe: (ctx, event) => void observed.push({ ctx, event, by: 'watcher' }),
    flops: () => 0,
  });
  const layer = order === null ? plainLayer! : cfgLayer!;
  return strategyContext({
    step: 0,
    numSteps: 1,
    layer,
    method: strategy.name,
    cfg: order === null ? null : { order },
    backend: createReferenceBackend(),
    plan: uniformPlanView(1, 2, strategy.name),
    cache: new CacheManager().scope(layer.index),
    strategies: strategySet([strategy, watcher]),
  });
}

/** A strategy returning attention of `outRows` rows labelled `rowsOut`; it remembers what it returned. */
function attentionOf(name: string, need: 'all' | 'conditional', rowsOut: RowSelection, outRows: number, returned: Tensor[] = []): AttentionStrategy {
  return defineStrategy({
    name,
    needs: () => need,
    run: async (_c, inputs) => {
      const output = randomTensor([outRows, L, H, D], inputs!.q.shape[0]!);
      returned.push(output);
      return { kind: 'attention', rows: rowsOut, output };
    },
    flops: () => 1,
  });
}

describe('executeAttention', () => {
  it.each<CfgOrder>(['cond-first', 'cond-second'])(
    'under %s projects the conditional half once and copies it to both halves; every strategy observes the copy',
    async (order) => {
      const log = newLog();
      const observed: Observed[] = [];
      const returned: Tensor[] = [];
      const s = attentionOf('cond', 'conditional', 'conditional', n, returned);
      const self = defineStrategy({ ...s, name: 'cond', observe: (ctx, event) => void observed.push({ ctx, event, by: 'cond' }) });
      const ctx = context(self, observed, { cfg: order });
      const out = await executeAttention(self, ctx, hooks(log));
      expect(log).toEqual({ qkv: ['conditional'], project: [['conditional', n]] });
      expect(out.shape).toEqual([B, L, C]);
      const half = n * L * C;
      const expected = Array.from(returned[0]!.data.map((x) => 10 * x)); // float32, as the projection computes it
      expect(Array.from(out.data.subarray(0, half))).toEqual(expected);
      expect(Array.from(out.data.subarray(half))).toEqual(expected);
      expect(observed.map((o) => o.by).sort()).toEqual(['cond', 'watcher']);
      for (const o of observed) {
        expect(o.event).toEqual({ kind: 'projected', output: out });
        expect(o.event.output).toBe(out);
        expect(o.ctx).toBe(ctx);
      }
    },
  );

  it("copies the conditional half into memory from the backend's allocate when it has one", async () => {
    const returned: Tensor[] = [];
    const s = attentionOf('cond', 'conditional', 'conditional', n, returned);
    const base = context(s, []);
    const asked: number[] = [];
    const pooled: Float32Array[] = [];
    const backend = {
      ...base.backend,
      allocate: (length: number) => {
        asked.push(length);
        const block = new Float32Array(length).fill(Number.NaN); // recycled memory holds anything
        pooled.push(block);
        return block;
      },
    };
    const out = await executeAttention(s, { ...base, backend }, hooks(newLog()));
    expect(asked).toEqual([B * L * C]);
    expect(out.data).toBe(pooled[0]);
    const expected = Array.from(returned[0]!.data.map((x) => 10 * x));
    expect(Array.from(out.data.subarray(0, n * L * C))).toEqual(expected);
    expect(Array.from(out.data.subarray(n * L * C))).toEqual(expected);
  });

  it.each<CfgOrder>(['cond-first', 'cond-second'])(
    'under %s passes the conditional rows of the output to project(); a hook that writes there saves the copy',
    async (order) => {
      const returned: Tensor[] = [];
      const s = attentionOf('cond', 'conditional', 'conditional', n, returned);
      const base = context(s, [], { cfg: order });
      const pooled: Float32Array[] = [];
      const backend = { ...base.backend, allocate: (length: number) => (pooled.push(new Float32Array(length).fill(Number.NaN)), pooled.at(-1)!) };
      const intos: (Tensor | undefined)[] = [];
      const out = await executeAttention(s, { ...base, backend }, hooks(newLog(), {
        project: async (attention, rows, into) => {
          intos.push(into);
          expect(rows).toBe('conditional');
          into!.data.set(attention.data.map((x) => 10 * x));
          return into!;
        },
      }));
      expect(out.data).toBe(pooled[0]);
      const half = n * L * C;
      const into = intos[0]!;
      expect(into.shape).toEqual([n, L, C]);
      // the conditional rows of the whole output, in its memory
      expect(into.data.buffer).toBe(out.data.buffer);
      expect(into.data.byteOffset).toBe(out.data.byteOffset + (order === 'cond-first' ? 0 : half * 4));
      const expected = Array.from(returned[0]!.data.map((x) => 10 * x));
      expect(Array.from(out.data.subarray(0, half))).toEqual(expected);
      expect(Array.from(out.data.subarray(half))).toEqual(expected);
    },
  );

  it('refuses a projected conditional half of the wrong shape with a coded error naming the strategy', async () => {
    const s = attentionOf('cond', 'conditional', 'conditional', n);
    const bad = hooks(newLog(), { project: async (attention) => tensor(new Float32Array(attention.data.length), [attention.shape[0]!, L * C]) });
    const err = await executeAttention(s, context(s, []), bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeMismatchError);
    expect((err as ShapeMismatchError).code).toBe(ErrorCode.ShapeMismatch);
    expect((err as Error).message).toContain('"cond"');
    expect((err as Error).message).toContain(`[${n}, ${L}, ${C}]`);
  });

  it('projects every row of an attention result and observes it', async () => {
    const log = newLog();
    const observed: Observed[] = [];
    const s = attentionOf('all', 'all', 'all', B);
    const out = await executeAttention(s, context(s, observed), hooks(log));
    expect(log).toEqual({ qkv: ['all'], project: [['all', B]] });
    expect(out.shape).toEqual([B, L, C]);
    expect(observed.map((o) => o.event.output)).toEqual([out]);
  });

  it('asks for all rows when a strategy needs the conditional half of a batch without CFG', async () => {
    const log = newLog();
    const s = attentionOf('cond', 'conditional', 'all', B);
    await executeAttention(s, context(s, [], { cfg: null }), hooks(log));
    expect(log.qkv).toEqual(['all']);
    expect(log.project).toEqual([['all', B]]);
  });

  it('computes nothing for a strategy that needs nothing, passes its projected output through and observes nothing', async () => {
    const log = newLog();
    const observed: Observed[] = [];
    const cached = randomTensor([B, L, C], 3);
    const s = defineStrategy({
      name: 'reuse',
      needs: () => 'none',
      run: async (_c, inputs) => {
        expect(inputs).toBeNull();
        return { kind: 'projected', output: cached };
      },
      flops: () => 0,
    });
    expect(await executeAttention(s, context(s, observed), hooks(log))).toBe(cached);
    expect(log).toEqual({ qkv: [], project: [] });
    expect(observed).toEqual([]); // nothing was computed, so nothing to observe
  });

  it('checks results against ctx.layer with a ShapeMismatchError naming the strategy, before projecting', async () => {
    const log = newLog();
    const rowsWrong = attentionOf('rows-wrong', 'all', 'all', n); // B/2 rows claimed as 'all'
    await expect(executeAttention(rowsWrong, context(rowsWrong, []), hooks(log))).rejects.toThrow(ShapeMismatchError);
    await expect(executeAttention(rowsWrong, context(rowsWrong, []), hooks(log))).rejects.toThrow(
      /"rows-wrong" to return attention \(rows all\) of shape \[4, 3, 2, 2\] but received \[2, 3, 2, 2\]/,
    );
    const halfWrong = attentionOf('half-wrong', 'conditional', 'conditional', B); // every row claimed as the conditional half
    await expect(executeAttention(halfWrong, context(halfWrong, []), hooks(log))).rejects.toMatchObject({
      code: ErrorCode.ShapeMismatch,
      message: expect.stringMatching(/"half-wrong" to return attention \(rows conditional\) of shape \[2, 3, 2, 2\] but received \[4, 3, 2, 2\]/),
    });
    const tokensWrong = defineStrategy({ name: 'tokens-wrong', needs: () => 'all', run: async () => ({ kind: 'attention', rows: 'all', output: randomTensor([B, L + 1, H, D], 1) }), flops: () => 0 });
    await expect(executeAttention(tokensWrong, context(tokensWrong, []), hooks(log))).rejects.toThrow(/"tokens-wrong" .* of shape \[4, 3, 2, 2\] but received \[4, 4, 2, 2\]/);
    expect(log.project).toEqual([]);
    const flat = defineStrategy({ name: 'flat', needs: () => 'none', run: async () => ({ kind: 'projected', output: randomTensor([B, L * C], 1) }), flops: () => 0 });
    await expect(executeAttention(flat, context(flat, []), hooks(log))).rejects.toThrow(/"flat" to return a projected output of shape \[4, 3, 4\] but received \[4, 12\]/);
  });

  it('checks projected outputs against the channels the hooks state, H·D by default', async () => {
    const wide = randomTensor([B, L, 6], 5);
    const s = defineStrategy({ name: 'reuse', needs: () => 'none', run: async () => ({ kind: 'projected', output: wide }), flops: () => 0 });
    expect(await executeAttention(s, context(s, []), hooks(newLog(), { channels: 6 }))).toBe(wide);
    await expect(executeAttention(s, context(s, []), hooks(newLog()))).rejects.toThrow(/shape \[4, 3, 4\] but received \[4, 3, 6\]/);
  });

  it('rejects conditional rows from a batch without CFG, unknown result kinds and unknown needs', async () => {
    const log = newLog();
    const s = attentionOf('cond', 'all', 'conditional', n);
    await expect(executeAttention(s, context(s, [], { cfg: null }), hooks(log))).rejects.toThrow(/"cond" returned the conditional half only, but the batch is not a CFG batch/);
    const odd = defineStrategy({ name: 'odd', needs: () => 'none', run: async () => ({ kind: 'weird' }) as never, flops: () => 0 });
    await expect(executeAttention(odd, context(odd, []), hooks(log))).rejects.toThrow(/"odd" to return an 'attention' or 'projected' result but received "weird"/);
    const greedy = defineStrategy({ name: 'greedy', needs: () => 'most' as never, run: async () => ({ kind: 'weird' }) as never, flops: () => 0 });
    const untouched = newLog();
    await expect(executeAttention(greedy, context(greedy, []), hooks(untouched))).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    expect(untouched).toEqual({ qkv: [], project: [] });
  });
});
