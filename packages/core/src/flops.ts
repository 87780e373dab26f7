import { InvalidArgumentError, expectInteger } from './errors.js';
import type { WindowSpec } from './kernel-backend.js';
import type { AttentionLayer } from './layers.js';

/**
 * The attention FLOP model. One attention call costs `4·B·Lq·Lkv·C` FLOPs (`q·kᵀ` and `p·v`, two FLOPs per
 * multiply-add each; `C = H·D`). Window attention costs `4·B·pairs·C`, where `pairs` is the exact number
 * of (query, key) pairs inside the clipped band — never zero, unlike the reference code's counter.
 */

/** FLOPs of one full attention call. */
export function attentionFlops(B: number, Lq: number, Lkv: number, C: number): number {
  return 4 * B * Lq * Lkv * C;
}

/** Exact number of pairs `(i, j)` in `[0, L)²` with `|i − j| <= w`. */
export function bandPairs1D(L: number, w: number): number {
  expectInteger('L', L, 0);
  expectInteger('w', w, 0);
  if (L === 0) return 0;
  if (w >= L - 1) return L * L;
  // L rows of 2w+1 pairs, minus the clipped corners: 2·(1 + 2 + … + w) = w(w+1).
  return L * (2 * w + 1) - w * (w + 1);
}

/** Exact number of (query, key) pairs a window admits over `L` tokens. */
export function windowPairs(window: WindowSpec, L: number): number {
  if (window.kind === '1d') return bandPairs1D(L, window.size);
  if (window.rows * window.cols !== L) {
    throw new InvalidArgumentError(`Expected a ${window.rows}×${window.cols} grid to hold L = ${L} tokens but it holds ${window.rows * window.cols}`);
  }
  // A square neighbourhood is the product of two independent 1-D bands.
  return bandPairs1D(window.rows, window.radius) * bandPairs1D(window.cols, window.radius);
}

/** FLOPs of one window attention call over `L` tokens. */
export function windowFlops(B: number, L: number, C: number, window: WindowSpec): number {
  return 4 * B * windowPairs(window, L) * C;
}

/** Fraction of full attention's FLOPs that window attention costs: `pairs / L²`. */
export function windowFraction(window: WindowSpec, L: number): number {
  return L === 0 ? 0 : windowPairs(window, L) / (L * L);
}

/** What one attention layer looks like at one step, for FLOP counting. */
export interface AttentionShape {
  /** Rows of each call, both CFG halves included. */
  readonly batch: number;
  /** Query tokens. */
  readonly tokens: number;
  /** Key/value tokens (cross-attention); `tokens` when absent. */
  readonly kvTokens?: number;
  /** Channels `C = H·D`. */
  readonly channels: number;
  /** True when the batch is a CFG batch (two halves). */
  readonly cfg: boolean;
  /** Window of window methods; `null` where none applies. */
  readonly window: WindowSpec | null;
}

/** The FLOP-counting shape of an attention layer. */
export function layerShape(layer: AttentionLayer): AttentionShape {
  return {
    batch: layer.batch,
    tokens: layer.tokens,
    ...(layer.kvTokens === undefined ? {} : { kvTokens: layer.kvTokens }),
    channels: layer.heads * layer.headDim,
    cfg: layer.cfg,
    window: layer.window,
  };
}

/** Rows computed under ASC: the conditional half of a CFG batch (all rows without CFG). */
export function condRows(shape: AttentionShape): number {
  return shape.cfg ? shape.batch / 2 : shape.batch;
}

/** FLOPs of the raw model's attention for one layer at one step (the denominator of every fraction). */
export function rawAttentionFlops(shape: AttentionShape): number {
  return attentionFlops(shape.batch, shape.tokens, shape.kvTokens ?? shape.tokens, shape.channels);
}

/** The window of `shape`, or a coded error naming `method` when the layer has none. */
export function requireWindow(shape: Pick<AttentionShape, 'window'>, method: string): WindowSpec {
  if (!shape.window) throw new InvalidArgumentError(`Expected a window for method "${method}" but this attention layer has none (window methods do not apply to it)`);
  return shape.window;
}
