import type { DenseKernels } from './dense.js';
import type { Tensor } from './tensor.js';

/**
 * The kernel backend contract. All tensors use the attention layout `[B, L, H, D]` (see {@link Tensor}).
 * Kernels compute `softmax(q·kᵀ·scale) · v` per (batch row, head), with `scale` defaulting to `1/√D`.
 */

/** 1-D sliding window over the flattened token sequence: query `j` sees keys `j-w ..= j+w`, clipped at the ends. */
export interface Window1D {
  readonly kind: '1d';
  /** Tokens per side (`w >= 0`). `w >= L-1` equals full attention. */
  readonly size: number;
}

/**
 * 2-D neighbourhood over a `rows × cols` token grid (tokens row-major, `token = r·cols + c`): query `(r, c)`
 * sees keys `(r', c')` with `|r - r'| <= radius` and `|c - c'| <= radius`, clipped at the grid's edges.
 * `radius >= max(rows, cols) - 1` equals full attention.
 */
export interface Window2D {
  readonly kind: '2d';
  readonly rows: number;
  readonly cols: number;
  readonly radius: number;
}

export type WindowSpec = Window1D | Window2D;

export type ComputeDtype = 'fp32' | 'bf16';

/** Options shared by every attention kernel call. */
export interface AttentionOptions {
  /** Softmax scale; default `1/√D`. */
  readonly scale?: number;
  /** Compute precision; inputs and outputs are always float32. Default `'fp32'`. */
  readonly compute?: ComputeDtype;
  /** Write the result here instead of allocating (must have the output's shape). */
  readonly out?: Tensor;
}

export interface FullWithResidual {
  /** Full attention output. */
  readonly out: Tensor;
  /** `full − window`, the WA-RS residual. */
  readonly residual: Tensor;
}

/** What a backend can do; reported, never guessed by callers. */
export interface BackendCapabilities {
  /** `'cpu'`, `'cuda'`, `'js'`… */
  readonly device: string;
  readonly computeDtypes: readonly ComputeDtype[];
  /** Largest head size `D` the kernels accept. */
  readonly maxHeadDim: number;
  readonly windows: readonly WindowSpec['kind'][];
  /** Worker threads used by the kernels (1 for single-threaded backends). */
  readonly threads: number;
  /** Instruction-set or hardware features detected at run time (`avx512f`, `amx-bf16`, `sm_90`…). */
  readonly features: readonly string[];
  /** True when the async calls run off the JavaScript thread. */
  readonly offThread: boolean;
}

/**
 * A kernel backend: the five attention kernels every strategy may use. The calls are async so native
 * backends can run off the JavaScript thread. Plugins add further kernels through the kernel table
 * (see `registerKernel`).
 */
export interface KernelBackend {
  readonly name: string;
  capabilities(): BackendCapabilities;
  /** Full attention; `q` is `[B, Lq, H, D]`, `k`/`v` are `[B, Lkv, H, D]`. */
  attention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Promise<Tensor>;
  /** Window attention (self-attention only: `Lq === Lkv`). */
  windowAttention(q: Tensor, k: Tensor, v: Tensor, window: WindowSpec, options?: AttentionOptions): Promise<Tensor>;
  /** Full output and residual `full − window` in one call. */
  fullWithResidual(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: WindowSpec,
    options?: Omit<AttentionOptions, 'out'> & { readonly out?: Tensor; readonly residualOut?: Tensor },
  ): Promise<FullWithResidual>;
  /** `windowAttention(q, k, v, window) + residual`; the residual is not modified. */
  windowWithResidual(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: WindowSpec,
    residual: Tensor,
    options?: AttentionOptions,
  ): Promise<Tensor>;
  /**
   * Dense (linear-layer) kernels on the same device and thread pool, when the backend has them (see
   * `dense.ts`); model adapters may run their blocks' dense work there instead of a graph runtime.
   */
  readonly dense?: DenseKernels;
  /**
   * A `Float32Array` of `length` for a tensor built around the kernels (the pipeline's copy of a CFG
   * half's output to both halves…), from the backend's memory pool when it has one: fresh memory costs
   * a page fault per 4 KiB on first touch (0.3–0.4 ms per MiB on the development VM), a recycled block
   * does not. Its contents are unspecified: the caller writes every element. Optional; callers fall
   * back to `new Float32Array(length)`.
   */
  allocate?(length: number): Float32Array;
  /** Releases native resources; the backend is unusable afterwards. Optional. */
  dispose?(): void;
}

/** Names of the built-in kernels, as used in the kernel table. */
export const KernelName = {
  Attention: 'attention',
  WindowAttention: 'windowAttention',
  FullWithResidual: 'fullWithResidual',
  WindowWithResidual: 'windowWithResidual',
} as const;
