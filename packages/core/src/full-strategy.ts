import { CacheKind } from './cache.js';
import { InvalidArgumentError } from './errors.js';
import { builtinMethodFlops } from './flops.js';
import { residualNeededAhead } from './lookahead.js';
import type { AttentionStrategy, StrategyContext, StrategyResult } from './strategy.js';
import { defineStrategy } from './strategy-registry.js';
import type { Tensor } from './tensor.js';

/**
 * Computes full attention on `q/k/v` and, when a later step of the block consumes the residual
 * (plan lookahead), also the residual `full − window` through the fused kernel, stored in the block's
 * cache under {@link CacheKind.Residual}. When the cache refuses it (budget), the stale residual is
 * dropped so later WA-RS steps fall back to full attention instead of using it.
 */
export async function computeFullAttention(ctx: StrategyContext, q: Tensor, k: Tensor, v: Tensor): Promise<Tensor> {
  if (!residualNeededAhead(ctx)) {
    return ctx.backend.attention(q, k, v, { compute: ctx.compute });
  }
  const { out, residual } = await ctx.backend.fullWithResidual(q, k, v, ctx.window, { compute: ctx.compute });
  const put = ctx.cache.put(CacheKind.Residual, residual);
  if (!put.stored) {
    ctx.cache.delete(CacheKind.Residual);
    ctx.report({ type: 'cache-refused', step: ctx.step, block: ctx.block, method: ctx.method, kind: CacheKind.Residual, bytes: put.bytes });
  }
  return out;
}

/** The raw model's attention. Refreshes the WA-RS residual when the plan needs it. */
export function fullStrategy(): AttentionStrategy {
  return defineStrategy({
    name: 'full',
    description: 'full attention (refreshes the WA-RS residual when a later step uses it)',
    traits: { refreshesResidual: true },
    needs: () => 'all',
    async run(ctx, inputs): Promise<StrategyResult> {
      if (!inputs) throw new InvalidArgumentError('Expected q/k/v inputs for full attention but received none');
      return { kind: 'attention', rows: inputs.rows, output: await computeFullAttention(ctx, inputs.q, inputs.k, inputs.v) };
    },
    flops: (shape, options) => builtinMethodFlops.full(shape, options),
  });
}
