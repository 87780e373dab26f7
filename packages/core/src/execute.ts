import { InvalidArgumentError, ShapeMismatchError, describeValue } from './errors.js';
import { keyLengthsBackend, validateKeyLengths } from './key-lengths.js';
import type { AttentionStrategy, RowSelection, StrategyContext } from './strategy.js';
import { allocateFloats, cfgHalves, tensor, type Tensor } from './tensor.js';

/** What {@link AttentionHooks.qkv} returns: q `[rows, Lq, H, D]`, k and v `[rows, Lkv, H, D]`. */
export interface QkvTensors {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /**
   * For layers whose keys are masked per row (cross-attention over each sample's valid caption tokens,
   * moved to the front of its row): row `r` attends to keys `0 … keyLengths[r]−1` only, each in
   * `[1, Lkv]`. Absent: every key is valid. The strategy needs to know nothing: {@link executeAttention}
   * hands it a `ctx.backend` whose `attention` applies the lengths and whose window kernels refuse.
   */
  keyLengths?: readonly number[];
}

/** The dense work a model adapter provides around one attention layer's call. */
export interface AttentionHooks {
  /**
   * q/k/v (`[rows, L, H, D]` each) for every row, or for the conditional CFG half only (the rows
   * `cfgHalves(x, ctx.cfg).cond` selects). Called at most once, and not at all when the strategy needs nothing.
   */
  qkv(rows: RowSelection): Promise<QkvTensors>;
  /**
   * Out-projection of an attention output `[rows, L, H, D]` → `[rows, L, C]`. For a conditional-half
   * result (ASC) {@link executeAttention} passes `into`: the `[rows, L, C]` rows of the layer's whole
   * `[B, L, C]` output that the conditional half occupies. A hook that writes its projection there and
   * returns `into` saves a copy; one that ignores `into` returns its own tensor, which is copied in.
   */
  project(attention: Tensor, rows: RowSelection, into?: Tensor): Promise<Tensor>;
  /** Channels of the projected output `[B, L, C]` (default `heads·headDim` of the layer). */
  readonly channels?: number;
}

function expectShape(strategy: AttentionStrategy, what: string, t: Tensor, expected: readonly number[]): void {
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
    throw new ShapeMismatchError(`Expected strategy "${strategy.name}" to return ${what} of shape [${expected.join(', ')}] but received [${t.shape.join(', ')}]`);
  }
}

/**
 * The ASC copy: projects the conditional half once, straight into its rows of the layer's `[B, L, C]`
 * output (pooled memory from the backend when it has a pool: every element is written), then copies
 * those rows to the unconditional half.
 */
async function projectBroadcast(strategy: AttentionStrategy, ctx: StrategyContext, hooks: AttentionHooks, attention: Tensor, shape: readonly number[]): Promise<Tensor> {
  const whole = tensor(allocateFloats(shape.reduce((a, b) => a * b, 1), ctx.backend.allocate?.bind(ctx.backend)), shape);
  const { cond, uncond } = cfgHalves(whole, ctx.cfg!);
  const given = await hooks.project(attention, 'conditional', cond);
  if (given.data !== cond.data) {
    expectShape(strategy, 'a projected conditional half', given, cond.shape);
    cond.data.set(given.data);
  }
  uncond.data.set(cond.data);
  return whole;
}

/**
 * Runs one attention layer through a strategy, following the contract of {@link AttentionStrategy}: ask
 * what the strategy needs, compute only that, run it, check the result against the layer's sizes
 * (`ctx.layer`; a mismatch throws a {@link ShapeMismatchError} naming the strategy), project (once, on
 * the conditional rows under ASC, then copy to both halves), and let every strategy of the pipeline
 * observe the projected output of a computed call. Returns `[B, L, C]`. When the hooks give per-row
 * key lengths, the strategy's `ctx.backend` applies them (see {@link QkvTensors.keyLengths}). The
 * pipeline's dispatcher is the one caller in a model's run; strategy tests may call it directly.
 */
export async function executeAttention(strategy: AttentionStrategy, ctx: StrategyContext, hooks: AttentionHooks): Promise<Tensor> {
  const need = strategy.needs(ctx);
  if (need !== 'all' && need !== 'conditional' && need !== 'none') {
    throw new InvalidArgumentError(`Expected strategy "${strategy.name}" to need 'all', 'conditional' or 'none' but received ${describeValue(need)}`);
  }
  const rows: RowSelection = need === 'conditional' && ctx.cfg ? 'conditional' : 'all';
  const given = need === 'none' ? null : await hooks.qkv(rows);
  const inputs = given ? { rows, q: given.q, k: given.k, v: given.v } : null;
  let runCtx = ctx;
  if (given?.keyLengths !== undefined) {
    const lengths = validateKeyLengths(given.keyLengths, given.k?.shape?.[0] ?? 0, given.k?.shape?.[1] ?? 0);
    runCtx = Object.freeze({ ...ctx, backend: keyLengthsBackend(ctx.backend, given.k, given.v, lengths, ctx.layer.id) });
  }
  const result = await strategy.run(runCtx, inputs);
  const layer = ctx.layer;
  const channels = hooks.channels ?? layer.heads * layer.headDim;
  if (result.kind === 'projected') {
    expectShape(strategy, 'a projected output', result.output, [layer.batch, layer.tokens, channels]);
    return result.output;
  }
  if (result.kind !== 'attention') {
    throw new InvalidArgumentError(`Expected strategy "${strategy.name}" to return an 'attention' or 'projected' result but received ${describeValue((result as { kind?: unknown }).kind)}`);
  }
  if (result.rows === 'conditional' && !ctx.cfg) {
    throw new ShapeMismatchError(`Strategy "${strategy.name}" returned the conditional half only, but the batch is not a CFG batch`);
  }
  const resultRows = result.rows === 'conditional' ? layer.batch / 2 : layer.batch;
  expectShape(strategy, `attention (rows ${result.rows})`, result.output, [resultRows, layer.tokens, layer.heads, layer.headDim]);
  const projected = result.rows === 'conditional'
    ? await projectBroadcast(strategy, ctx, hooks, result.output, [layer.batch, layer.tokens, channels])
    : await hooks.project(result.output, result.rows);
  const event = { kind: 'projected', output: projected } as const;
  for (const name of ctx.strategies.names()) ctx.strategies.get(name)?.observe?.(ctx, event);
  return projected;
}
