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
  if (result.kind === 'projected') return result.output;
  if (result.kind !== 'attention') {
    throw new InvalidArgumentError(`Expected strategy "${strategy.name}" to return an 'attention' or 'projected' result but received ${describeValue((result as { kind?: unknown }).kind)}`);
  }
  if (result.rows === 'conditional' && !ctx.cfg) {
    throw new ShapeMismatchError(`Strategy "${strategy.name}" returned the conditional half only, but the batch is not a CFG batch`);
  }
  let projected = await hooks.project(result.output, result.rows);
  if (result.rows === 'conditional') projected = concatBatch([projected, projected]);
  const event = { kind: 'projected', output: projected } as const;
  for (const name of ctx.strategies.names()) ctx.strategies.get(name)?.observe?.(ctx, event);
  return projected;
}
