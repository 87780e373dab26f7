import {
  type DenseCapabilities,
  type DenseDtype,
  type DenseKernels,
  type DenseLinearOptions,
  type DenseWeights,
  type PackedLinear,
  type SampleVectors,
  checkSampleVectors,
  denseRows,
} from '../dense.js';
import { InvalidArgumentError, ShapeMismatchError, describeValue } from '../errors.js';
import { type Tensor, tensor } from '../tensor.js';

/**
 * The TypeScript reference of the dense kernels: float64 sums, written to be read, not to be fast. For
 * `'bf16'` it rounds the layer input and the weights to bfloat16 (round to nearest even) exactly as a
 * bf16 kernel must, so native bf16 kernels are compared with it at float32-rounding tolerance.
 */

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** `x` rounded to the nearest bfloat16 (ties to even), as a number. */
export function roundBf16(x: number): number {
  F32[0] = x;
  const u = U32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return x; // NaN
  U32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return F32[0]!;
}

const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

function sampleAt(v: SampleVectors, row: number, column: number): number {
  const stride = v.table.shape[1]!;
  return v.table.data[Math.floor(row / v.rowsPerSample) * stride + v.offset + column]!;
}

function normModulateRow(x: Float32Array, r: number, C: number, shift: SampleVectors, scale: SampleVectors, eps: number): Float64Array {
  let mean = 0;
  for (let c = 0; c < C; c++) mean += x[r * C + c]!;
  mean /= C;
  let variance = 0;
  for (let c = 0; c < C; c++) variance += (x[r * C + c]! - mean) ** 2;
  variance /= C;
  const rstd = 1 / Math.sqrt(variance + eps);
  const out = new Float64Array(C);
  for (let c = 0; c < C; c++) out[c] = (x[r * C + c]! - mean) * rstd * (1 + sampleAt(scale, r, c)) + sampleAt(shift, r, c);
  return out;
}

function checkOut(out: Tensor | undefined, length: number, what: string): Float32Array {
  if (out === undefined) return new Float32Array(length);
  if (!out || !(out.data instanceof Float32Array) || out.data.length !== length) {
    throw new ShapeMismatchError(`Expected ${what} to hold ${length} float32 values but received ${describeValue(out?.data ?? out)}`);
  }
  return out.data;
}

export const REFERENCE_DENSE_LAYOUT = 'reference';

/** The reference dense kernels (also usable as a `KernelBackend.dense` for tests). */
export function createReferenceDense(backendName = 'reference'): DenseKernels {
  const capabilities: DenseCapabilities = Object.freeze({ dtypes: Object.freeze(['fp32', 'bf16'] as const), paths: Object.freeze({ fp32: 'js', bf16: 'js' }) });
  return {
    capabilities: () => capabilities,
    pack(weights: DenseWeights, dtype: DenseDtype): PackedLinear {
      const { weight, bias, inFeatures, outFeatures } = weights;
      if (dtype !== 'fp32' && dtype !== 'bf16') throw new InvalidArgumentError(`Expected dtype 'fp32' or 'bf16' but received ${describeValue(dtype)}`);
      if (!(weight instanceof Float32Array) || weight.length !== inFeatures * outFeatures) {
        throw new ShapeMismatchError(`Expected ${outFeatures}×${inFeatures} weights but received ${describeValue(weight)}`);
      }
      if (bias !== null && (!(bias instanceof Float32Array) || bias.length !== outFeatures)) {
        throw new ShapeMismatchError(`Expected ${outFeatures} bias values or null but received ${describeValue(bias)}`);
      }
      const w = dtype === 'bf16' ? weight.map(roundBf16) : weight.slice();
      return { backend: backendName, layout: REFERENCE_DENSE_LAYOUT, dtype, inFeatures, outFeatures, bias, data: new Uint8Array(w.buffer) };
    },
    async linear(x: Tensor, packed: PackedLinear, options: DenseLinearOptions = {}): Promise<Tensor[]> {
      if (packed.layout !== REFERENCE_DENSE_LAYOUT) throw new InvalidArgumentError(`Expected weights packed by the reference dense kernels but received layout ${describeValue(packed.layout)}`);
      const K = packed.inFeatures;
      const N = packed.outFeatures;
      const rows = denseRows(x, K);
      const w = new Float32Array(packed.data.buffer, packed.data.byteOffset, N * K);
      const split = options.split ?? 1;
      if (!Number.isInteger(split) || split < 1 || N % split !== 0) throw new InvalidArgumentError(`Expected a split that divides ${N} but received ${describeValue(split)}`);
      const P = N / split;
      const outs = Array.from({ length: split }, (_, j) => checkOut(options.out?.[j], rows * P, `out[${j}]`));
      const nm = options.normModulate;
      if (nm) {
        checkSampleVectors('shift', nm.shift, rows, K);
        checkSampleVectors('scale', nm.scale, rows, K);
      }
      const res = options.residual;
      if (res) {
        if (split !== 1) throw new InvalidArgumentError('Expected split 1 with a residual');
        if (res.tensor.data.length !== rows * N) throw new ShapeMismatchError(`Expected a residual of ${rows}×${N} values but received ${res.tensor.data.length}`);
        if (res.gate) checkSampleVectors('gate', res.gate, rows, N);
      }
      const a = new Float64Array(K);
      const y = new Float64Array(N);
      for (let r = 0; r < rows; r++) {
        if (nm) a.set(normModulateRow(x.data, r, K, nm.shift, nm.scale, nm.eps));
        else for (let k = 0; k < K; k++) a[k] = x.data[r * K + k]!;
        if (packed.dtype === 'bf16') for (let k = 0; k < K; k++) a[k] = roundBf16(Math.fround(a[k]!));
        for (let n = 0; n < N; n++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += a[k]! * w[n * K + k]!;
          s += packed.bias?.[n] ?? 0;
          if (options.activation === 'gelu-tanh') s = geluTanh(s);
          if (res) s = res.tensor.data[r * N + n]! + (res.gate ? sampleAt(res.gate, r, n) : 1) * s;
          y[n] = s;
        }
        for (let n = 0; n < N; n++) outs[Math.floor(n / P)]![r * P + (n % P)] = y[n]!;
      }
      return outs.map((data) => tensor(data, [rows, P]));
    },
    async layerNormModulate(x, shift, scale, eps, options = {}) {
      const C = x.shape[x.shape.length - 1]!;
      const rows = denseRows(x, C);
      checkSampleVectors('shift', shift, rows, C);
      checkSampleVectors('scale', scale, rows, C);
      const out = checkOut(options.out, rows * C, 'out');
      for (let r = 0; r < rows; r++) out.set(normModulateRow(x.data, r, C, shift, scale, eps), r * C);
      return tensor(out, x.shape);
    },
    async gatedAdd(x, y, gate, options = {}) {
      const C = x.shape[x.shape.length - 1]!;
      const rows = denseRows(x, C);
      if (y.data.length !== x.data.length) throw new ShapeMismatchError(`Expected y of ${x.data.length} values but received ${y.data.length}`);
      if (gate) checkSampleVectors('gate', gate, rows, C);
      const out = checkOut(options.out, rows * C, 'out');
      for (let i = 0; i < out.length; i++) out[i] = x.data[i]! + (gate ? sampleAt(gate, Math.floor(i / C), i % C) : 1) * y.data[i]!;
      return tensor(out, x.shape);
    },
  };
}
