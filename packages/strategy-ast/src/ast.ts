import {
  InvalidArgumentError,
  cacheNeededAhead,
  cloneTensor,
  defineStrategy,
  describeValue,
  type AttentionStrategy,
  type StrategyResult,
} from '@ditfa/core';

/** Cache kind of AST: a layer's attention branch output after the out-projection, `[B, L, C]`. */
export const PROJECTED_CACHE = 'projected';

/**
 * AST, attention sharing across timesteps. A layer under AST returns its attention branch output
 * cached at its most recent computed step. Like the reference code it caches the output **after** the
 * out-projection, so an AST step needs no q/k/v and no out-projection (`needs` answers `'none'` and
 * `run` returns a `'projected'` result).
 *
 * The cache is written by {@link AttentionStrategy.observe} (declared in `caches.observes`): after every
 * computed (step, layer) the adapter shows the projected output to every strategy of the pipeline, and
 * AST keeps a copy only when a later step of the layer reads it before another computed step refreshes
 * it — with AST's declarations, when the layer's next step is an AST step (`cacheNeededAhead`);
 * otherwise it drops any older copy. An AST step after which no step reads the copy drops it after
 * returning it. AST never touches the WA-RS residual.
 *
 * When no output is cached (the cache budget refused it), `needs` asks for every row and `run`
 * computes plain full attention for the layer — leaving the residual alone, like AST itself — and
 * reports a `fallback` event.
 */
export function ast(): AttentionStrategy {
  return defineStrategy({
    name: 'ast',
    description: "reuse the layer's projected attention output from its last computed step (AST)",
    caches: { reads: [PROJECTED_CACHE], observes: [PROJECTED_CACHE] },
    needs: (ctx) => (ctx.cache.has(PROJECTED_CACHE) ? 'none' : 'all'),
    async run(ctx, inputs): Promise<StrategyResult> {
      const cached = ctx.cache.get(PROJECTED_CACHE);
      if (cached) {
        if (!cacheNeededAhead(ctx, PROJECTED_CACHE)) ctx.cache.delete(PROJECTED_CACHE);
        return { kind: 'projected', output: cached };
      }
      if (!inputs) {
        throw new InvalidArgumentError(
          `Expected q/k/v inputs for "${ctx.method}" at step ${ctx.step}, layer ${ctx.layer.id}, which has no cached output to reuse, but received ${describeValue(inputs)}`,
        );
      }
      ctx.report({
        type: 'fallback',
        step: ctx.step,
        layer: ctx.layer.index,
        method: ctx.method,
        to: 'full',
        reason: 'no projected output is cached for this layer (the cache budget refused it, or no earlier step computed it)',
      });
      const { rows, q, k, v } = inputs;
      return { kind: 'attention', rows, output: await ctx.backend.attention(q, k, v, { compute: ctx.compute }) };
    },
    observe(ctx, event) {
      if (!cacheNeededAhead(ctx, PROJECTED_CACHE)) {
        ctx.cache.delete(PROJECTED_CACHE);
        return;
      }
      // The adapter owns `event.output` and may reuse its memory at the next step: keep a copy.
      const put = ctx.cache.put(PROJECTED_CACHE, cloneTensor(event.output));
      if (!put.stored) {
        ctx.cache.delete(PROJECTED_CACHE);
        ctx.report({ type: 'cache-refused', step: ctx.step, layer: ctx.layer.index, method: ctx.method, kind: PROJECTED_CACHE, bytes: put.bytes });
      }
    },
    flops: () => 0,
  });
}
