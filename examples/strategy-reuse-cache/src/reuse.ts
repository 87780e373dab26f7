import {
  InvalidArgumentError,
  ShapeMismatchError,
  cacheNeededAhead,
  defineStrategy,
  describeValue,
  rawAttentionFlops,
  type AttentionStrategy,
  type QkvInputs,
  type RowSelection,
  type StrategyContext,
  type StrategyResult,
  type Tensor,
} from '@ditfa/core';

/**
 * This plugin's cache kind: a layer's attention output **before** the out-projection, `[rows, L, H, D]`.
 * Namespaced with the package name so it cannot collide with another package's kinds.
 */
export const REUSE_CACHE = 'reuse-cache.attention';

function requireInputs(ctx: StrategyContext, inputs: QkvInputs | null): QkvInputs {
  if (!inputs) {
    throw new InvalidArgumentError(`Expected q/k/v inputs for "${ctx.method}" at step ${ctx.step}, layer ${ctx.layer.id} but received ${describeValue(inputs)}`);
  }
  return inputs;
}

/**
 * Full attention on `inputs`, kept under {@link REUSE_CACHE} when a later step of the layer reads it
 * before another step rewrites it (core's `cacheNeededAhead`, from the declarations of the plan's
 * strategies); otherwise any older entry is dropped. A refused `put` (budget) drops the stale entry and
 * reports `cache-refused`, so the later reader falls back instead of reusing an older output.
 *
 * The output is kept by reference: it is a fresh tensor from the backend, and the contract makes it
 * read-only for the adapter that receives it.
 */
async function attendAndKeep(ctx: StrategyContext, inputs: QkvInputs): Promise<StrategyResult> {
  const { rows, q, k, v } = inputs;
  const output = await ctx.backend.attention(q, k, v, { compute: ctx.compute });
  if (!cacheNeededAhead(ctx, REUSE_CACHE)) {
    ctx.cache.delete(REUSE_CACHE);
  } else {
    const put = ctx.cache.put(REUSE_CACHE, output);
    if (!put.stored) {
      ctx.cache.delete(REUSE_CACHE);
      ctx.report({ type: 'cache-refused', step: ctx.step, layer: ctx.layer.index, method: ctx.method, kind: REUSE_CACHE, bytes: put.bytes });
    }
  }
  return { kind: 'attention', rows, output };
}

/** The rows a cached output covers: every row, or the conditional half of a CFG batch. */
function rowsOf(ctx: StrategyContext, cached: Tensor): RowSelection {
  const rows = cached.shape[0];
  if (rows === ctx.layer.batch) return 'all';
  if (ctx.cfg && rows !== undefined && 2 * rows === ctx.layer.batch) return 'conditional';
  throw new ShapeMismatchError(`Expected the cached attention output of layer ${ctx.layer.id} to have ${ctx.layer.batch} rows but it has [${cached.shape.join(', ')}]`);
}

/**
 * `attention-keep`: the refreshing (computing) step. Full attention on every row — the raw model's
 * output — and, when a later `attention-reuse` step of the layer reads it, the attention output kept in
 * the layer's cache. Declares `caches.writes`, so core's look-ahead knows a later reader is served, and
 * so a planner counts it (full attention FLOPs; keeping costs no FLOPs).
 */
export function attentionKeep(): AttentionStrategy {
  return defineStrategy({
    name: 'attention-keep',
    description: 'full attention; keeps the attention output (before the out-projection) for a later attention-reuse step',
    caches: { writes: [REUSE_CACHE] },
    needs: () => 'all',
    run: async (ctx, inputs) => attendAndKeep(ctx, requireInputs(ctx, inputs)),
    flops: (shape) => rawAttentionFlops(shape),
  });
}

/**
 * `attention-reuse`: returns the attention output kept by the layer's most recent `attention-keep` step,
 * as an `'attention'` result, so the model adapter **re-projects** it with the out-projection (unlike
 * `ast` of `@ditfa/strategy-ast`, which keeps the projected output and skips the projection). It needs
 * no q/k/v. The entry is dropped after its last reader (core's look-ahead).
 *
 * When nothing is kept (the budget refused it), `needs` asks for every row and the step computes full
 * attention — keeping it for a later reader, like `attention-keep` — and reports a `fallback` event.
 */
export function attentionReuse(): AttentionStrategy {
  return defineStrategy({
    name: 'attention-reuse',
    description: "reuse the layer's attention output (before the out-projection) kept at its last attention-keep step",
    caches: { reads: [REUSE_CACHE] },
    needs: (ctx) => (ctx.cache.has(REUSE_CACHE) ? 'none' : 'all'),
    async run(ctx, inputs): Promise<StrategyResult> {
      const cached = ctx.cache.get(REUSE_CACHE);
      if (cached) {
        const rows = rowsOf(ctx, cached);
        if (!cacheNeededAhead(ctx, REUSE_CACHE)) ctx.cache.delete(REUSE_CACHE);
        return { kind: 'attention', rows, output: cached };
      }
      const given = requireInputs(ctx, inputs);
      ctx.report({
        type: 'fallback',
        step: ctx.step,
        layer: ctx.layer.index,
        method: ctx.method,
        to: 'full',
        reason: 'no attention output is kept for this layer (the cache budget refused it, or no earlier attention-keep step computed it)',
      });
      return attendAndKeep(ctx, given);
    },
    flops: () => 0,
  });
}
