import { InvalidArgumentError, ShapeMismatchError, describeValue } from './errors.js';

/**
 * A minimal dense tensor: contiguous row-major float32 data and a shape.
 *
 * Attention tensors (q, k, v and attention outputs) use the layout **`[B, L, H, D]`**: batch, tokens,
 * heads, head size. Element `(b, l, h, d)` sits at `((b·L + l)·H + h)·D + d`. This is the layout a linear
 * projection `[B, L, H·D]` produces without any transpose, so model adapters hand q/k/v over as they
 * come out of the projection.
 */
export interface Tensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

/** Number of elements of a shape (1 for a scalar shape `[]`). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

function checkShape(shape: readonly number[]): void {
  if (!Array.isArray(shape)) {
    throw new InvalidArgumentError(`Expected an array of non-negative integers for shape but received ${describeValue(shape)}`);
  }
  for (const s of shape) {
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 0) {
      throw new InvalidArgumentError(
        `Expected non-negative integer dimensions in shape but received ${JSON.stringify(shape)} (dimension ${describeValue(s)})`,
      );
    }
  }
}

/** Wraps existing data (no copy) after checking that its length matches the shape. */
export function tensor(data: Float32Array, shape: readonly number[]): Tensor {
  if (!(data instanceof Float32Array)) {
    throw new InvalidArgumentError(`Expected a Float32Array for tensor data but received ${describeValue(data)}`);
  }
  checkShape(shape);
  const n = numel(shape);
  if (data.length !== n) {
    throw new ShapeMismatchError(`Expected ${n} elements for shape [${shape.join(', ')}] but received ${data.length}`);
  }
  return { data, shape: Object.freeze([...shape]) };
}

/** A new zero-filled tensor. */
export function zeros(shape: readonly number[]): Tensor {
  checkShape(shape);
  return tensor(new Float32Array(numel(shape)), shape);
}

/** A deep copy. */
export function cloneTensor(t: Tensor): Tensor {
  return tensor(new Float32Array(t.data), t.shape);
}

/** Size in bytes of a tensor's data. */
export function tensorBytes(t: Tensor): number {
  return t.data.byteLength;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** Throws {@link ShapeMismatchError} unless `t` has exactly `shape`; `-1` matches any size. */
export function expectShape(name: string, t: Tensor, shape: readonly number[]): void {
  const ok = t.shape.length === shape.length && shape.every((s, i) => s === -1 || s === t.shape[i]);
  if (!ok) {
    const want = shape.map((s) => (s === -1 ? '*' : String(s))).join(', ');
    throw new ShapeMismatchError(`Expected ${name} of shape [${want}] but received [${t.shape.join(', ')}]`);
  }
}

/** A view (no copy) of batch rows `[start, end)` of a tensor whose first dimension is the batch. */
export function sliceBatch(t: Tensor, start: number, end: number): Tensor {
  const b = t.shape[0];
  if (b === undefined) throw new ShapeMismatchError('Expected a tensor with a batch dimension but received a scalar');
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > b || start > end) {
    throw new InvalidArgumentError(`Expected 0 <= start <= end <= ${b} for a batch slice but received [${start}, ${end})`);
  }
  const row = numel(t.shape.slice(1));
  return { data: t.data.subarray(start * row, end * row), shape: Object.freeze([end - start, ...t.shape.slice(1)]) };
}

/**
 * `length` floats from `allocate` (e.g. a kernel backend's `allocate`: contents unspecified, the caller
 * writes every element), or a fresh zeroed array without one; a wrong-sized block is a coded error.
 */
export function allocateFloats(length: number, allocate?: (length: number) => Float32Array): Float32Array {
  const out = allocate ? allocate(length) : new Float32Array(length);
  if (out.length !== length) {
    throw new ShapeMismatchError(`Expected the allocator to return ${length} floats but received ${out.length}`);
  }
  return out;
}

/**
 * Concatenates tensors along the batch dimension (copies). `allocate` (optional) supplies the output's
 * memory, e.g. a kernel backend's `allocate`; its contents may be anything, every element is written.
 */
export function concatBatch(parts: readonly Tensor[], allocate?: (length: number) => Float32Array): Tensor {
  const first = parts[0];
  if (!first) throw new InvalidArgumentError('Expected at least one tensor to concatenate but received none');
  const rest = first.shape.slice(1);
  let batch = 0;
  for (const p of parts) {
    if (!sameShape(p.shape.slice(1), rest)) {
      throw new ShapeMismatchError(
        `Expected every tensor to have trailing shape [${rest.join(', ')}] but received [${p.shape.slice(1).join(', ')}]`,
      );
    }
    batch += p.shape[0] ?? 0;
  }
  const out = allocateFloats(batch * numel(rest), allocate);
  let offset = 0;
  for (const p of parts) {
    out.set(p.data, offset);
    offset += p.data.length;
  }
  return tensor(out, [batch, ...rest]);
}

/**
 * Which half of a classifier-free-guidance batch holds the conditional rows. The model adapter states
 * it; it is never guessed. DiT and OpenSora put the conditional half first; diffusers' PixArt pipeline
 * puts it second (`[negative, prompt]`).
 */
export type CfgOrder = 'cond-first' | 'cond-second';

/** The CFG layout of a batch: `[first half | second half]`, each `half` rows. */
export interface CfgLayout {
  readonly order: CfgOrder;
}

export interface CfgHalves {
  /** View of the conditional rows. */
  readonly cond: Tensor;
  /** View of the unconditional rows. */
  readonly uncond: Tensor;
  /** Index of the first conditional row. */
  readonly condStart: number;
  /** Rows per half. */
  readonly half: number;
}

/** Splits a CFG batch into its halves as views (no copy). The batch size must be even. */
export function cfgHalves(t: Tensor, layout: CfgLayout): CfgHalves {
  const b = t.shape[0] ?? 0;
  if (b % 2 !== 0 || b === 0) {
    throw new ShapeMismatchError(`Expected an even, non-zero batch for a CFG split but received batch ${b}`);
  }
  const half = b / 2;
  const condStart = layout.order === 'cond-first' ? 0 : half;
  const uncondStart = half - condStart;
  return {
    cond: sliceBatch(t, condStart, condStart + half),
    uncond: sliceBatch(t, uncondStart, uncondStart + half),
    condStart,
    half,
  };
}

/** Builds a full CFG batch whose two halves both hold `cond` (the ASC copy). */
export function broadcastCfg(cond: Tensor): Tensor {
  return concatBatch([cond, cond]);
}

/** Reads the `[B, L, H, D]` dimensions of an attention tensor. */
export function attentionDims(name: string, t: Tensor): { B: number; L: number; H: number; D: number } {
  if (t.shape.length !== 4) {
    throw new ShapeMismatchError(`Expected ${name} of rank 4 [B, L, H, D] but received shape [${t.shape.join(', ')}]`);
  }
  const [B, L, H, D] = t.shape as [number, number, number, number];
  return { B, L, H, D };
}
