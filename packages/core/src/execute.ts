import { InvalidArgumentError, ShapeMismatchError, describeValue } from './errors.js';
import type { AttentionStrategy, RowSelection, StrategyContext } from './strategy.js';
import { concatBatch, type Tensor } from './tensor.js';

/** The dense work a model adapter provides around a self-attention call. */
export interface AttentionHooks {
  /**
   * q/k/v (`[rows, L, H, D]` each) for every row, or for the conditional CFG half only (the rows
   * `cfgHalves(x, ctx.cfg).cond` selects). Called at most once, and not at all when the strategy needs nothing.
   */
  qkv(rows: RowSelection): Promise<{ q: Tensor; k: Tensor; v: Tensor }>;
  /** Out-projection of an attention output `[rows, L, H, D]` → `[rows, L, C]`. */
  project(attention: Tensor, rows: RowSelection): Promise<Tensor>;
  /**
   * The block's sizes. When given, a strategy's result is checked before it is used: attention must be
   * `[rows, L, H, D]` (rows = B, or B/2 for the conditional half) and a projected output `[B, L, C]`;
   * a mismatch throws a {@link ShapeMismatchError} naming the strategy.
   */
  readonly shape?: BlockShape;
}

/** Sizes of one block's self-attention: batch rows B (2n under CFG), tokens L, heads H, head dim D, channels C. */
export interface BlockShape {
  readonly batch: number;
  readonly tokens: number;
  readonly heads: number;
  readonly headDim: number;
  readonly channels: number;
}

function expectShape(strategy: AttentionStrategy, what: string, t: Tensor, expected: readonly number[]): void {
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
    throw new ShapeMismatchError(`Expected strategy "${strategy.name}" to return ${what} of shape [${expected.join(', ')}] but received [${t.shape.join(', ')}]`);
  }
}

/**
 * Runs one block's self-attention through a strategy, following the contract of {@link AttentionStrategy}
 * so every adapter does it the same way: ask what the strategy needs, compute only that, run it,
 * project (once, on the conditional rows under ASC, then copy to both halves), and let every strategy
 * of the pipeline observe the projected output of a computed step. Returns `[B, L, C]`.
 */
export async function executeAttention(strategy: AttentionStrategy, ctx: StrategyContext, hooks: AttentionHooks): Promise<Tensor> {
  const need = strategy.needs(ctx);
  if (need !== 'all' && need !== 'conditional' && need !== 'none') {
    throw new InvalidArgumentError(`Expected strategy "${strategy.name}" to need 'all', 'conditional' or 'none' but received ${describeValue(need)}`);
  }
  const rows: RowSelection = need === 'conditional' && ctx.cfg ? 'conditional' : 'all';
  const inputs = need === 'none' ? null : { rows, ...(await hooks.qkv(rows)) };
  const result = await strategy.run(ctx, inputs);
  const shape = hooks.shape;
  if (result.kind === 'projected') {
    if (shape) expectShape(strategy, 'a projected output', result.output, [shape.batch, shape.tokens, shape.channels]);
    return result.output;
  }
  if (result.kind !== 'attention') {
    throw new InvalidArgumentError(`Expected strategy "${strategy.name}" to return an 'attention' or 'projected' result but received ${describeValue((result as { kind?: unknown }).kind)}`);
  }
  if (result.rows === 'conditional' && !ctx.cfg) {
    throw new ShapeMismatchError(`Strategy "${strategy.name}" returned the conditional half only, but the batch is not a CFG batch`);
  }
  if (shape) {
    const rows = result.rows === 'conditional' ? shape.batch / 2 : shape.batch;
    expectShape(strategy, `attention (rows ${result.rows})`, result.output, [rows, shape.tokens, shape.heads, shape.headDim]);
  }
  let projected = await hooks.project(result.output, result.rows);
  if (result.rows === 'conditional') projected = concatBatch([projected, projected]);
  const event = { kind: 'projected', output: projected } as const;
  for (const name of ctx.strategies.names()) ctx.strategies.get(name)?.observe?.(ctx, event);
  return projected;
}
