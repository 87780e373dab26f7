import { CacheKind } from './cache.js';
import { InvalidArgumentError, ShapeMismatchError } from './errors.js';
import { residualNeededAhead } from './lookahead.js';
import type { QkvInputs, StrategyContext } from './strategy.js';
import { cfgHalves, sameShape, sliceBatch, tensor, type Tensor } from './tensor.js';

/**
 * The WA-RS residual convention, shared by every strategy that writes or reads the residual (core's
 * `full`, `full+asc` and `wars+asc` from `@ditfa/strategy-asc`, `wars` from `@ditfa/strategy-wars`).
 *
 * A block's residual `full − window` lives in its cache under {@link CacheKind.Residual} as `[R, L, H, D]`:
 * - `R = B` (every row) when a step computed full attention on the whole batch (`full`);
 * - `R = B/2` (the conditional half) when it was computed from the conditional half alone (`full+asc`).
 *   It stands for both halves: the reference code copies it into both halves, which holds the same
 *   values in twice the bytes; here it is broadcast when it is read.
 *
 * {@link computeFullAttention} writes it (with `ctx.window`); {@link computeWindowWithResidual} reads it.
 */

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
      `Expected the cached residual of block ${ctx.block} to have the trailing shape [${qRest.join(', ')}] of q but received [${residual.shape.join(', ')}]`,
    );
  }
  if (R === Q) return { kind: 'same' };
  if (ctx.cfg && inputs.rows === 'conditional' && R === 2 * Q) return { kind: 'cond-half' };
  if (ctx.cfg && inputs.rows === 'all' && 2 * R === Q) return { kind: 'broadcast' };
  throw new ShapeMismatchError(
    `Expected the cached residual of block ${ctx.block} to cover ${inputs.rows === 'all' ? `${Q} rows or their conditional half (${Q / 2})` : `${Q} conditional rows or the whole batch (${2 * Q})`}` +
      ` (CFG ${ctx.cfg ? ctx.cfg.order : 'off'}) but it has ${R} rows`,
  );
}

/**
 * WA-RS on `inputs`: `windowAttention(q, k, v, ctx.window) + residual`, with the block's cached residual
 * lined up with the rows of `inputs` (see the convention above). Returns `undefined` when no residual is
 * cached (the caller falls back to full attention and reports it). Once no later step of the block
 * reads the residual before another step refreshes it (plan lookahead), the entry is deleted, so a
 * residual lives from its refresh to its last reader.
 */
export async function computeWindowWithResidual(ctx: StrategyContext, inputs: QkvInputs): Promise<Tensor | undefined> {
  if (inputs.rows === 'conditional' && !ctx.cfg) {
    throw new InvalidArgumentError('Expected q/k/v of every row for a batch without CFG but received the conditional rows only');
  }
  const residual = ctx.cache.get(CacheKind.Residual);
  if (!residual) return undefined;
  const { q, k, v } = inputs;
  const options = { compute: ctx.compute };
  const alignment = align(ctx, residual, inputs);
  let out: Tensor;
  if (alignment.kind === 'same') {
    out = await ctx.backend.windowWithResidual(q, k, v, ctx.window, residual, options);
  } else if (alignment.kind === 'cond-half') {
    out = await ctx.backend.windowWithResidual(q, k, v, ctx.window, cfgHalves(residual, ctx.cfg!).cond, options);
  } else {
    // Both halves add the same (conditional) residual; each half is written in place into `out`.
    const half = (q.shape[0] ?? 0) / 2;
    out = tensor(new Float32Array(q.data.length), q.shape);
    for (const start of [0, half]) {
      const rows = (t: Tensor): Tensor => sliceBatch(t, start, start + half);
      await ctx.backend.windowWithResidual(rows(q), rows(k), rows(v), ctx.window, residual, { ...options, out: rows(out) });
    }
  }
  if (!residualNeededAhead(ctx)) ctx.cache.delete(CacheKind.Residual);
  return out;
}
