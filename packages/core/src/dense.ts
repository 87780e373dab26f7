import { InvalidArgumentError, ShapeMismatchError, describeValue } from './errors.js';
import { type Tensor, numel } from './tensor.js';

/**
 * The dense-kernel contract: the linear layers of a transformer block as a kernel backend may offer them
 * (`KernelBackend.dense`), so a model adapter can run its blocks' dense work on the same native pool as
 * attention instead of a graph runtime. Activations are `[rows, features]` float32 row-major (`[B, L, C]`
 * flattened); the precision of the product is the packed weights' {@link DenseDtype}.
 *
 * One {@link DenseKernels.linear} call computes, for each row `r` of `x` (`s = ⌊r / rowsPerSample⌋`):
 *
 * ```text
 * a[r]   = x[r]                                        or, with `normModulate`,
 * a[r]   = LayerNorm(x[r]) · (1 + scale[s]) + shift[s]   (no affine, eps)
 * y[r]   = a[r] · Wᵀ + bias                              (W as PyTorch stores it: [out, in])
 * y[r]   = gelu_tanh(y[r])                               (activation 'gelu-tanh')
 * out[r] = residual[r] + gate[s] · y[r]                  (residual; no gate: residual[r] + y[r])
 * ```
 *
 * and writes `out` whole, or split into equal consecutive column ranges (`split: 3` gives q | k | v).
 */

/**
 * Precision of a dense product. `'fp32'`: float32 multiplies and sums. `'bf16'`: the layer input and the
 * weights are rounded to bfloat16 (8 significant bits), products are summed in float32, and everything
 * around the product (LayerNorm, bias, GELU, residual) stays float32 — what PyTorch's bf16 autocast
 * computes for a linear layer.
 */
export type DenseDtype = 'fp32' | 'bf16';

/** A linear layer's weights as PyTorch's `nn.Linear` holds them. */
export interface DenseWeights {
  /** `[outFeatures, inFeatures]` row-major. */
  readonly weight: Float32Array;
  /** `[outFeatures]`, or null. */
  readonly bias: Float32Array | null;
  readonly inFeatures: number;
  readonly outFeatures: number;
}

/** Weights packed by one backend for its kernels (opaque bytes, JavaScript-owned). */
export interface PackedLinear {
  /** The backend that packed them; only its `linear` accepts them. */
  readonly backend: string;
  /** The backend's layout (e.g. its instruction-set path); checked on use. */
  readonly layout: string;
  readonly dtype: DenseDtype;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bias: Float32Array | null;
  readonly data: Uint8Array;
}

/**
 * Per-sample vectors: row `r` of an activation uses row `⌊r / rowsPerSample⌋` of `table` (`[samples, width]`,
 * e.g. DiT's adaLN vector `[B, 6C]`), columns `offset …` (as many as the operand needs).
 */
export interface SampleVectors {
  readonly table: Tensor;
  readonly offset: number;
  readonly rowsPerSample: number;
}

export interface DenseLinearOptions {
  /** LayerNorm (no affine) of each input row, then `· (1 + scale) + shift` (adaLN modulate), before the product. */
  readonly normModulate?: { readonly shift: SampleVectors; readonly scale: SampleVectors; readonly eps: number };
  readonly activation?: 'gelu-tanh';
  /** `out = residual + gate · y` (without `gate`: `residual + y`); `residual` is `[rows, out]` and may be `out` itself. */
  readonly residual?: { readonly tensor: Tensor; readonly gate?: SampleVectors };
  /** Split the output into this many equal column ranges (default 1). */
  readonly split?: number;
  /** Where to write: one tensor per split part, each `[rows, out / split]`. Default: new arrays. */
  readonly out?: readonly Tensor[];
}

/** What a backend's dense kernels can do; reported, never guessed. */
export interface DenseCapabilities {
  readonly dtypes: readonly DenseDtype[];
  /** The path each dtype runs on here (`{ fp32: 'avx512', bf16: 'amx-bf16' }`). */
  readonly paths: Readonly<Partial<Record<DenseDtype, string>>>;
}

/** Dense kernels of a backend (see the module comment for what `linear` computes). */
export interface DenseKernels {
  capabilities(): DenseCapabilities;
  /** Packs `weights` for `linear` at `dtype` (throws when the backend cannot run `dtype`). */
  pack(weights: DenseWeights, dtype: DenseDtype): PackedLinear;
  /** `x` is `[rows, in]` (any leading shape); returns the split parts, each `[rows, out / split]`. */
  linear(x: Tensor, weights: PackedLinear, options?: DenseLinearOptions): Promise<Tensor[]>;
  /** LayerNorm (no affine, eps) of each row of `x [rows, C]`, then `· (1 + scale) + shift`. */
  layerNormModulate(x: Tensor, shift: SampleVectors, scale: SampleVectors, eps: number, options?: { readonly out?: Tensor }): Promise<Tensor>;
  /** `x + gate · y` row by row (without `gate`: `x + y`); `out` may be `x` or `y` itself. */
  gatedAdd(x: Tensor, y: Tensor, gate: SampleVectors | undefined, options?: { readonly out?: Tensor }): Promise<Tensor>;
}

/** Rows and features of an activation `[…, features]`. */
export function denseRows(x: Tensor, features: number, what = 'x'): number {
  if (!x || !(x.data instanceof Float32Array)) throw new InvalidArgumentError(`Expected a float32 Tensor for ${what} but received ${describeValue(x)}`);
  const last = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || last !== features || numel(x.shape) !== x.data.length) {
    throw new ShapeMismatchError(`Expected ${what} of shape [..., ${features}] but received [${x.shape.join(', ')}]`);
  }
  return x.data.length / features;
}

/** Checks a per-sample table against `rows` rows and `width` columns it must provide. */
export function checkSampleVectors(what: string, v: SampleVectors, rows: number, width: number): void {
  if (!v || !v.table || !(v.table.data instanceof Float32Array) || v.table.shape.length !== 2) {
    throw new InvalidArgumentError(`Expected ${what} as { table: [samples, width] Tensor, offset, rowsPerSample } but received ${describeValue(v)}`);
  }
  if (!Number.isInteger(v.rowsPerSample) || v.rowsPerSample < 1) {
    throw new InvalidArgumentError(`Expected a positive integer rowsPerSample for ${what} but received ${describeValue(v.rowsPerSample)}`);
  }
  if (!Number.isInteger(v.offset) || v.offset < 0) throw new InvalidArgumentError(`Expected a non-negative integer offset for ${what} but received ${describeValue(v.offset)}`);
  const [samples, stride] = v.table.shape as [number, number];
  const need = Math.ceil(rows / v.rowsPerSample);
  if (samples < need || v.offset + width > stride) {
    throw new ShapeMismatchError(
      `Expected the ${what} table to have at least ${need} samples and ${v.offset + width} columns (offset ${v.offset} + ${width}) but received [${v.table.shape.join(', ')}]`,
    );
  }
}
