import { InvalidArgumentError } from './errors.js';
import { rawAttentionFlops } from './flops.js';
import type { AttentionStrategy, StrategyResult } from './strategy.js';
import { defineStrategy } from './strategy-registry.js';

/**
 * The raw model's attention, `full`: plain attention on every row, no cache. Packages whose methods need
 * a full step to refresh something (WA-RS's residual) provide their own `full` that does, and the
 * pipeline uses theirs when they are installed.
 */
export function fullStrategy(): AttentionStrategy {
  return defineStrategy({
    name: 'full',
    description: 'full attention (the raw model)',
    needs: () => 'all',
    async run(ctx, inputs): Promise<StrategyResult> {
      if (!inputs) throw new InvalidArgumentError('Expected q/k/v inputs for full attention but received none');
      return { kind: 'attention', rows: inputs.rows, output: await ctx.backend.attention(inputs.q, inputs.k, inputs.v, { compute: ctx.compute }) };
    },
    flops: (shape) => rawAttentionFlops(shape),
  });
}
