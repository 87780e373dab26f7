import {
  InvalidArgumentError,
  cfgHalves,
  condRows,
  defineStrategy,
  describeValue,
  requireWindow,
  windowFlops,
  type AttentionLayer,
  type AttentionStrategy,
  type QkvInputs,
  type StrategyContext,
  type StrategyResult,
} from '@ditfa/core';
import {
  RESIDUAL_CACHE,
  residualFull,
  computeFullAttention,
  computeWindowWithResidual,
  fullWithResidualFlops,
  requireContextWindow,
  supportsResidual,
} from '@ditfa/strategy-wars/base';

/**
 * ASC, attention sharing across CFG: attention is computed for the conditional half of the CFG batch
 * only, and the model adapter copies it to the unconditional half (the result has `rows:
 * 'conditional'`; the out-projection runs once, on those rows). Which half is conditional is what the
 * adapter states in `ctx.cfg` (DiT and OpenSora: first; diffusers' PixArt: second), never guessed.
 *
 * `needs()` answers `'conditional'`, so the adapter projects q/k/v of the conditional rows only. Given
 * every row anyway, the strategies take the conditional half themselves (views, no copy). Both apply to
 * CFG layers only (`layer.cfg`); called without CFG (`ctx.cfg === null`) there is nothing to share and
 * they run their inner method on every row.
 *
 * The WA-RS residual is `@ditfa/strategy-wars`'s convention (`RESIDUAL_CACHE`): `full+asc` writes it,
 * `wars+asc` reads it.
 */

function requireInputs(ctx: StrategyContext, inputs: QkvInputs | null): QkvInputs {
  if (!inputs) throw new InvalidArgumentError(`Expected q/k/v inputs for "${ctx.method}" at step ${ctx.step}, layer ${ctx.layer.id} but received ${describeValue(inputs)}`);
  return inputs;
}

/** The conditional rows of `inputs` (itself when it holds only those, or when there is no CFG). */
function conditional(ctx: StrategyContext, inputs: QkvInputs): QkvInputs {
  if (!ctx.cfg || inputs.rows === 'conditional') return inputs;
  const cfg = ctx.cfg;
  return { rows: 'conditional', q: cfgHalves(inputs.q, cfg).cond, k: cfgHalves(inputs.k, cfg).cond, v: cfgHalves(inputs.v, cfg).cond };
}

/**
 * `full+asc`: full attention on the conditional half, copied to both halves. When a later WA-RS step of
 * the layer reads the residual (plan look-ahead), it refreshes it from the conditional half: the residual
 * is stored for the conditional half only (`[B/2, L, H, D]`) and broadcast when read, which is the
 * reference code's "copy to both halves" in half the bytes.
 */
export function fullAsc(): AttentionStrategy {
  return defineStrategy({
    name: 'full+asc',
    description: 'full attention on the conditional CFG half, copied to the unconditional half (refreshes the residual from that half)',
    caches: { writes: [RESIDUAL_CACHE] },
    appliesTo: (layer: AttentionLayer) => layer.cfg,
    needs: (ctx) => (ctx.cfg ? 'conditional' : 'all'),
    async run(ctx, inputs): Promise<StrategyResult> {
      const { rows, q, k, v } = conditional(ctx, requireInputs(ctx, inputs));
      return { kind: 'attention', rows, output: await computeFullAttention(ctx, q, k, v) };
    },
    flops: (shape, options) => fullWithResidualFlops({ ...shape, batch: condRows(shape) }, options),
  });
}

/**
 * `wars+asc`: WA-RS on the conditional half — `windowAttention(q_c, k_c, v_c) + R_c`, where `R_c` is the
 * conditional half of the layer's cached residual (or the whole residual, when `full+asc` made it from
 * that half) — copied to both halves. Applies where `wars` does and the layer is a CFG layer. When no
 * residual is cached, `needs()` asks for every row and the step computes full attention on the whole
 * batch and reports a `fallback` to `full`.
 */
export function warsAsc(): AttentionStrategy {
  return defineStrategy({
    name: 'wars+asc',
    description: 'WA-RS on the conditional CFG half, copied to the unconditional half',
    caches: { reads: [RESIDUAL_CACHE] },
    companions: [residualFull()],
    appliesTo: (layer: AttentionLayer) => layer.cfg && supportsResidual(layer),
    needs: (ctx) => (ctx.cfg && ctx.cache.has(RESIDUAL_CACHE) ? 'conditional' : 'all'),
    async run(ctx, inputs): Promise<StrategyResult> {
      requireContextWindow(ctx);
      const given = requireInputs(ctx, inputs);
      const cond = conditional(ctx, given);
      const out = await computeWindowWithResidual(ctx, cond);
      if (out) return { kind: 'attention', rows: cond.rows, output: out };
      // Full attention on what we were given: every row after needs() said 'all'.
      ctx.report({
        type: 'fallback',
        step: ctx.step,
        layer: ctx.layer.index,
        method: ctx.method,
        to: given.rows === 'all' ? 'full' : 'full+asc',
        reason: 'no WA-RS residual is cached for this layer (the cache budget refused it, or no earlier step computed it)',
      });
      return { kind: 'attention', rows: given.rows, output: await computeFullAttention(ctx, given.q, given.k, given.v) };
    },
    flops: (shape) => windowFlops(condRows(shape), shape.tokens, shape.channels, requireWindow(shape, 'wars+asc')),
  });
}

/** Both ASC compositions, `full+asc` and `wars+asc`. */
export function asc(): readonly [AttentionStrategy, AttentionStrategy] {
  return [fullAsc(), warsAsc()];
}
