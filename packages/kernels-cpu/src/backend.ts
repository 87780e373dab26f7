import {
  DitfaError,
  ErrorCode,
  InvalidArgumentError,
  expectInteger,
  tensor,
  validateAttentionInputs,
  validateOut,
  validateWindow,
  type AttentionDims,
  type AttentionOptions,
  type BackendCapabilities,
  type ComputeDtype,
  type FullWithResidual,
  type KernelBackend,
  type Tensor,
  type WindowSpec,
} from '@ditfa/core';
import { FEATURE_NAMES, ISA_NAMES, NativeIsa, NativeOp, loadNative, type NativeAddon, type NativeRunArgs } from './binding.js';
import { type CpuDenseKernels, createCpuDense } from './dense.js';

export const CPU_BACKEND_NAME = 'cpu';

/** Largest head size `D` the native kernels accept (their per-tile buffers are sized from it). */
export const CPU_MAX_HEAD_DIM = 256;

/** Largest token count: lane coordinates are exact float32 integers below 2^24. */
export const CPU_MAX_TOKENS = 2 ** 24;

/**
 * Documented error bound of `compute: 'bf16'` (on AMX-BF16 tiles where the CPU and OS allow them, else
 * AVX512-BF16 `vdpbf16ps`): q, k, v and the softmax probabilities are rounded to bf16
 * (8 significant bits) while scores, the softmax and every sum stay in fp32. For inputs whose scores
 * `q·k·scale` stay within ±10 (unit-variance q/k with the default scale sit far inside), the largest
 * absolute error is below `BF16_ERROR_BOUND × max|output|`; the tests hold the kernels to it.
 */
export const BF16_ERROR_BOUND = 2e-2;

export interface CpuBackendOptions {
  /**
   * Worker threads of the process-wide native pool (the calling thread counts as one). Default: the
   * machine's cores. The pool is shared by every CPU backend instance in the process.
   */
  readonly threads?: number;
}

/** The native CPU backend: the async kernels of {@link KernelBackend} plus sync twins (tests, scripts). */
export interface CpuBackend extends KernelBackend {
  attentionSync(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Tensor;
  windowAttentionSync(q: Tensor, k: Tensor, v: Tensor, window: WindowSpec, options?: AttentionOptions): Tensor;
  fullWithResidualSync(q: Tensor, k: Tensor, v: Tensor, window: WindowSpec, options?: FullWithResidualOptions): FullWithResidual;
  windowWithResidualSync(q: Tensor, k: Tensor, v: Tensor, window: WindowSpec, residual: Tensor, options?: AttentionOptions): Tensor;
  /** Sets the native pool's thread count (process-wide). */
  setThreads(threads: number): void;
  /** A block of the kernels' recycling pool (contents unspecified; see {@link KernelBackend.allocate}). */
  allocate(length: number): Float32Array;
  /** Dense (linear-layer) kernels on the same pool; absent when the CPU has no AVX-512. */
  readonly dense?: CpuDenseKernels;
}

export type FullWithResidualOptions = Omit<AttentionOptions, 'out'> & { readonly out?: Tensor; readonly residualOut?: Tensor };

export interface CpuBackendStatus {
  /** True when the addon loaded and the backend can be created. */
  readonly available: boolean;
  readonly addonPath: string;
  /** Why the addon could not be used (empty when available). */
  readonly errors: readonly string[];
  /** What to do when unavailable. */
  readonly remedy?: string;
  /** CPU features detected at run time (`avx2`, `fma`, `avx512f`, `avx512bf16`…). */
  readonly features: readonly string[];
  /** Instruction-set paths built into the addon that this CPU runs. */
  readonly isas: readonly string[];
  /** The fp32 path the kernels use. */
  readonly activeIsa?: string;
  /** The bf16 path (`amx-bf16` or `avx512bf16`), when bf16 runs here. */
  readonly activeBf16Isa?: string;
  readonly threads?: number;
  readonly computeDtypes: readonly ComputeDtype[];
  /** Dense kernel paths this CPU runs (`avx512` fp32, `amx-bf16` / `avx512bf16` bf16); empty without AVX-512. */
  readonly densePaths: readonly string[];
}

function featureNames(addon: NativeAddon): string[] {
  const bits = addon.cpuFeatures();
  return FEATURE_NAMES.filter((_, i) => (bits & (1 << i)) !== 0);
}

function isaNames(addon: NativeAddon): string[] {
  const bits = addon.supportedIsas();
  return (Object.keys(ISA_NAMES) as unknown as NativeIsa[]).filter((i) => (bits & (1 << Number(i))) !== 0).map((i) => ISA_NAMES[i]);
}

function bf16Supported(addon: NativeAddon): boolean {
  return (addon.supportedIsas() & (1 << NativeIsa.Avx512Bf16)) !== 0;
}

/** Reports whether the native backend can be used here, and why not. Never throws. */
export function cpuBackendStatus(): CpuBackendStatus {
  const { addon, status } = loadNative();
  if (!addon) {
    return {
      available: false,
      addonPath: status.path,
      errors: status.errors,
      ...(status.remedy === undefined ? {} : { remedy: status.remedy }),
      features: [],
      isas: [],
      computeDtypes: [],
      densePaths: [],
    };
  }
  return {
    available: true,
    addonPath: status.path,
    errors: [],
    features: featureNames(addon),
    isas: isaNames(addon),
    activeIsa: ISA_NAMES[addon.activeIsa()],
    ...(bf16Supported(addon) ? { activeBf16Isa: ISA_NAMES[addon.activeBf16Isa()] } : {}),
    threads: addon.threadCount(),
    computeDtypes: bf16Supported(addon) ? ['fp32', 'bf16'] : ['fp32'],
    densePaths: createCpuDense(addon, CPU_BACKEND_NAME)?.paths() ?? [],
  };
}

/** The native addon could not be loaded; the message lists every cause and the remedy. */
export class CpuBackendUnavailableError extends DitfaError {
  readonly causes: readonly string[];

  constructor(causes: readonly string[], remedy: string | undefined) {
    super(
      ErrorCode.BackendUnavailable,
      `The native CPU backend is unavailable:\n${causes.map((c) => `  - ${c}`).join('\n')}\nRemedy: ${remedy ?? 'reinstall @ditfa/kernels-cpu'}`,
    );
    this.causes = causes;
  }
}

function windowArgs(window: WindowSpec | null): [0 | 1 | 2, number, number, number, number] {
  if (window === null) return [0, 0, 0, 0, 0];
  if (window.kind === '1d') return [1, Math.min(window.size, CPU_MAX_TOKENS), 0, 0, 0];
  return [2, 0, window.rows, window.cols, Math.min(window.radius, CPU_MAX_TOKENS)];
}

function overlaps(a: Float32Array, b: Float32Array): boolean {
  if (a.buffer !== b.buffer || a.length === 0 || b.length === 0) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * Creates the native CPU backend. Throws {@link CpuBackendUnavailableError} (cause and remedy) when the
 * addon is missing or failed to load, so `resolveBackend()` falls back to the next backend.
 */
export function createCpuBackend(options: CpuBackendOptions = {}): CpuBackend {
  const { addon, status } = loadNative();
  if (!addon) throw new CpuBackendUnavailableError(status.errors, status.remedy);
  const native = addon;
  if (options.threads !== undefined) native.setThreadCount(expectInteger('threads', options.threads, 1, 1024));
  const hasBf16 = bf16Supported(native);

  function prepare(
    op: NativeOp,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: WindowSpec | null,
    opts: FullWithResidualOptions | undefined,
    aux: Tensor | undefined,
  ): { args: NativeRunArgs; out: Float32Array; residualOut?: Float32Array } {
    const dims: AttentionDims = validateAttentionInputs(q, k, v, opts, CPU_MAX_HEAD_DIM);
    const win = window === null ? null : validateWindow(window, dims);
    for (const [name, n] of [['B', dims.B], ['Lq', dims.Lq], ['Lkv', dims.Lkv], ['H', dims.H]] as const) {
      expectInteger(name, n, 0, CPU_MAX_TOKENS);
    }
    const compute = opts?.compute ?? 'fp32';
    if (compute === 'bf16' && !hasBf16) {
      throw new InvalidArgumentError(
        `Expected compute 'fp32' on this CPU (compute 'bf16' needs AVX512-BF16, detected features: ${featureNames(native).join(', ') || 'none'}) but received 'bf16'`,
      );
    }
    validateOut('out', opts?.out, q.shape);
    const out = opts?.out?.data ?? native.allocFloat32(q.data.length);
    let auxData: Float32Array = new Float32Array(0);
    let residualOut: Float32Array | undefined;
    if (op === NativeOp.FullResidual) {
      validateOut('residualOut', opts?.residualOut, q.shape);
      residualOut = opts?.residualOut?.data ?? native.allocFloat32(q.data.length);
      auxData = residualOut;
    } else if (op === NativeOp.WindowResidual) {
      validateOut('residual', aux, q.shape);
      auxData = aux!.data;
    }
    // Outputs must not share memory with what the kernels read while they write.
    const reads: [string, Float32Array][] = [['q', q.data], ['k', k.data], ['v', v.data]];
    if (op === NativeOp.WindowResidual) reads.push(['the residual', auxData]);
    const writes: [string, Float32Array][] = [['out', out]];
    if (residualOut) writes.push(['residualOut', residualOut]);
    for (const [name, target] of writes) {
      for (const [inName, input] of reads) {
        if (overlaps(target, input)) throw new InvalidArgumentError(`Expected ${name} in memory separate from ${inName} but the two arrays overlap`);
      }
    }
    if (residualOut && overlaps(out, residualOut)) {
      throw new InvalidArgumentError('Expected out and residualOut in separate memory but the two arrays overlap');
    }
    const args: NativeRunArgs = [
      op,
      q.data,
      k.data,
      v.data,
      out,
      auxData,
      dims.B,
      dims.Lq,
      dims.Lkv,
      dims.H,
      dims.D,
      dims.scale,
      compute === 'bf16' ? 1 : 0,
      ...windowArgs(win),
    ];
    return residualOut ? { args, out, residualOut } : { args, out };
  }

  const capabilities = (): BackendCapabilities => ({
    device: 'cpu',
    computeDtypes: hasBf16 ? ['fp32', 'bf16'] : ['fp32'],
    maxHeadDim: CPU_MAX_HEAD_DIM,
    windows: ['1d', '2d'],
    threads: native.threadCount(),
    features: [...featureNames(native), `isa:${ISA_NAMES[native.activeIsa()]}`, ...(hasBf16 ? [`bf16:${ISA_NAMES[native.activeBf16Isa()]}`] : [])],
    offThread: true,
  });

  const dense = createCpuDense(native, CPU_BACKEND_NAME);
  return {
    name: CPU_BACKEND_NAME,
    capabilities,
    ...(dense ? { dense } : {}),
    setThreads(threads: number): void {
      native.setThreadCount(expectInteger('threads', threads, 1, 1024));
    },
    allocate(length: number): Float32Array {
      return native.allocFloat32(expectInteger('length', length, 0, 2 ** 31 - 1));
    },
    async attention(q, k, v, opts) {
      const p = prepare(NativeOp.Full, q, k, v, null, opts, undefined);
      await native.runAsync(...p.args);
      return tensor(p.out, q.shape);
    },
    attentionSync(q, k, v, opts) {
      const p = prepare(NativeOp.Full, q, k, v, null, opts, undefined);
      native.runSync(...p.args);
      return tensor(p.out, q.shape);
    },
    async windowAttention(q, k, v, window, opts) {
      const p = prepare(NativeOp.Window, q, k, v, window, opts, undefined);
      await native.runAsync(...p.args);
      return tensor(p.out, q.shape);
    },
    windowAttentionSync(q, k, v, window, opts) {
      const p = prepare(NativeOp.Window, q, k, v, window, opts, undefined);
      native.runSync(...p.args);
      return tensor(p.out, q.shape);
    },
    async fullWithResidual(q, k, v, window, opts) {
      const p = prepare(NativeOp.FullResidual, q, k, v, window, opts, undefined);
      await native.runAsync(...p.args);
      return { out: tensor(p.out, q.shape), residual: tensor(p.residualOut!, q.shape) };
    },
    fullWithResidualSync(q, k, v, window, opts) {
      const p = prepare(NativeOp.FullResidual, q, k, v, window, opts, undefined);
      native.runSync(...p.args);
      return { out: tensor(p.out, q.shape), residual: tensor(p.residualOut!, q.shape) };
    },
    async windowWithResidual(q, k, v, window, residual, opts) {
      const p = prepare(NativeOp.WindowResidual, q, k, v, window, opts, residual);
      await native.runAsync(...p.args);
      return tensor(p.out, q.shape);
    },
    windowWithResidualSync(q, k, v, window, residual, opts) {
      const p = prepare(NativeOp.WindowResidual, q, k, v, window, opts, residual);
      native.runSync(...p.args);
      return tensor(p.out, q.shape);
    },
  };
}
