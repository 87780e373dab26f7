import { InvalidArgumentError, ShapeMismatchError, describeValue, expectFinite } from './errors.js';
import type { AttentionOptions, WindowSpec } from './kernel-backend.js';
import { attentionDims, sameShape, type Tensor } from './tensor.js';

export interface AttentionDims {
  readonly B: number;
  readonly Lq: number;
  readonly Lkv: number;
  readonly H: number;
  readonly D: number;
  readonly scale: number;
}

/**
 * Checks q/k/v shapes and data lengths and returns the dimensions. Every backend calls this before it
 * touches memory, so native code never sees inconsistent sizes.
 */
export function validateAttentionInputs(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}, maxHeadDim = Infinity): AttentionDims {
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (!t || !(t.data instanceof Float32Array) || !Array.isArray(t.shape)) {
      throw new InvalidArgumentError(`Expected ${name} to be a Tensor with Float32Array data but received ${describeValue(t)}`);
    }
    const dims = attentionDims(name, t);
    const n = dims.B * dims.L * dims.H * dims.D;
    if (t.data.length !== n) {
      throw new ShapeMismatchError(`Expected ${name} to hold ${n} elements for shape [${t.shape.join(', ')}] but it holds ${t.data.length}`);
    }
  }
  const qd = attentionDims('q', q);
  const kd = attentionDims('k', k);
  if (!sameShape(k.shape, v.shape)) {
    throw new ShapeMismatchError(`Expected k and v of the same shape but received [${k.shape.join(', ')}] and [${v.shape.join(', ')}]`);
  }
  if (qd.B !== kd.B || qd.H !== kd.H || qd.D !== kd.D) {
    throw new ShapeMismatchError(
      `Expected q [B, Lq, H, D] and k [B, Lkv, H, D] to agree on B, H and D but received [${q.shape.join(', ')}] and [${k.shape.join(', ')}]`,
    );
  }
  if (qd.D < 1 || qd.D > maxHeadDim) {
    throw new InvalidArgumentError(`Expected a head size D in [1, ${maxHeadDim}] but received ${qd.D}`);
  }
  if (qd.L > 0 && kd.L === 0) {
    throw new ShapeMismatchError('Expected at least one key for a non-empty query but received Lkv = 0');
  }
  const scale = options.scale === undefined ? 1 / Math.sqrt(qd.D) : expectFinite('scale', options.scale);
  if (options.compute !== undefined && options.compute !== 'fp32' && options.compute !== 'bf16') {
    throw new InvalidArgumentError(`Expected compute 'fp32' or 'bf16' but received ${describeValue(options.compute)}`);
  }
  return { B: qd.B, Lq: qd.L, Lkv: kd.L, H: qd.H, D: qd.D, scale };
}

/** Checks a window against the sequence length (self-attention only) and returns it normalised. */
export function validateWindow(window: WindowSpec, dims: AttentionDims): WindowSpec {
  if (dims.Lq !== dims.Lkv) {
    throw new ShapeMismatchError(`Expected self-attention (Lq === Lkv) for window attention but received Lq ${dims.Lq} and Lkv ${dims.Lkv}`);
  }
  if (!window || typeof window !== 'object') {
    throw new InvalidArgumentError(`Expected a window { kind: '1d' | '2d', ... } but received ${describeValue(window)}`);
  }
  if (window.kind === '1d') {
    if (!Number.isInteger(window.size) || window.size < 0) {
      throw new InvalidArgumentError(`Expected a non-negative integer for window size but received ${describeValue(window.size)}`);
    }
    return window;
  }
  if (window.kind === '2d') {
    for (const key of ['rows', 'cols'] as const) {
      if (!Number.isInteger(window[key]) || window[key] < 1) {
        throw new InvalidArgumentError(`Expected a positive integer for window ${key} but received ${describeValue(window[key])}`);
      }
    }
    if (!Number.isInteger(window.radius) || window.radius < 0) {
      throw new InvalidArgumentError(`Expected a non-negative integer for window radius but received ${describeValue(window.radius)}`);
    }
    if (window.rows * window.cols !== dims.Lq) {
      throw new ShapeMismatchError(
        `Expected a ${window.rows}×${window.cols} grid to hold L = ${dims.Lq} tokens but it holds ${window.rows * window.cols}`,
      );
    }
    return window;
  }
  throw new InvalidArgumentError(`Expected window kind '1d' or '2d' but received ${describeValue((window as { kind?: unknown }).kind)}`);
}

/** Checks that an output tensor (given by the caller) has the expected shape. */
export function validateOut(name: string, out: Tensor | undefined, like: readonly number[]): void {
  if (out === undefined) return;
  if (!out || !(out.data instanceof Float32Array) || !sameShape(out.shape, like) || out.data.length !== like.reduce((a, b) => a * b, 1)) {
    throw new ShapeMismatchError(`Expected ${name} of shape [${like.join(', ')}] but received ${out ? `[${out.shape?.join(', ')}]` : describeValue(out)}`);
  }
}
