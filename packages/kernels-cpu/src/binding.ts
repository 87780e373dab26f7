import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The addon's whole native surface, flat and typed: typed arrays and numbers cross the boundary,
 * nothing else. `native/addon.cc`'s `Init` lists the same exports.
 */

/** The ABI this TypeScript expects; the addon reports its own through `abiVersion()`. */
export const EXPECTED_ABI_VERSION = 1;

/** Kernel op codes of `runSync` / `runAsync`. */
export const NativeOp = { Full: 0, Window: 1, FullResidual: 2, WindowResidual: 3 } as const;
export type NativeOp = (typeof NativeOp)[keyof typeof NativeOp];

/** Instruction-set paths (bit `i` of `supportedIsas()`). */
export const NativeIsa = { Scalar: 0, Avx2: 1, Avx512: 2, Avx512Bf16: 3 } as const;
export type NativeIsa = (typeof NativeIsa)[keyof typeof NativeIsa];
export const ISA_NAMES: Record<NativeIsa, string> = { 0: 'scalar', 1: 'avx2', 2: 'avx512', 3: 'avx512bf16' };

/** Bits of `cpuFeatures()`, in order. */
export const FEATURE_NAMES = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512bf16'] as const;

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
  threadCount(): number;
  setThreadCount(threads: number): void;
  defaultThreadCount(): number;
  /** fp32 FMA peak of the active path, GFLOP/s, measured for `milliseconds` on every pool thread. */
  fmaPeak(milliseconds: number): number;
  runSync(...args: NativeRunArgs): void;
  runAsync(...args: NativeRunArgs): Promise<void>;
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
