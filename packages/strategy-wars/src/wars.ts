import {
  InvalidArgumentError,
  defineStrategy,
  describeValue,
  requireWindow,
  windowFlops,
  type AttentionLayer,
  type AttentionStrategy,
  type QkvInputs,
  type StrategyContext,
  type StrategyResult,
  type WindowSpec,
} from '@ditfa/core';
import { RESIDUAL_CACHE, computeFullAttention, computeWindowWithResidual, requireContextWindow, supportsResidual } from './residual.js';
import { residualFull } from './full.js';

function requireInputs(method: string, inputs: QkvInputs | null): QkvInputs {
  if (!inputs) throw new InvalidArgumentError(`Expected q/k/v inputs for "${method}" but received ${describeValue(inputs)}`);
  return inputs;
}

/**
 * WA-RS, window attention with residual sharing. At a WA-RS step the layer returns
 * `windowAttention(q, k, v, ctx.window) + R`, where `R = full − window` was cached by the layer's most
 * recent refreshing step (`full` of this package or `full+asc`, which compute it only when the plan has
 * a later WA-RS step that reads it). When no residual is cached (the budget refused it), the step
 * computes full attention instead (refreshing the residual if a later step needs one) and reports a
 * `fallback` event.
 *
 * The window is the layer's (`ctx.window`, part of the plan fingerprint): the refreshing step computes
 * the residual with that same window, and `window' + (full − window)` with another window would not be
 * full attention, so WA-RS takes no window of its own. It applies to self-attention layers with a
 * window ({@link supportsResidual}); on a layer without one, `run` throws a coded error.
 */
export function wars(): AttentionStrategy {
  return defineStrategy({
    name: 'wars',
    description: 'window attention + the residual (full − window) cached at the last full step (WA-RS)',
    caches: { reads: [RESIDUAL_CACHE] },
    companions: [residualFull()],
    appliesTo: (layer: AttentionLayer) => supportsResidual(layer),
    needs: () => 'all',
    async run(ctx: StrategyContext, inputs): Promise<StrategyResult> {
      requireContextWindow(ctx);
      const qkv = requireInputs(ctx.method, inputs);
      const out = await computeWindowWithResidual(ctx, qkv);
      if (out) return { kind: 'attention', rows: qkv.rows, output: out };
      ctx.report({
        type: 'fallback',
        step: ctx.step,
        layer: ctx.layer.index,
        method: ctx.method,
        to: 'full',
        reason: 'no WA-RS residual is cached for this layer (the cache budget refused it, or no earlier step computed it)',
      });
      return { kind: 'attention', rows: qkv.rows, output: await computeFullAttention(ctx, qkv.q, qkv.k, qkv.v) };
    },
    flops: (shape) => windowFlops(shape.batch, shape.tokens, shape.channels, requireWindow(shape, 'wars')),
  });
}

export interface WindowAttentionNoResidualOptions {
  /** The window; the layer's (`ctx.window`) by default. */
  readonly window?: WindowSpec;
}

/**
 * Plain window attention **without** the residual: the paper's ablation baseline, which loses much
 * more quality than WA-RS at the same FLOPs. It reads and writes no cache, so it may run at any step.
 * It applies where the layer has a window (with its own window: on any self-attention layer).
 */
export function windowAttentionNoResidual(options: WindowAttentionNoResidualOptions = {}): AttentionStrategy {
  const own = options.window;
  if (own !== undefined && (typeof own !== 'object' || own === null || (own.kind !== '1d' && own.kind !== '2d'))) {
    throw new InvalidArgumentError(`Expected a window { kind: '1d' | '2d', ... } but received ${describeValue(own)}`);
  }
  const name = 'window-no-residual';
  return defineStrategy({
    name,
    description: 'window attention without residual (ablation baseline)',
    appliesTo: (layer: AttentionLayer) =>
      own === undefined ? layer.window !== null : supportsResidual({ ...layer, window: own }) && (own.kind === '1d' || own.rows * own.cols === layer.tokens),
    needs: () => 'all',
    async run(ctx, inputs): Promise<StrategyResult> {
      const window = own ?? requireContextWindow(ctx);
      const { rows, q, k, v } = requireInputs(ctx.method, inputs);
      return { kind: 'attention', rows, output: await ctx.backend.windowAttention(q, k, v, window, { compute: ctx.compute }) };
    },
    flops: (shape) => windowFlops(shape.batch, shape.tokens, shape.channels, own ?? requireWindow(shape, name)),
  });
}
