import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The addon's whole native surface, flat and typed: typed arrays and numbers cross the boundary,
 * nothing else. `native/addon.cc`'s `Init` lists the same exports.
 */

/** The ABI this TypeScript expects; the addon reports its own through `abiVersion()`. */
export const EXPECTED_ABI_VERSION = 2;

/** Kernel op codes of `runSync` / `runAsync`. */
export const NativeOp = { Full: 0, Window: 1, FullResidual: 2, WindowResidual: 3 } as const;
export type NativeOp = (typeof NativeOp)[keyof typeof NativeOp];

/** Instruction-set paths (bit `i` of `supportedIsas()`). */
export const NativeIsa = { Scalar: 0, Avx2: 1, Avx512: 2, Avx512Bf16: 3, AmxBf16: 4 } as const;
export type NativeIsa = (typeof NativeIsa)[keyof typeof NativeIsa];
export const ISA_NAMES: Record<NativeIsa, string> = { 0: 'scalar', 1: 'avx2', 2: 'avx512', 3: 'avx512bf16', 4: 'amx-bf16' };

/** Bits of `cpuFeatures()`, in order. */
export const FEATURE_NAMES = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512bf16', 'amx-tile', 'amx-bf16', 'amx-os'] as const;

/**
 * Arguments of one kernel call: `(op, q, k, v, out, aux, B, Lq, Lkv, H, D, scale, compute, windowKind,
 * windowSize, rows, cols, radius)`. `aux` is the residual output (fused call), the residual input
 * (window + residual) or an empty array. `compute` is 0 for fp32 and 1 for bf16; `windowKind` 0 (none),
 * 1 (1-D, `windowSize` per side) or 2 (`rows × cols` grid, `radius`).
 */
export type NativeRunArgs = [
  op: NativeOp,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  out: Float32Array,
  aux: Float32Array,
  B: number,
  Lq: number,
  Lkv: number,
  H: number,
  D: number,
  scale: number,
  compute: 0 | 1,
  windowKind: 0 | 1 | 2,
  windowSize: number,
  rows: number,
  cols: number,
  radius: number,
];

/** Dense kernel sets (bit `i` of `denseSets()`): fp32 AVX-512, bf16 AVX512-BF16 (vdpbf16ps), bf16 AMX tiles. */
export const DenseSet = { F32Avx512: 0, Bf16Avx512: 1, Bf16Amx: 2 } as const;
export type DenseSet = (typeof DenseSet)[keyof typeof DenseSet];
export const DENSE_SET_NAMES: Record<DenseSet, string> = { 0: 'avx512', 1: 'avx512bf16', 2: 'amx-bf16' };

/** Epilogues of `denseLinear*`: bias only, GELU (tanh), `res + gate·y`, `res + y`. */
export const DenseEpilogue = { None: 0, Gelu: 1, GatedResidual: 2, Residual: 3 } as const;
export type DenseEpilogue = (typeof DenseEpilogue)[keyof typeof DenseEpilogue];

/**
 * Arguments of one dense linear call (native/dense.h): `(set, a [M·K], M, K, packed, N, bias ([N] or
 * empty), ln (0|1), shift, shiftStride, shiftOffset, scale, scaleStride, scaleOffset, eps, rowsPerSample,
 * epilogue, residual ([M·N] or empty), gate, gateStride, gateOffset, out0, out1, out2, out3)`; tables
 * are per-sample vectors (row r uses sample ⌊r / rowsPerSample⌋), empty arrays where unused; the
 * non-empty outputs come first and take equal column ranges.
 */
export type DenseLinearArgs = [
  set: DenseSet,
  a: Float32Array,
  M: number,
  K: number,
  packed: Uint8Array,
  N: number,
  bias: Float32Array,
  ln: 0 | 1,
  shift: Float32Array,
  shiftStride: number,
  shiftOffset: number,
  scale: Float32Array,
  scaleStride: number,
  scaleOffset: number,
  eps: number,
  rowsPerSample: number,
  epilogue: DenseEpilogue,
  residual: Float32Array,
  gate: Float32Array,
  gateStride: number,
  gateOffset: number,
  out0: Float32Array,
  out1: Float32Array,
  out2: Float32Array,
  out3: Float32Array,
];

/** `(x [M·C], M, C, shift, shiftStride, shiftOffset, scale, scaleStride, scaleOffset, eps, rowsPerSample, out)`. */
export type DenseLnModulateArgs = [
  x: Float32Array,
  M: number,
  C: number,
  shift: Float32Array,
  shiftStride: number,
  shiftOffset: number,
  scale: Float32Array,
  scaleStride: number,
  scaleOffset: number,
  eps: number,
  rowsPerSample: number,
  out: Float32Array,
];

/** `(x, y, M, C, gate (empty: none), gateStride, gateOffset, rowsPerSample, out)`: `out = x + gate·y`. */
export type DenseGatedAddArgs = [
  x: Float32Array,
  y: Float32Array,
  M: number,
  C: number,
  gate: Float32Array,
  gateStride: number,
  gateOffset: number,
  rowsPerSample: number,
  out: Float32Array,
];

/** The native output-buffer pool: bytes in live arrays, idle bytes kept for reuse (at most the limit), fresh and reused blocks. */
export interface BufferPoolStats {
  readonly liveBytes: number;
  readonly idleBytes: number;
  readonly limitBytes: number;
  readonly fresh: number;
  readonly reused: number;
}

export interface NativeAddon {
  abiVersion(): number;
  /** Bit mask over {@link FEATURE_NAMES}. */
  cpuFeatures(): number;
  /** Bit mask over {@link NativeIsa}: paths built into the addon that this CPU runs. */
  supportedIsas(): number;
  /** The fp32 path in use. */
  activeIsa(): NativeIsa;
  /** Forces an fp32 path (tests); -1 returns to automatic selection. */
  forceIsa(isa: NativeIsa | -1): void;
  /** The bf16 path in use (AMX where the CPU and OS allow it, else AVX512-BF16). */
  activeBf16Isa(): NativeIsa;
  /** Forces a bf16 path (tests, benches): 3 (AVX512-BF16), 4 (AMX-BF16), or -1 for automatic. */
  forceBf16Isa(isa: 3 | 4 | -1): void;
  threadCount(): number;
  setThreadCount(threads: number): void;
  defaultThreadCount(): number;
  /** fp32 FMA peak of the active path, GFLOP/s, measured for `milliseconds` on every pool thread. */
  fmaPeak(milliseconds: number): number;
  runSync(...args: NativeRunArgs): void;
  runAsync(...args: NativeRunArgs): Promise<void>;
  /**
   * A Float32Array of `length` (contents unspecified) over memory from the native recycling pool: the
   * block returns to the pool, already faulted in, when the garbage collector finalizes the array.
   */
  allocFloat32(length: number): Float32Array;
  bufferPoolStats(): BufferPoolStats;
  setBufferPoolLimit(bytes: number): void;
  trimBufferPool(): void;
  /** Bit mask over {@link DenseSet}: dense sets built into the addon that this CPU (and OS, for AMX) runs. */
  denseSets(): number;
  densePackedBytes(set: DenseSet, K: number, N: number): number;
  /** Packs `w` (`[N, K]`, PyTorch's layout) into `out` (`densePackedBytes` bytes), on the pool. */
  densePack(set: DenseSet, w: Float32Array, K: number, N: number, out: Uint8Array): void;
  denseLinearSync(...args: DenseLinearArgs): void;
  denseLinearAsync(...args: DenseLinearArgs): Promise<void>;
  denseLnModulateSync(...args: DenseLnModulateArgs): void;
  denseLnModulateAsync(...args: DenseLnModulateArgs): Promise<void>;
  denseGatedAddSync(...args: DenseGatedAddArgs): void;
  denseGatedAddAsync(...args: DenseGatedAddArgs): Promise<void>;
}

export interface NativeStatus {
  readonly loaded: boolean;
  /** Where the addon was looked for (or found). */
  readonly path: string;
  /** Every reason loading failed, in order (empty when loaded). */
  readonly errors: readonly string[];
  /** What to do about it. */
  readonly remedy?: string;
}

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The rebuild command a user runs when the addon is missing or stale. */
export const REBUILD_COMMAND = `cd ${packageRoot} && npm run build:native`;

/** Path of the compiled addon; `DITFA_KERNELS_CPU_ADDON` overrides it (sanitizer builds, tests). */
export function addonPath(): string {
  return process.env['DITFA_KERNELS_CPU_ADDON'] || join(packageRoot, 'build', 'Release', 'ditfa_kernels_cpu.node');
}

let cached: { addon: NativeAddon | null; status: NativeStatus } | undefined;

/** Loads the addon once. Never throws: failures are collected in the returned status. */
export function loadNative(): { addon: NativeAddon | null; status: NativeStatus } {
  if (cached) return cached;
  const path = addonPath();
  const errors: string[] = [];
  let addon: NativeAddon | null = null;
  if (!existsSync(path)) {
    errors.push(`the addon file ${path} does not exist (the install step did not build it, or it was removed)`);
  } else {
    try {
      const candidate = createRequire(import.meta.url)(path) as NativeAddon;
      const abi = typeof candidate.abiVersion === 'function' ? candidate.abiVersion() : undefined;
      if (abi !== EXPECTED_ABI_VERSION) {
        errors.push(`the addon at ${path} has ABI version ${String(abi)} but this package expects ${EXPECTED_ABI_VERSION} (a stale build)`);
      } else {
        addon = candidate;
      }
    } catch (error) {
      errors.push(`loading ${path} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const status: NativeStatus = addon
    ? { loaded: true, path, errors: [] }
    : { loaded: false, path, errors, remedy: `rebuild the addon from source with \`${REBUILD_COMMAND}\` (needs a C++17 compiler, make and python3)` };
  cached = { addon, status };
  return cached;
}
