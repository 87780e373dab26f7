import {
  DitfaError,
  ErrorCode,
  InvalidArgumentError,
  ShapeMismatchError,
  describeValue,
  expectFinite,
  numel,
  tensor,
  validateAttentionInputs,
  validateOut,
  validateWindow,
  type AttentionOptions,
  type BackendCapabilities,
  type CfgOrder,
  type FullWithResidual,
  type KernelBackend,
  type Tensor,
  type WindowSpec,
} from '@ditfa/core';
import { KernelPath, NativeDtype, loadBinding, type BuildStatus, type NativeBinding, type NativeError, type NativeProbe } from './binding.js';

/**
 * `@ditfa/kernels-cuda` without side effects: the CUDA backend, its status and device-resident tensors.
 * Importing this module never throws and never registers anything (`index.ts` registers).
 */

export const CUDA_BACKEND_NAME = 'cuda';

/** Largest head size of any kernel (the SIMT path); the tensor-core path takes D % 8 == 0, D <= 128. */
export const CUDA_MAX_HEAD_DIM = 256;

/** Error code of CUDA runtime failures (launch errors, out of memory...). */
export const CUDA_ERROR_CODE = 'ERR_DITFA_CUDA';

/** Storage type of a device tensor. Kernels accumulate in fp32 whatever the storage. */
export type DeviceDtype = 'f32' | 'bf16' | 'f16';

const DTYPE_BYTES: Record<DeviceDtype, number> = { f32: 4, bf16: 2, f16: 2 };
const DTYPE_CODE: Record<DeviceDtype, NativeDtype> = { f32: NativeDtype.f32, bf16: NativeDtype.bf16, f16: NativeDtype.f16 };

export interface CudaDeviceInfo {
  readonly name: string;
  /** `sm_90` for an H100. */
  readonly arch: string;
  readonly multiprocessors: number;
  readonly totalMemory: number;
  readonly sharedMemoryPerBlockOptin: number;
  /** e.g. `13.0`. */
  readonly driverVersion: string;
  readonly runtimeVersion: string;
  readonly deviceCount: number;
  readonly builtArchs: string;
}

/** Why the backend can or cannot run here; never throws. */
export interface CudaBackendStatus {
  readonly available: boolean;
  /** One line, null when available: `no CUDA driver found: ...`, `no CUDA GPU found: ...`, `not built: ...`. */
  readonly reason: string | null;
  /** Every failure collected on the way, in order. */
  readonly failures: readonly string[];
  /** What to do about it; null when available. */
  readonly remedy: string | null;
  readonly build: BuildStatus | null;
  /** True when the addon and libditfa_cuda loaded (the build ran), whether or not a GPU is present. */
  readonly loaded: boolean;
  readonly device: CudaDeviceInfo | null;
}

/** A CUDA runtime failure; `status` is the native category (`cuda`, `no-driver`, `no-device`, `unsupported`). */
export class CudaError extends DitfaError {
  readonly status: string;
  constructor(message: string, status: string, options?: { cause?: unknown }) {
    super(CUDA_ERROR_CODE, message, options);
    this.status = status;
  }
}

function versionText(v: number): string {
  return v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none';
}

function deviceInfo(p: NativeProbe): CudaDeviceInfo {
  return {
    name: p.name,
    arch: `sm_${p.major}${p.minor}`,
    multiprocessors: p.multiprocessors,
    totalMemory: p.totalMemory,
    sharedMemoryPerBlockOptin: p.sharedMemoryPerBlockOptin,
    driverVersion: versionText(p.driverVersion),
    runtimeVersion: versionText(p.runtimeVersion),
    deviceCount: p.deviceCount,
    builtArchs: p.builtArchs,
  };
}

let statusCache: CudaBackendStatus | undefined;

/** Loads the addon, probes the driver and device once per process, and reports. Never throws. */
export function cudaBackendStatus(): CudaBackendStatus {
  if (statusCache) return statusCache;
  const load = loadBinding();
  const failures = [...load.failures];
  let device: CudaDeviceInfo | null = null;
  let reason: string | null = null;
  let remedy: string | null = null;
  if (!load.binding) {
    reason = `not built: ${failures.join('; ')}`;
    remedy =
      load.build && !load.build.built && load.build.reason?.startsWith('skipped')
        ? 'install the CUDA toolkit (nvcc) and run `pnpm --filter @ditfa/kernels-cuda build:native`, or use the cpu backend'
        : 'rebuild with `pnpm --filter @ditfa/kernels-cuda build:native` (see build/status.json), or use the cpu backend';
  } else {
    let probe: NativeProbe | null = null;
    try {
      probe = load.binding.probe();
    } catch (error) {
      failures.push(`probe failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (probe && probe.status === 'ok') {
      device = deviceInfo(probe);
    } else if (probe) {
      failures.push(probe.message);
      if (probe.status === 'no-driver') {
        reason = `no CUDA driver found: ${probe.message}`;
        remedy = 'run on a machine with an NVIDIA GPU and its driver (libcuda.so), or use the cpu backend';
      } else if (probe.status === 'no-device') {
        reason = `no CUDA GPU found: ${probe.message}`;
        remedy = 'run on a machine with an NVIDIA GPU of compute capability 8.0 or newer, or use the cpu backend';
      } else {
        reason = `CUDA initialisation failed: ${probe.message}`;
        remedy = 'check the driver with nvidia-smi, or use the cpu backend';
      }
    } else {
      reason = `CUDA initialisation failed: ${failures.join('; ')}`;
      remedy = 'check the driver with nvidia-smi, or use the cpu backend';
    }
  }
  statusCache = { available: device !== null, reason, failures, remedy, build: load.build, loaded: load.binding !== null, device };
  return statusCache;
}

function wrapNative(error: unknown, what: string): never {
  const e = error as NativeError;
  const status = typeof e?.status === 'string' ? e.status : 'cuda';
  if (status === 'invalid') throw new InvalidArgumentError(`${what}: ${e.message}`, { cause: error });
  throw new CudaError(`${what}: ${e instanceof Error ? e.message : String(e)}`, status, { cause: error });
}

/**
 * A tensor in GPU memory owned by the CUDA backend that made it. Its shape is fixed; `dispose()` frees the
 * memory (idempotent). Use it to keep q/k/v, outputs and caches on the device between kernel calls.
 */
export class DeviceTensor {
  readonly shape: readonly number[];
  readonly dtype: DeviceDtype;
  readonly size: number;
  readonly bytes: number;
  #handle: number;
  readonly #owner: CudaBackendImpl;

  /** @internal Made by {@link CudaBackend.empty} and friends. */
  constructor(owner: CudaBackendImpl, handle: number, shape: readonly number[], dtype: DeviceDtype) {
    this.#owner = owner;
    this.#handle = handle;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = numel(shape);
    this.bytes = this.size * DTYPE_BYTES[dtype];
  }

  get disposed(): boolean {
    return this.#handle === 0;
  }

  /** @internal The native handle; throws when disposed. */
  handle(name: string): number {
    if (this.#handle === 0) throw new InvalidArgumentError(`Expected a live device tensor for ${name} but it was disposed`);
    return this.#handle;
  }

  /** @internal */
  ownedBy(owner: CudaBackendImpl): boolean {
    return this.#owner === owner;
  }

  dispose(): void {
    if (this.#handle === 0) return;
    const h = this.#handle;
    this.#handle = 0;
    this.#owner.release(this, h);
  }
}

export interface DeviceAttentionOptions {
  /** Softmax scale; default `1/√D`. */
  readonly scale?: number;
  /** Write here instead of allocating (same shape and dtype as q). */
  readonly out?: DeviceTensor;
  /** `'auto'` (default), `'simt'` or `'tensor-core'` (an error when the call does not fit it). */
  readonly path?: 'auto' | 'simt' | 'tensor-core';
}

/** The CUDA backend: the core kernel contract on host tensors, plus device-resident tensors and calls. */
export interface CudaBackend extends KernelBackend {
  readonly device: CudaDeviceInfo;
  /** Allocates an uninitialised device tensor. */
  empty(shape: readonly number[], dtype?: DeviceDtype): DeviceTensor;
  /** Copies a host tensor to the device, converting to `dtype` (default `'bf16'`) on the device. */
  upload(t: Tensor, dtype?: DeviceDtype): DeviceTensor;
  /** Copies a device tensor back as float32 (off the JavaScript thread). */
  download(t: DeviceTensor): Promise<Tensor>;
  /** Fills a device tensor with one value (poisoning outputs in tests, zeroing caches). */
  fill(t: DeviceTensor, value: number): void;
  /** Full attention on device tensors (`[B, L, H, D]`, one dtype). Enqueued; returns at once. */
  attentionDevice(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, options?: DeviceAttentionOptions): DeviceTensor;
  /** Window attention, visiting only the key tiles inside the band. */
  windowAttentionDevice(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, window: WindowSpec, options?: DeviceAttentionOptions): DeviceTensor;
  /** Full output and residual `full − window` from one pass over the keys. */
  fullWithResidualDevice(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    window: WindowSpec,
    options?: DeviceAttentionOptions & { readonly residualOut?: DeviceTensor },
  ): { out: DeviceTensor; residual: DeviceTensor };
  /** Window attention with `residual` added in the same kernel. */
  windowWithResidualDevice(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    window: WindowSpec,
    residual: DeviceTensor,
    options?: DeviceAttentionOptions,
  ): DeviceTensor;
  /** ASC: copies the conditional half of a `[B, ...]` batch onto the unconditional half, in place. */
  cfgCopy(t: DeviceTensor, order: CfgOrder): void;
  /** Waits for every enqueued call. */
  synchronize(): void;
  /** Device tensors this backend holds (not yet disposed). */
  liveTensors(): { count: number; bytes: number };
}

export interface CudaBackendOptions {
  /** Storage type used by the host-tensor calls with `compute: 'bf16'` (default `'bf16'`). */
  readonly halfType?: 'bf16' | 'f16';
}

interface Dims {
  B: number;
  L: number;
  H: number;
  D: number;
}

function dims4(name: string, t: DeviceTensor): Dims {
  if (!(t instanceof DeviceTensor)) throw new InvalidArgumentError(`Expected a DeviceTensor for ${name} but received ${describeValue(t)}`);
  if (t.shape.length !== 4) throw new ShapeMismatchError(`Expected ${name} of rank 4 [B, L, H, D] but received shape [${t.shape.join(', ')}]`);
  const [B, L, H, D] = t.shape as [number, number, number, number];
  return { B, L, H, D };
}

function windowArgs(w: WindowSpec | null): [0 | 1 | 2, number, number, number, number] {
  if (!w) return [0, 0, 0, 0, 0];
  if (w.kind === '1d') return [1, w.size, 0, 0, 0];
  return [2, 0, w.rows, w.cols, w.radius];
}

const PATHS = { auto: KernelPath.auto, simt: KernelPath.simt, 'tensor-core': KernelPath.tensorCore } as const;

/** @internal */
export class CudaBackendImpl implements CudaBackend {
  readonly name = CUDA_BACKEND_NAME;
  readonly device: CudaDeviceInfo;
  readonly #native: NativeBinding;
  readonly #half: 'bf16' | 'f16';
  readonly #live = new Set<DeviceTensor>();
  #disposed = false;
  readonly #caps: BackendCapabilities;

  constructor(native: NativeBinding, device: CudaDeviceInfo, options: CudaBackendOptions = {}) {
    this.#native = native;
    this.device = device;
    const half = options.halfType ?? 'bf16';
    if (half !== 'bf16' && half !== 'f16') throw new InvalidArgumentError(`Expected halfType 'bf16' or 'f16' but received ${describeValue(half)}`);
    this.#half = half;
    this.#caps = Object.freeze({
      device: 'cuda',
      computeDtypes: Object.freeze(['fp32', 'bf16'] as const),
      maxHeadDim: CUDA_MAX_HEAD_DIM,
      windows: Object.freeze(['1d', '2d'] as const),
      threads: 1,
      features: Object.freeze([device.arch, `built:${device.builtArchs}`, 'mma.sync', 'fp32-accumulate']),
      offThread: true,
    });
  }

  capabilities(): BackendCapabilities {
    return this.#caps;
  }

  #alive(): void {
    if (this.#disposed) throw new InvalidArgumentError('Expected a live CUDA backend but it was disposed');
  }

  /** @internal */
  release(t: DeviceTensor, handle: number): void {
    this.#live.delete(t);
    try {
      this.#native.free(handle);
    } catch (error) {
      wrapNative(error, 'free');
    }
  }

  #own(name: string, t: DeviceTensor): number {
    if (!(t instanceof DeviceTensor)) throw new InvalidArgumentError(`Expected a DeviceTensor for ${name} but received ${describeValue(t)}`);
    if (!t.ownedBy(this)) throw new InvalidArgumentError(`Expected ${name} to belong to this CUDA backend but it was made by another one`);
    return t.handle(name);
  }

  empty(shape: readonly number[], dtype: DeviceDtype = 'bf16'): DeviceTensor {
    this.#alive();
    if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0)) {
      throw new InvalidArgumentError(`Expected an array of non-negative integers for shape but received ${describeValue(shape)}`);
    }
    if (!(dtype in DTYPE_BYTES)) throw new InvalidArgumentError(`Expected dtype 'f32', 'bf16' or 'f16' but received ${describeValue(dtype)}`);
    const bytes = numel(shape) * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`Expected a tensor size that fits in memory but received shape [${shape.join(', ')}]`);
    let handle = 0;
    try {
      handle = this.#native.alloc(bytes);
    } catch (error) {
      wrapNative(error, `allocating ${bytes} bytes on ${this.device.name}`);
    }
    const t = new DeviceTensor(this, handle, shape, dtype);
    this.#live.add(t);
    return t;
  }

  upload(t: Tensor, dtype: DeviceDtype = 'bf16'): DeviceTensor {
    this.#alive();
    if (!t || !(t.data instanceof Float32Array) || !Array.isArray(t.shape) || t.data.length !== numel(t.shape)) {
      throw new InvalidArgumentError(`Expected a Tensor with Float32Array data matching its shape but received ${describeValue(t)}`);
    }
    if (!(dtype in DTYPE_BYTES)) throw new InvalidArgumentError(`Expected dtype 'f32', 'bf16' or 'f16' but received ${describeValue(dtype)}`);
    const out = this.empty(t.shape, dtype);
    try {
      if (dtype === 'f32') {
        this.#native.upload(out.handle('out'), t.data, 0);
      } else {
        const staging = this.empty(t.shape, 'f32');
        try {
          this.#native.upload(staging.handle('staging'), t.data, 0);
          this.#native.convert(out.handle('out'), DTYPE_CODE[dtype], staging.handle('staging'), NativeDtype.f32, out.size);
        } finally {
          staging.dispose();
        }
      }
    } catch (error) {
      out.dispose();
      if (error instanceof DitfaError) throw error;
      wrapNative(error, 'upload');
    }
    return out;
  }

  async download(t: DeviceTensor): Promise<Tensor> {
    this.#alive();
    const h = this.#own('tensor', t);
    const data = new Float32Array(t.size);
    try {
      if (t.dtype === 'f32') {
        await this.#native.downloadAsync(h, data, 0);
      } else {
        const staging = this.empty(t.shape, 'f32');
        try {
          this.#native.convert(staging.handle('staging'), NativeDtype.f32, h, DTYPE_CODE[t.dtype], t.size);
          await this.#native.downloadAsync(staging.handle('staging'), data, 0);
        } finally {
          staging.dispose();
        }
      }
    } catch (error) {
      if (error instanceof DitfaError) throw error;
      wrapNative(error, 'download');
    }
    return tensor(data, t.shape);
  }

  fill(t: DeviceTensor, value: number): void {
    this.#alive();
    const h = this.#own('tensor', t);
    expectFinite('value', value);
    try {
      this.#native.fill(h, DTYPE_CODE[t.dtype], t.size, value);
    } catch (error) {
      wrapNative(error, 'fill');
    }
  }

  /** Validates q/k/v (+ extra same-shape tensors) and returns dims and scale. Touches no native memory. */
  #check(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    window: WindowSpec | null,
    options: DeviceAttentionOptions,
    extra: ReadonlyArray<[string, DeviceTensor | undefined]>,
  ): { d: Dims; Lkv: number; scale: number; win: WindowSpec | null; path: KernelPath } {
    this.#alive();
    const qd = dims4('q', q);
    const kd = dims4('k', k);
    const vd = dims4('v', v);
    for (const [n, t] of [['q', q], ['k', k], ['v', v]] as const) this.#own(n, t);
    if (kd.B !== vd.B || kd.L !== vd.L || kd.H !== vd.H || kd.D !== vd.D) {
      throw new ShapeMismatchError(`Expected k and v of the same shape but received [${k.shape.join(', ')}] and [${v.shape.join(', ')}]`);
    }
    if (qd.B !== kd.B || qd.H !== kd.H || qd.D !== kd.D) {
      throw new ShapeMismatchError(
        `Expected q [B, Lq, H, D] and k [B, Lkv, H, D] to agree on B, H and D but received [${q.shape.join(', ')}] and [${k.shape.join(', ')}]`,
      );
    }
    if (q.dtype !== k.dtype || q.dtype !== v.dtype) {
      throw new InvalidArgumentError(`Expected q, k and v of one dtype but received ${q.dtype}, ${k.dtype} and ${v.dtype}`);
    }
    if (qd.D < 1 || qd.D > CUDA_MAX_HEAD_DIM) throw new InvalidArgumentError(`Expected a head size D in [1, ${CUDA_MAX_HEAD_DIM}] but received ${qd.D}`);
    if (qd.L > 0 && kd.L === 0) throw new ShapeMismatchError('Expected at least one key for a non-empty query but received Lkv = 0');
    const scale = options.scale === undefined ? 1 / Math.sqrt(qd.D) : expectFinite('scale', options.scale);
    const path = options.path ?? 'auto';
    if (!(path in PATHS)) throw new InvalidArgumentError(`Expected path 'auto', 'simt' or 'tensor-core' but received ${describeValue(path)}`);
    const win = window === null ? null : validateWindow(window, { B: qd.B, Lq: qd.L, Lkv: kd.L, H: qd.H, D: qd.D, scale });
    for (const [n, t] of extra) {
      if (t === undefined) continue;
      const td = dims4(n, t);
      this.#own(n, t);
      if (td.B !== qd.B || td.L !== qd.L || td.H !== qd.H || td.D !== qd.D || t.dtype !== q.dtype) {
        throw new ShapeMismatchError(`Expected ${n} of shape [${q.shape.join(', ')}] and dtype ${q.dtype} but received [${t.shape.join(', ')}] ${t.dtype}`);
      }
    }
    const handles = [q, k, v, ...extra.map(([, t]) => t).filter((t): t is DeviceTensor => t !== undefined)];
    const outs = extra.filter(([n]) => n === 'out' || n === 'residualOut').map(([, t]) => t);
    for (const o of outs) {
      if (o && handles.filter((t) => t === o).length > 1) {
        throw new InvalidArgumentError('Expected output tensors distinct from the inputs and from each other (kernels do not run in place)');
      }
    }
    return { d: qd, Lkv: kd.L, scale, win, path: PATHS[path] };
  }

  #launch(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    out: DeviceTensor,
    residualIn: DeviceTensor | null,
    fullOut: DeviceTensor | null,
    c: { d: Dims; Lkv: number; scale: number; win: WindowSpec | null; path: KernelPath },
  ): void {
    try {
      this.#native.attention(
        q.handle('q'),
        k.handle('k'),
        v.handle('v'),
        out.handle('out'),
        residualIn ? residualIn.handle('residual') : 0,
        fullOut ? fullOut.handle('fullOut') : 0,
        DTYPE_CODE[q.dtype],
        c.d.B,
        c.d.L,
        c.Lkv,
        c.d.H,
        c.d.D,
        c.scale,
        ...windowArgs(c.win),
        c.path,
      );
    } catch (error) {
      wrapNative(error, 'attention');
    }
  }

  attentionDevice(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, options: DeviceAttentionOptions = {}): DeviceTensor {
    const c = this.#check(q, k, v, null, options, [['out', options.out]]);
    const out = options.out ?? this.empty(q.shape, q.dtype);
    this.#launch(q, k, v, out, null, null, c);
    return out;
  }

  windowAttentionDevice(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, window: WindowSpec, options: DeviceAttentionOptions = {}): DeviceTensor {
    const c = this.#check(q, k, v, window, options, [['out', options.out]]);
    const out = options.out ?? this.empty(q.shape, q.dtype);
    this.#launch(q, k, v, out, null, null, c);
    return out;
  }

  fullWithResidualDevice(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    window: WindowSpec,
    options: DeviceAttentionOptions & { readonly residualOut?: DeviceTensor } = {},
  ): { out: DeviceTensor; residual: DeviceTensor } {
    if (options.out !== undefined && options.out === options.residualOut) {
      throw new InvalidArgumentError('Expected distinct tensors for out and residualOut');
    }
    const c = this.#check(q, k, v, window, options, [
      ['out', options.out],
      ['residualOut', options.residualOut],
    ]);
    const out = options.out ?? this.empty(q.shape, q.dtype);
    const residual = options.residualOut ?? this.empty(q.shape, q.dtype);
    // The fused kernel writes the residual to `out` and the full output to `full_out`.
    this.#launch(q, k, v, residual, null, out, c);
    return { out, residual };
  }

  windowWithResidualDevice(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    window: WindowSpec,
    residual: DeviceTensor,
    options: DeviceAttentionOptions = {},
  ): DeviceTensor {
    const c = this.#check(q, k, v, window, options, [
      ['residual', residual],
      ['out', options.out],
    ]);
    if (options.out !== undefined && options.out === residual) {
      throw new InvalidArgumentError('Expected out distinct from the residual (the residual is not modified)');
    }
    const out = options.out ?? this.empty(q.shape, q.dtype);
    this.#launch(q, k, v, out, residual, null, c);
    return out;
  }

  cfgCopy(t: DeviceTensor, order: CfgOrder): void {
    this.#alive();
    const h = this.#own('tensor', t);
    if (order !== 'cond-first' && order !== 'cond-second') {
      throw new InvalidArgumentError(`Expected CFG order 'cond-first' or 'cond-second' but received ${describeValue(order)}`);
    }
    const batch = t.shape[0] ?? 0;
    if (t.shape.length === 0 || batch === 0 || batch % 2 !== 0) {
      throw new ShapeMismatchError(`Expected an even, non-zero batch for a CFG copy but received shape [${t.shape.join(', ')}]`);
    }
    try {
      this.#native.cfgCopy(h, batch, t.bytes / batch, order === 'cond-first' ? 1 : 0);
    } catch (error) {
      wrapNative(error, 'cfgCopy');
    }
  }

  synchronize(): void {
    this.#alive();
    try {
      this.#native.synchronize();
    } catch (error) {
      wrapNative(error, 'synchronize');
    }
  }

  liveTensors(): { count: number; bytes: number } {
    let bytes = 0;
    for (const t of this.#live) bytes += t.bytes;
    return { count: this.#live.size, bytes };
  }

  // --- The core KernelBackend contract on host tensors: upload, one kernel, download. ---

  #storage(options: AttentionOptions | undefined): DeviceDtype {
    return options?.compute === 'bf16' ? this.#half : 'f32';
  }

  async #host(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: WindowSpec | null,
    options: AttentionOptions | undefined,
    run: (dq: DeviceTensor, dk: DeviceTensor, dv: DeviceTensor, scale: number, win: WindowSpec | null, temps: DeviceTensor[]) => DeviceTensor[],
    outs: Array<Tensor | undefined>,
  ): Promise<Tensor[]> {
    this.#alive();
    const dims = validateAttentionInputs(q, k, v, options, CUDA_MAX_HEAD_DIM);
    const win = window === null ? null : validateWindow(window, dims);
    outs.forEach((o, i) => validateOut(i === 0 ? 'out' : 'residualOut', o, q.shape));
    const dtype = this.#storage(options);
    const temps: DeviceTensor[] = [];
    try {
      const dq = this.upload(q, dtype);
      temps.push(dq);
      const dk = this.upload(k, dtype);
      temps.push(dk);
      const dv = this.upload(v, dtype);
      temps.push(dv);
      const results = run(dq, dk, dv, dims.scale, win, temps);
      temps.push(...results);
      const host: Tensor[] = [];
      for (const [i, r] of results.entries()) {
        const t = await this.download(r);
        const target = outs[i];
        if (target) {
          target.data.set(t.data);
          host.push(tensor(target.data, q.shape));
        } else {
          host.push(t);
        }
      }
      return host;
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  async attention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Promise<Tensor> {
    const [out] = await this.#host(q, k, v, null, options, (dq, dk, dv, scale) => [this.attentionDevice(dq, dk, dv, { scale })], [options?.out]);
    return out!;
  }

  async windowAttention(q: Tensor, k: Tensor, v: Tensor, window: WindowSpec, options?: AttentionOptions): Promise<Tensor> {
    const [out] = await this.#host(q, k, v, window, options, (dq, dk, dv, scale, win) => [this.windowAttentionDevice(dq, dk, dv, win!, { scale })], [
      options?.out,
    ]);
    return out!;
  }

  async fullWithResidual(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: WindowSpec,
    options?: Omit<AttentionOptions, 'out'> & { readonly out?: Tensor; readonly residualOut?: Tensor },
  ): Promise<FullWithResidual> {
    if (options?.out !== undefined && options.out === options.residualOut) throw new InvalidArgumentError('Expected distinct tensors for out and residualOut');
    const [out, residual] = await this.#host(
      q,
      k,
      v,
      window,
      options,
      (dq, dk, dv, scale, win) => {
        const r = this.fullWithResidualDevice(dq, dk, dv, win!, { scale });
        return [r.out, r.residual];
      },
      [options?.out, options?.residualOut],
    );
    return { out: out!, residual: residual! };
  }

  async windowWithResidual(q: Tensor, k: Tensor, v: Tensor, window: WindowSpec, residual: Tensor, options?: AttentionOptions): Promise<Tensor> {
    validateOut('residual', residual, q.shape);
    if (residual === undefined) throw new InvalidArgumentError('Expected a residual tensor but received undefined');
    const [out] = await this.#host(
      q,
      k,
      v,
      window,
      options,
      (dq, dk, dv, scale, win, temps) => {
        const dr = this.upload(residual, dq.dtype);
        temps.push(dr);
        return [this.windowWithResidualDevice(dq, dk, dv, win!, dr, { scale })];
      },
      [options?.out],
    );
    return out!;
  }

  dispose(): void {
    if (this.#disposed) return;
    for (const t of [...this.#live]) t.dispose();
    this.#disposed = true;
  }
}

/** The backend-unavailable error a caller gets when it asks for the CUDA backend where it cannot run. */
export function cudaUnavailableError(status: CudaBackendStatus = cudaBackendStatus()): DitfaError {
  const cause = new Error(status.failures.join('\n') || (status.reason ?? 'unknown'));
  return new DitfaError(
    ErrorCode.BackendUnavailable,
    `The CUDA backend is unavailable: ${status.reason ?? 'unknown reason'}.\nRemedy: ${status.remedy ?? 'use the cpu backend'}`,
    { cause },
  );
}

/**
 * Creates the CUDA backend on device 0. Throws a coded error (`ERR_DITFA_BACKEND_UNAVAILABLE`) with the
 * cause and a remedy when there is no build, driver or GPU; check {@link cudaBackendStatus} first to avoid it.
 */
export function createCudaBackend(options: CudaBackendOptions = {}): CudaBackend {
  const status = cudaBackendStatus();
  const binding = loadBinding().binding;
  if (!status.available || !status.device || !binding) throw cudaUnavailableError(status);
  return new CudaBackendImpl(binding, status.device, options);
}
