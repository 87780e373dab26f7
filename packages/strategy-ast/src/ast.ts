import {
  CacheKind,
  InvalidArgumentError,
  builtinMethodFlops,
  cloneTensor,
  defineStrategy,
  describeValue,
  outputNeededNext,
  type AttentionStrategy,
  type StrategyResult,
} from '@ditfa/core';

/**
 * AST, attention sharing across timesteps. A block under AST returns its attention branch output
 * cached at its most recent computed step. Like the reference code it caches the output **after** the
 * out-projection, so an AST step needs no q/k/v and no out-projection (`needs` answers `'none'` and
 * `run` returns a `'projected'` result).
 *
 * The cache is written by {@link AttentionStrategy.observe}: after every computed (step, block) the
 * adapter shows the projected output to every strategy of the pipeline, and AST keeps a copy only when
 * the block's next step is an AST step (plan lookahead); otherwise it drops any older copy. An AST step
 * whose next step is not AST drops the copy after returning it. AST never touches the WA-RS residual.
 *
 * When no output is cached (the cache budget refused it), `needs` asks for every row and `run`
 * computes plain full attention for the block — leaving the residual alone, like AST itself — and
 * reports a `fallback` event.
 */
export function ast(): AttentionStrategy {
  return defineStrategy({
    name: 'ast',
    description: "reuse the block's projected attention output from its last computed step (AST)",
    traits: { reusesOutput: true },
    needs: (ctx) => (ctx.cache.has(CacheKind.Projected) ? 'none' : 'all'),
    async run(ctx, inputs): Promise<StrategyResult> {
      const cached = ctx.cache.get(CacheKind.Projected);
      if (cached) {
        if (!outputNeededNext(ctx)) ctx.cache.delete(CacheKind.Projected);
        return { kind: 'projected', output: cached };
      }
      if (!inputs) {
        throw new InvalidArgumentError(
          `Expected q/k/v inputs for "${ctx.method}" at step ${ctx.step}, block ${ctx.block}, which has no cached output to reuse, but received ${describeValue(inputs)}`,
        );
      }
      ctx.report({
        type: 'fallback',
        step: ctx.step,
        block: ctx.block,
        method: ctx.method,
        to: 'full',
        reason: 'no projected output is cached for this block (the cache budget refused it, or no earlier step computed it)',
      });
      const { rows, q, k, v } = inputs;
      return { kind: 'attention', rows, output: await ctx.backend.attention(q, k, v, { compute: ctx.compute }) };
    },
    observe(ctx, event) {
      if (!outputNeededNext(ctx)) {
        ctx.cache.delete(CacheKind.Projected);
        return;
      }
      // The adapter owns `event.output` and may reuse its memory at the next step: keep a copy.
      const put = ctx.cache.put(CacheKind.Projected, cloneTensor(event.output));
      if (!put.stored) {
        ctx.cache.delete(CacheKind.Projected);
        ctx.report({ type: 'cache-refused', step: ctx.step, block: ctx.block, method: ctx.method, kind: CacheKind.Projected, bytes: put.bytes });
      }
    },
    flops: () => builtinMethodFlops.ast(),
  });
}
