import {
  type DenseCapabilities,
  type DenseDtype,
  type DenseKernels,
  type DenseLinearOptions,
  type DenseWeights,
  InvalidArgumentError,
  type PackedLinear,
  type SampleVectors,
  ShapeMismatchError,
  type Tensor,
  checkSampleVectors,
  denseRows,
  describeValue,
  tensor,
} from '@ditfa/core';
import {
  DENSE_SET_NAMES,
  DenseEpilogue,
  DenseSet,
  type DenseGatedAddArgs,
  type DenseLinearArgs,
  type DenseLnModulateArgs,
  type NativeAddon,
} from './binding.js';

/**
 * The native dense kernels (core's `DenseKernels`): linear layers with the LayerNorm + modulate prologue
 * and bias / GELU / gated-residual epilogues fused, on the same thread pool as attention. fp32 runs on
 * AVX-512 FMA; bf16 on AMX tiles where the CPU and OS allow them, else on AVX512-BF16 (`vdpbf16ps`).
 * Weights are packed once per path; a packed weight records its path and only that path reads it.
 */
export type DensePath = 'avx512' | 'avx512bf16' | 'amx-bf16';

export interface CpuDenseKernels extends DenseKernels {
  /** Packs for one path (tests force each path this CPU runs). */
  packFor(weights: DenseWeights, path: DensePath): PackedLinear;
  /** The paths this CPU runs, best first per dtype. */
  paths(): readonly DensePath[];
  linearSync(x: Tensor, weights: PackedLinear, options?: DenseLinearOptions): Tensor[];
  layerNormModulateSync(x: Tensor, shift: SampleVectors, scale: SampleVectors, eps: number, options?: { readonly out?: Tensor }): Tensor;
  gatedAddSync(x: Tensor, y: Tensor, gate: SampleVectors | undefined, options?: { readonly out?: Tensor }): Tensor;
}

const EMPTY = new Float32Array(0);
const PATH_SET: Record<DensePath, DenseSet> = { avx512: DenseSet.F32Avx512, avx512bf16: DenseSet.Bf16Avx512, 'amx-bf16': DenseSet.Bf16Amx };
const PATH_DTYPE: Record<DensePath, DenseDtype> = { avx512: 'fp32', avx512bf16: 'bf16', 'amx-bf16': 'bf16' };

function overlaps(a: Float32Array, b: Float32Array): boolean {
  if (a.buffer !== b.buffer || a.length === 0 || b.length === 0) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

function table(v: SampleVectors): [Float32Array, number, number] {
  return [v.table.data, v.table.shape[1]!, v.offset];
}

/** The caller's output array (checked), or a new one from the native pool. */
function outArray(native: NativeAddon, out: Tensor | undefined, length: number, what: string): Float32Array {
  if (out === undefined) return native.allocFloat32(length);
  if (!out || !(out.data instanceof Float32Array) || out.data.length !== length) {
    throw new ShapeMismatchError(`Expected ${what} to hold ${length} float32 values but received ${describeValue(out?.data ?? out)}`);
  }
  return out.data;
}

/** The dense kernels over a loaded addon, or null when the addon has no dense set this CPU runs. */
export function createCpuDense(native: NativeAddon, backendName: string): CpuDenseKernels | null {
  const sets = native.denseSets();
  const has = (p: DensePath): boolean => (sets & (1 << PATH_SET[p])) !== 0;
  const available = (['avx512', 'amx-bf16', 'avx512bf16'] as const).filter(has);
  if (!has('avx512')) return null;
  const bf16Path: DensePath | undefined = has('amx-bf16') ? 'amx-bf16' : has('avx512bf16') ? 'avx512bf16' : undefined;
  const capabilities: DenseCapabilities = Object.freeze({
    dtypes: Object.freeze(bf16Path ? (['fp32', 'bf16'] as const) : (['fp32'] as const)),
    paths: Object.freeze({ fp32: 'avx512', ...(bf16Path ? { bf16: bf16Path } : {}) }),
  });

  function packFor(weights: DenseWeights, path: DensePath): PackedLinear {
    if (!has(path)) throw new InvalidArgumentError(`Expected a dense path this CPU runs (${available.join(', ')}) but received ${describeValue(path)}`);
    const { weight, bias, inFeatures: K, outFeatures: N } = weights ?? ({} as DenseWeights);
    if (!Number.isInteger(K) || K < 1 || !Number.isInteger(N) || N < 1) {
      throw new InvalidArgumentError(`Expected positive integer inFeatures and outFeatures but received ${describeValue(K)} and ${describeValue(N)}`);
    }
    if (!(weight instanceof Float32Array) || weight.length !== K * N) throw new ShapeMismatchError(`Expected ${N}×${K} float32 weights but received ${describeValue(weight)}`);
    if (bias !== null && (!(bias instanceof Float32Array) || bias.length !== N)) throw new ShapeMismatchError(`Expected ${N} bias values or null but received ${describeValue(bias)}`);
    const set = PATH_SET[path];
    const data = new Uint8Array(native.densePackedBytes(set, K, N));
    native.densePack(set, weight, K, N, data);
    return { backend: backendName, layout: DENSE_SET_NAMES[set], dtype: PATH_DTYPE[path], inFeatures: K, outFeatures: N, bias: bias ? bias.slice() : null, data };
  }

  function linearArgs(x: Tensor, w: PackedLinear, options: DenseLinearOptions = {}): { args: DenseLinearArgs; outs: Float32Array[]; rows: number; P: number } {
    const path = (Object.keys(PATH_SET) as DensePath[]).find((p) => DENSE_SET_NAMES[PATH_SET[p]] === w?.layout);
    if (!w || w.backend !== backendName || path === undefined || !has(path)) {
      throw new InvalidArgumentError(`Expected weights packed by this backend's dense kernels (${available.join(', ')}) but received ${describeValue(w?.layout ?? w)}`);
    }
    const K = w.inFeatures;
    const N = w.outFeatures;
    const rows = denseRows(x, K);
    const split = options.split ?? 1;
    if (!Number.isInteger(split) || split < 1 || split > 4 || N % split !== 0) {
      throw new InvalidArgumentError(`Expected a split of 1 to 4 that divides ${N} output features but received ${describeValue(split)}`);
    }
    const P = N / split;
    if (options.out !== undefined && options.out.length !== split) throw new InvalidArgumentError(`Expected ${split} output tensors but received ${options.out.length}`);
    const outs = Array.from({ length: split }, (_, j) => outArray(native, options.out?.[j], rows * P, `out[${j}]`));
    const nm = options.normModulate;
    if (nm) {
      checkSampleVectors('shift', nm.shift, rows, K);
      checkSampleVectors('scale', nm.scale, rows, K);
      if (nm.shift.rowsPerSample !== nm.scale.rowsPerSample) throw new InvalidArgumentError('Expected shift and scale with the same rowsPerSample');
      if (!(nm.eps > 0)) throw new InvalidArgumentError(`Expected a positive eps but received ${describeValue(nm.eps)}`);
    }
    const res = options.residual;
    let epilogue: DenseEpilogue = options.activation === 'gelu-tanh' ? DenseEpilogue.Gelu : DenseEpilogue.None;
    if (options.activation !== undefined && options.activation !== 'gelu-tanh') {
      throw new InvalidArgumentError(`Expected activation 'gelu-tanh' or none but received ${describeValue(options.activation)}`);
    }
    if (res) {
      if (options.activation) throw new InvalidArgumentError('Expected either an activation or a residual, not both');
      if (split !== 1) throw new InvalidArgumentError('Expected split 1 with a residual');
      if (!res.tensor || !(res.tensor.data instanceof Float32Array) || res.tensor.data.length !== rows * N) {
        throw new ShapeMismatchError(`Expected a residual of ${rows}×${N} float32 values but received ${describeValue(res.tensor?.data ?? res.tensor)}`);
      }
      if (res.gate) checkSampleVectors('gate', res.gate, rows, N);
      epilogue = res.gate ? DenseEpilogue.GatedResidual : DenseEpilogue.Residual;
    }
    for (const [j, o] of outs.entries()) {
      if (overlaps(o, x.data)) throw new InvalidArgumentError(`Expected out[${j}] in memory separate from x but the two arrays overlap`);
      if (res && o !== res.tensor.data && overlaps(o, res.tensor.data)) throw new InvalidArgumentError('Expected the residual to be the output itself or separate from it');
    }
    const rowsPerSample = nm?.shift.rowsPerSample ?? res?.gate?.rowsPerSample ?? 1;
    if (nm && res?.gate && res.gate.rowsPerSample !== rowsPerSample) throw new InvalidArgumentError('Expected the gate and the modulation with the same rowsPerSample');
    const args: DenseLinearArgs = [
      PATH_SET[path],
      x.data,
      rows,
      K,
      w.data,
      N,
      w.bias ?? EMPTY,
      nm ? 1 : 0,
      ...(nm ? table(nm.shift) : [EMPTY, 0, 0] as [Float32Array, number, number]),
      ...(nm ? table(nm.scale) : [EMPTY, 0, 0] as [Float32Array, number, number]),
      nm?.eps ?? 1e-6,
      rowsPerSample,
      epilogue,
      res?.tensor.data ?? EMPTY,
      ...(res?.gate ? table(res.gate) : [EMPTY, 0, 0] as [Float32Array, number, number]),
      outs[0]!,
      outs[1] ?? EMPTY,
      outs[2] ?? EMPTY,
      outs[3] ?? EMPTY,
    ];
    return { args, outs, rows, P };
  }

  function lnArgs(x: Tensor, shift: SampleVectors, scale: SampleVectors, eps: number, out: Tensor | undefined): { args: DenseLnModulateArgs; out: Float32Array } {
    const C = x?.shape?.[x.shape.length - 1] ?? 0;
    const rows = denseRows(x, C);
    checkSampleVectors('shift', shift, rows, C);
    checkSampleVectors('scale', scale, rows, C);
    if (shift.rowsPerSample !== scale.rowsPerSample) throw new InvalidArgumentError('Expected shift and scale with the same rowsPerSample');
    if (!(eps > 0)) throw new InvalidArgumentError(`Expected a positive eps but received ${describeValue(eps)}`);
    const o = outArray(native, out, rows * C, 'out');
    if (o !== x.data && overlaps(o, x.data)) throw new InvalidArgumentError('Expected out to be x itself or separate from it');
    return { args: [x.data, rows, C, ...table(shift), ...table(scale), eps, shift.rowsPerSample, o], out: o };
  }

  function addArgs(x: Tensor, y: Tensor, gate: SampleVectors | undefined, out: Tensor | undefined): { args: DenseGatedAddArgs; out: Float32Array } {
    const C = x?.shape?.[x.shape.length - 1] ?? 0;
    const rows = denseRows(x, C);
    if (!y || !(y.data instanceof Float32Array) || y.data.length !== x.data.length) throw new ShapeMismatchError(`Expected y with x's ${x.data.length} values but received ${describeValue(y?.data ?? y)}`);
    if (gate) checkSampleVectors('gate', gate, rows, C);
    const o = outArray(native, out, rows * C, 'out');
    for (const [name, input] of [['x', x.data], ['y', y.data]] as const) {
      if (o !== input && overlaps(o, input)) throw new InvalidArgumentError(`Expected out to be ${name} itself or separate from it`);
    }
    return { args: [x.data, y.data, rows, C, ...(gate ? table(gate) : [EMPTY, 0, 0] as [Float32Array, number, number]), gate?.rowsPerSample ?? 1, o], out: o };
  }

  return {
    capabilities: () => capabilities,
    paths: () => available,
    packFor,
    pack(weights, dtype) {
      if (dtype === 'fp32') return packFor(weights, 'avx512');
      if (dtype === 'bf16') {
        if (!bf16Path) {
          throw new InvalidArgumentError(`Expected dense dtype 'fp32' on this CPU (bf16 needs AMX-BF16 or AVX512-BF16; dense paths here: ${available.join(', ')}) but received 'bf16'`);
        }
        return packFor(weights, bf16Path);
      }
      throw new InvalidArgumentError(`Expected dense dtype 'fp32' or 'bf16' but received ${describeValue(dtype)}`);
    },
    async linear(x, w, options) {
      const p = linearArgs(x, w, options);
      await native.denseLinearAsync(...p.args);
      return p.outs.map((o) => tensor(o, [p.rows, p.P]));
    },
    linearSync(x, w, options) {
      const p = linearArgs(x, w, options);
      native.denseLinearSync(...p.args);
      return p.outs.map((o) => tensor(o, [p.rows, p.P]));
    },
    async layerNormModulate(x, shift, scale, eps, options = {}) {
      const p = lnArgs(x, shift, scale, eps, options.out);
      await native.denseLnModulateAsync(...p.args);
      return tensor(p.out, x.shape);
    },
    layerNormModulateSync(x, shift, scale, eps, options = {}) {
      const p = lnArgs(x, shift, scale, eps, options.out);
      native.denseLnModulateSync(...p.args);
      return tensor(p.out, x.shape);
    },
    async gatedAdd(x, y, gate, options = {}) {
      const p = addArgs(x, y, gate, options.out);
      await native.denseGatedAddAsync(...p.args);
      return tensor(p.out, x.shape);
    },
    gatedAddSync(x, y, gate, options = {}) {
      const p = addArgs(x, y, gate, options.out);
      native.denseGatedAddSync(...p.args);
      return tensor(p.out, x.shape);
    },
  };
}
