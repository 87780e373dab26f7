import {
  ShapeMismatchError,
  expectInteger,
  tensor,
  validateAttentionInputs,
  type ComputeDtype,
  type KernelBackend,
  type KernelConfig,
  type Tensor,
} from '@ditfa/core';

/** Name of this plugin's kernel in core's kernel table. */
export const DILATED_KERNEL = 'dilatedWindowAttention';

export interface DilatedWindowArgs {
  readonly q: Tensor;
  readonly k: Tensor;
  readonly v: Tensor;
  /** Keys per side, counted in dilated steps. */
  readonly radius: number;
  /** Distance between two attended keys (1 is plain window attention). */
  readonly dilation: number;
  readonly scale?: number;
  readonly compute?: ComputeDtype;
}

/**
 * Dilated window attention, `[B, L, H, D]` layout: query `i` attends keys `i + m·dilation` for
 * `m = -radius ..= radius`, clipped at the sequence ends. Plain TypeScript, float64 accumulation.
 */
export function dilatedWindowAttention(args: DilatedWindowArgs): Tensor {
  const { q, k, v } = args;
  const { B, Lq, Lkv, H, D, scale } = validateAttentionInputs(q, k, v, { scale: args.scale, compute: args.compute });
  if (Lq !== Lkv) throw new ShapeMismatchError(`Expected self-attention (Lq === Lkv) for dilated window attention but received Lq ${Lq} and Lkv ${Lkv}`);
  const radius = expectInteger('radius', args.radius, 0);
  const dilation = expectInteger('dilation', args.dilation, 1);
  const L = Lq;
  const out = new Float32Array(q.data.length);
  const scores = new Float64Array(2 * radius + 1);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < L; i++) {
        const qo = ((b * L + i) * H + h) * D;
        const lo = -Math.min(radius, Math.floor(i / dilation));
        const hi = Math.min(radius, Math.floor((L - 1 - i) / dilation));
        let max = -Infinity;
        for (let m = lo; m <= hi; m++) {
          const ko = ((b * L + i + m * dilation) * H + h) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += q.data[qo + d]! * k.data[ko + d]!;
          s *= scale;
          scores[m - lo] = s;
          if (s > max) max = s;
        }
        acc.fill(0);
        let sum = 0;
        for (let m = lo; m <= hi; m++) {
          const p = Math.exp(scores[m - lo]! - max);
          sum += p;
          const vo = ((b * L + i + m * dilation) * H + h) * D;
          for (let d = 0; d < D; d++) acc[d]! += p * v.data[vo + d]!;
        }
        for (let d = 0; d < D; d++) out[qo + d] = acc[d]! / sum;
      }
    }
  }
  return tensor(out, q.shape);
}

/** Exact number of (query, key) pairs the dilated window admits over `L` tokens. */
export function dilatedPairs(L: number, radius: number, dilation: number): number {
  expectInteger('L', L, 0);
  expectInteger('radius', radius, 0);
  expectInteger('dilation', dilation, 1);
  let pairs = 0;
  for (let i = 0; i < L; i++) pairs += Math.min(radius, Math.floor(i / dilation)) + Math.min(radius, Math.floor((L - 1 - i) / dilation)) + 1;
  return pairs;
}

/** The kernel-table entries this plugin ships: its TypeScript kernel for the `reference` backend. */
export const dilatedKernelConfigs: readonly KernelConfig<DilatedWindowArgs, Tensor>[] = Object.freeze([
  { kernelName: DILATED_KERNEL, backendName: 'reference', kernelFunc: (_backend: KernelBackend, args: DilatedWindowArgs) => dilatedWindowAttention(args) },
]);
