import type { AttentionOptions, FullWithResidual, WindowSpec } from '../kernel-backend.js';
import { tensor, type Tensor } from '../tensor.js';
import { validateAttentionInputs, validateOut, validateWindow, type AttentionDims } from '../validate-attention.js';

/**
 * Slow, obviously correct attention kernels in TypeScript: the oracle every other backend is tested
 * against, and the last fallback. Scores, softmax and the weighted sum accumulate in float64.
 */

/** True when query token `i` may attend key token `j` under `window` (see {@link WindowSpec}). */
export function windowAllows(window: WindowSpec, i: number, j: number): boolean {
  if (window.kind === '1d') return Math.abs(i - j) <= window.size;
  const ri = Math.floor(i / window.cols);
  const rj = Math.floor(j / window.cols);
  const ci = i - ri * window.cols;
  const cj = j - rj * window.cols;
  return Math.abs(ri - rj) <= window.radius && Math.abs(ci - cj) <= window.radius;
}

function maskedAttention(q: Tensor, k: Tensor, v: Tensor, dims: AttentionDims, allow: ((i: number, j: number) => boolean) | null, out: Float32Array): void {
  const { B, Lq, Lkv, H, D, scale } = dims;
  const scores = new Float64Array(Lkv);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Lq; i++) {
        const qo = ((b * Lq + i) * H + h) * D;
        let max = -Infinity;
        for (let j = 0; j < Lkv; j++) {
          if (allow && !allow(i, j)) {
            scores[j] = -Infinity;
            continue;
          }
          const ko = ((b * Lkv + j) * H + h) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += q.data[qo + d]! * k.data[ko + d]!;
          s *= scale;
          scores[j] = s;
          if (s > max) max = s;
        }
        acc.fill(0);
        let sum = 0;
        for (let j = 0; j < Lkv; j++) {
          const s = scores[j]!;
          if (s === -Infinity) continue;
          const p = Math.exp(s - max);
          sum += p;
          const vo = ((b * Lkv + j) * H + h) * D;
          for (let d = 0; d < D; d++) acc[d]! += p * v.data[vo + d]!;
        }
        for (let d = 0; d < D; d++) out[qo + d] = acc[d]! / sum;
      }
    }
  }
}

function output(options: AttentionOptions | undefined, shape: readonly number[]): Float32Array {
  validateOut('out', options?.out, shape);
  return options?.out?.data ?? new Float32Array(shape.reduce((a, b) => a * b, 1));
}

export function referenceAttention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Tensor {
  const dims = validateAttentionInputs(q, k, v, options);
  const out = output(options, q.shape);
  maskedAttention(q, k, v, dims, null, out);
  return tensor(out, q.shape);
}

export function referenceWindowAttention(q: Tensor, k: Tensor, v: Tensor, window: WindowSpec, options?: AttentionOptions): Tensor {
  const dims = validateAttentionInputs(q, k, v, options);
  const w = validateWindow(window, dims);
  const out = output(options, q.shape);
  maskedAttention(q, k, v, dims, (i, j) => windowAllows(w, i, j), out);
  return tensor(out, q.shape);
}

export function referenceFullWithResidual(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  window: WindowSpec,
  options?: Omit<AttentionOptions, 'out'> & { readonly out?: Tensor; readonly residualOut?: Tensor },
): FullWithResidual {
  const dims = validateAttentionInputs(q, k, v, options);
  const w = validateWindow(window, dims);
  validateOut('residualOut', options?.residualOut, q.shape);
  const full = output(options, q.shape);
  maskedAttention(q, k, v, dims, null, full);
  const win = new Float32Array(full.length);
  maskedAttention(q, k, v, dims, (i, j) => windowAllows(w, i, j), win);
  const residual = options?.residualOut?.data ?? new Float32Array(full.length);
  for (let n = 0; n < full.length; n++) residual[n] = full[n]! - win[n]!;
  return { out: tensor(full, q.shape), residual: tensor(residual, q.shape) };
}

export function referenceWindowWithResidual(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  window: WindowSpec,
  residual: Tensor,
  options?: AttentionOptions,
): Tensor {
  const dims = validateAttentionInputs(q, k, v, options);
  const w = validateWindow(window, dims);
  validateOut('residual', residual, q.shape);
  const out = output(options, q.shape);
  maskedAttention(q, k, v, dims, (i, j) => windowAllows(w, i, j), out);
  for (let n = 0; n < out.length; n++) out[n]! += residual.data[n]!;
  return tensor(out, q.shape);
}
