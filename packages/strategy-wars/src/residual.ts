import {
  InvalidArgumentError,
  ShapeMismatchError,
  allocateFloats,
  cacheNeededAhead,
  cfgHalves,
  sameShape,
  sliceBatch,
  tensor,
  type AttentionLayer,
  type LookaheadContext,
  type QkvInputs,
  type StrategyContext,
  type Tensor,
  type WindowSpec,
} from '@ditfa/core';

/**
 * The WA-RS residual convention, shared by every strategy that writes or reads the residual (`full`
 * and `wars` of this package, `full+asc` and `wars+asc` of `@ditfa/strategy-asc`).
 *
 * A layer's residual `full − window` lives in its cache scope under {@link RESIDUAL_CACHE} as `[R, L, H, D]`:
 * - `R = B` (every row) when a step computed full attention on the whole batch (`full`);
 * - `R = B/2` (the conditional half) when it was computed from the conditional half alone (`full+asc`).
 *   It stands for both halves: the reference code copies it into both halves, which holds the same
 *   values in twice the bytes; here it is broadcast when it is read.
 *
 * {@link computeFullAttention} writes it (with `ctx.window`); {@link computeWindowWithResidual} reads it.
 */

/** Cache kind of the WA-RS residual (`full − window`) of one attention layer. */
export const RESIDUAL_CACHE = 'residual';

/**
 * True when a layer can hold a WA-RS residual: it has a window and is a self-attention layer (keys are
 * the query tokens). Window methods apply there and nowhere else.
 */
export function supportsResidual(layer: Pick<AttentionLayer, 'window' | 'tokens' | 'kvTokens'>): boolean {
  return layer.window !== null && (layer.kvTokens === undefined || layer.kvTokens === layer.tokens);
}

/** True when a later step of this layer reads the residual before another step refreshes it (plan look-ahead). */
export function residualNeededAhead(ctx: LookaheadContext | StrategyContext): boolean {
  return cacheNeededAhead(ctx, RESIDUAL_CACHE);
}

/** `ctx.window`, or a coded error naming the method and the layer when the layer has none. */
export function requireContextWindow(ctx: StrategyContext): WindowSpec {
  if (ctx.window === null) {
    throw new InvalidArgumentError(
      `Expected a window for method "${ctx.method}" on layer ${ctx.layer.id} but the layer has none (window methods do not apply to it)`,
    );
  }
  return ctx.window;
}

/** How a cached residual lines up with the q rows of a call. */
type Alignment =
  /** Same rows: use as is. */
  | { readonly kind: 'same' }
  /** A whole-batch residual read for the conditional rows: use its conditional half. */
  | { readonly kind: 'cond-half' }
  /** A conditional-half residual read for the whole batch: apply it to each half. */
  | { readonly kind: 'broadcast' };

function align(ctx: StrategyContext, residual: Tensor, inputs: QkvInputs): Alignment {
  const [R, ...rest] = residual.shape;
  const [Q, ...qRest] = inputs.q.shape;
  if (R === undefined || Q === undefined || !sameShape(rest, qRest)) {
    throw new ShapeMismatchError(
      `Expected the cached residual of layer ${ctx.layer.id} to have the trailing shape [${qRest.join(', ')}] of q but received [${residual.shape.join(', ')}]`,
    );
  }
  if (R === Q) return { kind: 'same' };
  if (ctx.cfg && inputs.rows === 'conditional' && R === 2 * Q) return { kind: 'cond-half' };
  if (ctx.cfg && inputs.rows === 'all' && 2 * R === Q) return { kind: 'broadcast' };
  throw new ShapeMismatchError(
    `Expected the cached residual of layer ${ctx.layer.id} to cover ${inputs.rows === 'all' ? `${Q} rows or their conditional half (${Q / 2})` : `${Q} conditional rows or the whole batch (${2 * Q})`}` +
      ` (CFG ${ctx.cfg ? ctx.cfg.order : 'off'}) but it has ${R} rows`,
  );
}

/**
 * WA-RS on `inputs`: `windowAttention(q, k, v, ctx.window) + residual`, with the layer's cached residual
 * lined up with the rows of `inputs` (see the convention above). Returns `undefined` when no residual is
 * cached (the caller falls back to full attention and reports it). Once no later step of the layer
 * reads the residual before another step refreshes it (plan look-ahead), the entry is deleted, so a
 * residual lives from its refresh to its last reader. Throws a coded error when the layer has no window.
 */
export async function computeWindowWithResidual(ctx: StrategyContext, inputs: QkvInputs): Promise<Tensor | undefined> {
  const window = requireContextWindow(ctx);
  if (inputs.rows === 'conditional' && !ctx.cfg) {
    throw new InvalidArgumentError('Expected q/k/v of every row for a batch without CFG but received the conditional rows only');
  }
  const residual = ctx.cache.get(RESIDUAL_CACHE);
  if (!residual) return undefined;
  const { q, k, v } = inputs;
  const options = { compute: ctx.compute };
  const alignment = align(ctx, residual, inputs);
  let out: Tensor;
  if (alignment.kind === 'same') {
    out = await ctx.backend.windowWithResidual(q, k, v, window, residual, options);
  } else if (alignment.kind === 'cond-half') {
    out = await ctx.backend.windowWithResidual(q, k, v, window, cfgHalves(residual, ctx.cfg!).cond, options);
  } else {
    // Both halves add the same (conditional) residual; each half is written in place into `out`.
    const half = (q.shape[0] ?? 0) / 2;
    // every element is written by the two calls: pooled memory, not a zeroed fresh array
    out = tensor(allocateFloats(q.data.length, ctx.backend.allocate?.bind(ctx.backend)), q.shape);
    for (const start of [0, half]) {
      const rows = (t: Tensor): Tensor => sliceBatch(t, start, start + half);
      await ctx.backend.windowWithResidual(rows(q), rows(k), rows(v), window, residual, { ...options, out: rows(out) });
    }
  }
  if (!residualNeededAhead(ctx)) ctx.cache.delete(RESIDUAL_CACHE);
  return out;
}

/**
 * Computes full attention on `q/k/v` and, when a later step of the layer reads the residual (plan
 * look-ahead) and the layer can hold one ({@link supportsResidual}), also the residual `full − window`
 * through the fused kernel, stored in the layer's cache under {@link RESIDUAL_CACHE}. When the cache
 * refuses it (budget), the stale residual is dropped — so later WA-RS steps fall back to full attention
 * instead of using it — and a `cache-refused` event is reported. Otherwise it is plain attention.
 */
export async function computeFullAttention(ctx: StrategyContext, q: Tensor, k: Tensor, v: Tensor): Promise<Tensor> {
  if (!supportsResidual(ctx.layer) || ctx.window === null || !residualNeededAhead(ctx)) {
    return ctx.backend.attention(q, k, v, { compute: ctx.compute });
  }
  const { out, residual } = await ctx.backend.fullWithResidual(q, k, v, ctx.window, { compute: ctx.compute });
  const put = ctx.cache.put(RESIDUAL_CACHE, residual);
  if (!put.stored) {
    ctx.cache.delete(RESIDUAL_CACHE);
    ctx.report({ type: 'cache-refused', step: ctx.step, layer: ctx.layer.index, method: ctx.method, kind: RESIDUAL_CACHE, bytes: put.bytes });
  }
  return out;
}
