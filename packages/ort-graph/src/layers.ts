import { ShapeMismatchError } from '@ditfa/core';
import type { GraphBuilder } from './graph.js';

/**
 * Layer helpers on a {@link GraphBuilder}: the dense pieces transformer blocks are made of. Weights are
 * taken in PyTorch's `nn.Linear` layout (`[out, in]`) and stored transposed (`[in, out]`) for `MatMul`.
 */

/** `[rows, cols]` → `[cols, rows]` (a copy). */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  if (w.length !== rows * cols) throw new ShapeMismatchError(`Expected ${rows}×${cols} = ${rows * cols} weights but received ${w.length}`);
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = w[row + c]!;
  }
  return out;
}

export interface LinearWeights {
  /** `[out, in]` row-major, as PyTorch stores it. */
  readonly weight: Float32Array;
  /** `[out]`, or null for no bias. */
  readonly bias: Float32Array | null;
  readonly inFeatures: number;
  readonly outFeatures: number;
}

/** `x · Wᵀ + b` over the last axis. */
export function linear(g: GraphBuilder, x: string, w: LinearWeights, prefix: string): string {
  const wt = g.initializer(`${prefix}.weight`, { type: 'float32', dims: [w.inFeatures, w.outFeatures], data: transpose2d(w.weight, w.outFeatures, w.inFeatures) });
  const y = g.op('MatMul', [x, wt]);
  if (!w.bias) return y;
  if (w.bias.length !== w.outFeatures) throw new ShapeMismatchError(`Expected ${w.outFeatures} bias values for ${prefix} but received ${w.bias.length}`);
  const b = g.initializer(`${prefix}.bias`, { type: 'float32', dims: [w.outFeatures], data: w.bias });
  return g.op('Add', [y, b]);
}

/**
 * `x · W + b` with `W` (`[in, out]`, already transposed) and `b` as graph inputs named `${prefix}.weight`
 * and `${prefix}.bias`: one graph (and one session) then serves every block that has this shape, fed
 * with each block's weights ({@link linearFeeds}).
 */
export function linearFromInputs(g: GraphBuilder, x: string, prefix: string, inFeatures: number, outFeatures: number, bias: boolean): string {
  const w = g.input(`${prefix}.weight`, 'float32', [inFeatures, outFeatures]);
  const y = g.op('MatMul', [x, w]);
  return bias ? g.op('Add', [y, g.input(`${prefix}.bias`, 'float32', [outFeatures])]) : y;
}

/** The weights of {@link linearFromInputs} for one layer: `${prefix}.weight` transposed to `[in, out]`, `${prefix}.bias`. */
export function linearFeeds(w: LinearWeights, prefix: string): Record<string, { data: Float32Array; dims: readonly number[] }> {
  const out: Record<string, { data: Float32Array; dims: readonly number[] }> = {
    [`${prefix}.weight`]: { data: transpose2d(w.weight, w.outFeatures, w.inFeatures), dims: [w.inFeatures, w.outFeatures] },
  };
  if (w.bias) out[`${prefix}.bias`] = { data: w.bias, dims: [w.outFeatures] };
  return out;
}

/** LayerNorm over the last axis without affine parameters (`elementwise_affine=False`). */
export function layerNorm(g: GraphBuilder, x: string, channels: number, eps: number): string {
  const ones = g.constF(new Float32Array(channels).fill(1), [channels], 'ln_one');
  const zero = g.constF(new Float32Array(channels), [channels], 'ln_zero');
  return g.op('LayerNormalization', [x, ones, zero], { axis: -1, epsilon: { float: eps } });
}

/** `x · sigmoid(x)`. */
export function silu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** GELU with the tanh approximation (opset 20 `Gelu`). */
export function geluTanh(g: GraphBuilder, x: string): string {
  return g.op('Gelu', [x], { approximate: 'tanh' });
}

/** `[B, C]` → `[B, 1, C]`, to broadcast a per-sample vector over tokens. */
export function perSample(g: GraphBuilder, v: string): string {
  return g.op('Unsqueeze', [v, g.constI64([1])]);
}

/** `x · (1 + scale) + shift` with per-sample `[B, C]` shift/scale. */
export function modulate(g: GraphBuilder, x: string, shift: string, scale: string): string {
  const one = g.constF([1], [1], 'one');
  const s = g.op('Add', [perSample(g, scale), one]);
  return g.op('Add', [g.op('Mul', [x, s]), perSample(g, shift)]);
}

/** Splits the last axis of `[B, n·C]` into `n` values of `[B, C]`. */
export function chunkLast(g: GraphBuilder, x: string, n: number, channels: number): string[] {
  return g.opN('Split', [x, g.constI64(new Array(n).fill(channels))], n, { axis: -1 });
}

/** `x + gate · branch` with a per-sample `[B, C]` gate. */
export function gatedResidual(g: GraphBuilder, x: string, gate: string, branch: string): string {
  return g.op('Add', [x, g.op('Mul', [perSample(g, gate), branch])]);
}

/**
 * Multi-head attention with plain ops (`q [B, Lq, C]`, `k`/`v` `[B, Lk, C]`, optional additive bias
 * broadcastable to `[B, H, Lq, Lk]`) → `[B, Lq, C]`. Used where nothing is compressed (cross-attention).
 */
export function plainAttention(g: GraphBuilder, q: string, k: string, v: string, heads: number, headDim: number, bias: string | null): string {
  const split = g.constI64([0, 0, heads, headDim]);
  const toHeads = (t: string): string => g.op('Transpose', [g.op('Reshape', [t, split])], { perm: [0, 2, 1, 3] });
  const qh = toHeads(q);
  const kt = g.op('Transpose', [g.op('Reshape', [k, split])], { perm: [0, 2, 3, 1] });
  const vh = toHeads(v);
  let scores = g.op('Mul', [g.op('MatMul', [qh, kt]), g.constF([1 / Math.sqrt(headDim)], [1], 'scale')]);
  if (bias) scores = g.op('Add', [scores, bias]);
  const probs = g.op('Softmax', [scores], { axis: -1 });
  const out = g.op('Transpose', [g.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] });
  return g.op('Reshape', [out, g.constI64([0, 0, heads * headDim])]);
}
