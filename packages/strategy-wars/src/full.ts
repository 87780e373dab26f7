import {
  InvalidArgumentError,
  defineStrategy,
  describeValue,
  rawAttentionFlops,
  windowFlops,
  type AttentionShape,
  type AttentionStrategy,
  type StrategyFlopOptions,
  type StrategyResult,
} from '@ditfa/core';
import { RESIDUAL_CACHE, computeFullAttention, supportsResidual } from './residual.js';

/**
 * Attention FLOPs of full attention on `shape.batch` rows, plus the residual's window once more when the
 * call writes the residual for a later step (`options.writes` includes {@link RESIDUAL_CACHE}) on a layer
 * that can hold one. `full+asc` of `@ditfa/strategy-asc` counts with this on the conditional half.
 */
export function fullWithResidualFlops(shape: AttentionShape, options: StrategyFlopOptions = {}): number {
  const refresh = (options.writes ?? []).includes(RESIDUAL_CACHE) && supportsResidual(shape);
  return rawAttentionFlops(shape) + (refresh && shape.window ? windowFlops(shape.batch, shape.tokens, shape.channels, shape.window) : 0);
}

/**
 * `full`, the raw model's attention, which also refreshes the WA-RS residual: when a later step of the
 * layer reads the residual before another step refreshes it (plan look-ahead), it computes full
 * attention and `full − window` in one fused kernel call and caches the residual; otherwise plain
 * attention. It replaces core's plain `fullStrategy()` wherever `wars` runs (core's never writes the
 * residual, so `checkStrategySet` refuses `wars` without this one).
 */
export function fullWithResidual(): AttentionStrategy {
  return defineStrategy({
    name: 'full',
    description: 'full attention (refreshes the WA-RS residual when a later step reads it)',
    caches: { writes: [RESIDUAL_CACHE] },
    needs: () => 'all',
    async run(ctx, inputs): Promise<StrategyResult> {
      if (!inputs) throw new InvalidArgumentError(`Expected q/k/v inputs for full attention but received ${describeValue(inputs)}`);
      return { kind: 'attention', rows: inputs.rows, output: await computeFullAttention(ctx, inputs.q, inputs.k, inputs.v) };
    },
    flops: (shape, options) => fullWithResidualFlops(shape, options),
  });
}

let shared: AttentionStrategy | undefined;

/**
 * The one residual-refreshing `full` of this package (the same object on every call): the companion of
 * `wars` (and of `@ditfa/strategy-asc`'s `wars+asc`), so a pipeline given `[wars()]` alone gets it.
 */
export function residualFull(): AttentionStrategy {
  shared ??= fullWithResidual();
  return shared;
}
