import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The flat, typed surface of the native addon (native/addon.cc). Typed arrays and numbers cross the
 * boundary; device memory is referred to by integer handles that the addon checks on every call.
 * Nothing here throws at import: {@link loadBinding} collects every failure.
 */

/** Storage types of device tensors, as the native code numbers them. */
export const NativeDtype = { f32: 0, bf16: 1, f16: 2 } as const;
export type NativeDtype = (typeof NativeDtype)[keyof typeof NativeDtype];

/**
 * Kernel selection: 0 picks (tensor cores for bf16/f16 with D % 8 == 0 and D <= 128), 1 SIMT, 2 tensor
 * cores (picking the block height), 3 tensor cores with 64-row blocks, 4 with 128-row blocks (D <= 80).
 */
export const KernelPath = { auto: 0, simt: 1, tensorCore: 2, tensorCore64Rows: 3, tensorCore128Rows: 4 } as const;
export type KernelPath = (typeof KernelPath)[keyof typeof KernelPath];

export interface NativeProbe {
  /** `'ok'`, or why the device is unusable: `'no-driver'`, `'no-device'`, `'cuda'`. */
  readonly status: 'ok' | 'no-driver' | 'no-device' | 'cuda' | 'invalid' | 'unsupported';
  readonly message: string;
  readonly name: string;
  readonly major: number;
  readonly minor: number;
  readonly multiprocessors: number;
  readonly totalMemory: number;
  readonly sharedMemoryPerBlockOptin: number;
  /** CUDA driver version as an integer (13000 = 13.0); 0 without a driver. */
  readonly driverVersion: number;
  readonly runtimeVersion: number;
  readonly deviceCount: number;
  /** Architectures compiled into the library, e.g. `sm_90,compute_80`. */
  readonly builtArchs: string;
}

/** Errors thrown by the addon carry `status`. */
export interface NativeError extends Error {
  readonly status?: 'invalid' | 'no-driver' | 'no-device' | 'cuda' | 'unsupported';
}

export interface NativeBinding {
  readonly abiVersion: number;
  readonly libAbiVersion: number;
  /** dlopens libditfa_cuda.so; returns '' on success, else the reason. */
  open(path: string): string;
  probe(): NativeProbe;
  alloc(bytes: number): number;
  free(handle: number): void;
  upload(handle: number, data: ArrayBufferView, byteOffset: number): void;
  download(handle: number, data: ArrayBufferView, byteOffset: number): void;
  downloadAsync(handle: number, data: ArrayBufferView, byteOffset: number): Promise<void>;
  copy(dst: number, src: number, bytes: number): void;
  convert(dst: number, dstDtype: NativeDtype, src: number, srcDtype: NativeDtype, n: number): void;
  fill(handle: number, dtype: NativeDtype, n: number, value: number): void;
  cfgCopy(handle: number, batch: number, rowBytes: number, condFirst: 0 | 1): void;
  attention(
    q: number,
    k: number,
    v: number,
    out: number,
    residualIn: number,
    fullOut: number,
    dtype: NativeDtype,
    B: number,
    Lq: number,
    Lkv: number,
    H: number,
    D: number,
    scale: number,
    windowKind: 0 | 1 | 2,
    windowSize: number,
    rows: number,
    cols: number,
    radius: number,
    path: KernelPath,
  ): void;
  synchronize(): void;
  liveBuffers(): { count: number; bytes: number };
}

/** The addon ABI this TypeScript expects. */
export const ADDON_ABI_VERSION = 1;

/** What scripts/build-native.mjs recorded in build/status.json. */
export interface BuildStatus {
  readonly built: boolean;
  readonly reason?: string;
  readonly nvcc?: string;
  readonly nvccVersion?: string;
  readonly archs?: string;
  readonly spillStoreBytes?: number;
  readonly seconds?: number;
  readonly at?: string;
}

export interface LoadResult {
  /** The loaded addon with libditfa_cuda opened, or null. */
  readonly binding: NativeBinding | null;
  /** Every reason loading failed, in order. Empty when `binding` is set. */
  readonly failures: readonly string[];
  readonly build: BuildStatus | null;
  readonly addonPath: string;
  readonly libraryPath: string;
}

export const PACKAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');

let cached: LoadResult | undefined;

function readBuildStatus(file: string): BuildStatus | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as BuildStatus;
  } catch {
    return null;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Loads the addon and opens the CUDA library once per process. Never throws. `DITFA_CUDA_DIR` points at
 * another directory holding `ditfa_cuda_addon.node` and `libditfa_cuda.so`.
 */
export function loadBinding(): LoadResult {
  if (cached) return cached;
  const dir = process.env.DITFA_CUDA_DIR ?? join(PACKAGE_DIR, 'build', 'Release');
  const addonPath = join(dir, 'ditfa_cuda_addon.node');
  const libraryPath = join(dir, 'libditfa_cuda.so');
  const build = readBuildStatus(join(PACKAGE_DIR, 'build', 'status.json'));
  const failures: string[] = [];
  let binding: NativeBinding | null = null;
  if (!existsSync(addonPath)) {
    failures.push(
      build && !build.built
        ? `native build ${build.reason ?? 'did not run'}`
        : `native addon not found at ${addonPath} (run \`pnpm --filter @ditfa/kernels-cuda build:native\` on a machine with nvcc)`,
    );
  } else {
    try {
      const candidate = createRequire(import.meta.url)(addonPath) as NativeBinding;
      if (candidate.abiVersion !== ADDON_ABI_VERSION) {
        failures.push(`native addon ABI ${String(candidate.abiVersion)} but this package expects ${ADDON_ABI_VERSION} (rebuild the package)`);
      } else {
        const opened = candidate.open(libraryPath);
        if (opened === '') binding = candidate;
        else failures.push(`cannot open ${libraryPath}: ${opened}`);
      }
    } catch (error) {
      failures.push(`cannot load ${addonPath}: ${message(error)}`);
    }
  }
  cached = { binding, failures, build, addonPath, libraryPath };
  return cached;
}
