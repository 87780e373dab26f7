import { type DenseLinearOptions, type SampleVectors, type Tensor, createReferenceDense, tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend, cpuBackendStatus } from '../src/base.js';
import type { DensePath } from '../src/dense.js';
import { randomTensor, relError, rng } from './helpers.js';

// Parity of the dense kernels on every path this CPU runs against core's reference dense kernels
// (float64 sums; for bf16 the same bf16 rounding of the layer input and the weights).
const status = cpuBackendStatus();
const backend = status.available ? createCpuBackend() : null;
const dense = backend?.dense;
const reference = createReferenceDense();
// fp32: float32 sums of up to a few thousand terms. bf16: the same products, summed in float32; an input
// that sits on a bf16 rounding boundary may round the other way after the float32 LayerNorm.
const TOLERANCE: Record<string, number> = { avx512: 2e-5, 'amx-bf16': 2e-3, avx512bf16: 2e-3 };

interface Case {
  readonly M: number;
  readonly K: number;
  readonly N: number;
  readonly rowsPerSample: number;
}

const cases: Case[] = [
  { M: 1, K: 1, N: 1, rowsPerSample: 1 },
  { M: 13, K: 7, N: 5, rowsPerSample: 13 },
  { M: 14, K: 32, N: 32, rowsPerSample: 7 },
  { M: 33, K: 48, N: 96, rowsPerSample: 11 },
  { M: 70, K: 192, N: 576, rowsPerSample: 16 },
  { M: 29, K: 200, N: 100, rowsPerSample: 29 },
  { M: 64, K: 1152 + 37, N: 64, rowsPerSample: 32 },
  { M: 17, K: 2500, N: 48, rowsPerSample: 4 },
];

function vectors(samples: number, width: number, rowsPerSample: number, seed: number): { table: Tensor; at: (offset: number) => SampleVectors } {
  const table = randomTensor([samples, width], rng(seed), 0.5);
  return { table, at: (offset) => ({ table, offset, rowsPerSample }) };
}

describe.skipIf(!dense)('dense kernels: parity with the reference', () => {
  const paths = (dense?.paths() ?? []) as DensePath[];

  it('reports its paths and dtypes', () => {
    expect(paths).toContain('avx512');
    expect(dense!.capabilities().dtypes).toContain('fp32');
    expect(status.densePaths).toEqual(paths);
  });

  for (const path of paths) {
    for (const c of cases) {
      it(`${path}: M=${c.M} K=${c.K} N=${c.N}, every prologue / epilogue combination`, async () => {
        const next = rng(c.M * 1000 + c.K * 7 + c.N);
        const x = randomTensor([c.M, c.K], next, 2);
        const weights = { weight: randomTensor([c.N, c.K], next, 1 / Math.sqrt(c.K)).data, bias: randomTensor([c.N], next).data, inFeatures: c.K, outFeatures: c.N };
        const dtype = path === 'avx512' ? 'fp32' : 'bf16';
        const packed = dense!.packFor(weights, path);
        const refPacked = reference.pack(weights, dtype);
        const samples = Math.ceil(c.M / c.rowsPerSample);
        const mod = vectors(samples, 2 * c.K + c.N + 3, c.rowsPerSample, c.K + 5);
        const residual = randomTensor([c.M, c.N], next);
        const variants: [string, DenseLinearOptions][] = [
          ['plain', {}],
          ['ln-modulate', { normModulate: { shift: mod.at(1), scale: mod.at(c.K + 2), eps: 1e-6 } }],
          ['gelu', { activation: 'gelu-tanh' }],
          ['ln + gelu', { normModulate: { shift: mod.at(0), scale: mod.at(c.K), eps: 1e-5 }, activation: 'gelu-tanh' }],
          ['gated residual', { residual: { tensor: residual, gate: mod.at(3) } }],
          ['residual', { residual: { tensor: residual } }],
          ...(c.N % 3 === 0 ? ([['split 3', { split: 3 }]] as [string, DenseLinearOptions][]) : []),
        ];
        for (const [name, options] of variants) {
          const want = await reference.linear(x, refPacked, options);
          const got = await dense!.linear(x, packed, options);
          const sync = dense!.linearSync(x, packed, options);
          expect(got).toHaveLength(want.length);
          const scale = Math.max(...want.map((t) => Math.max(...Array.from(t.data, Math.abs))));
          for (let j = 0; j < want.length; j++) {
            expect(got[j]!.shape).toEqual(want[j]!.shape);
            expect(relError(got[j]!.data, want[j]!.data, scale), `${name} part ${j}`).toBeLessThan(TOLERANCE[path]!);
            expect(Array.from(sync[j]!.data)).toEqual(Array.from(got[j]!.data));
          }
        }
      });
    }
  }

  it('writes a gated residual in place (out = residual)', async () => {
    const next = rng(99);
    const x = randomTensor([20, 24], next);
    const w = { weight: randomTensor([24, 24], next).data, bias: null, inFeatures: 24, outFeatures: 24 };
    const gate = vectors(2, 24, 10, 3).at(0);
    const h = randomTensor([20, 24], next);
    const want = await reference.linear(x, reference.pack(w, 'fp32'), { residual: { tensor: h, gate } });
    const inPlace = tensor(h.data.slice(), h.shape);
    const got = await dense!.linear(x, dense!.pack(w, 'fp32'), { residual: { tensor: inPlace, gate }, out: [inPlace] });
    expect(got[0]!.data).toBe(inPlace.data);
    expect(relError(inPlace.data, want[0]!.data)).toBeLessThan(2e-6);
  });

  it('computes LayerNorm + modulate and the gated add like the reference', async () => {
    const next = rng(7);
    for (const [M, C, rps] of [[1, 1, 1], [37, 192, 8], [5, 1153, 2]] as const) {
      const x = randomTensor([M, C], next, 3);
      const y = randomTensor([M, C], next);
      const mod = vectors(Math.ceil(M / rps), 3 * C, rps, M + C);
      const ln = await dense!.layerNormModulate(x, mod.at(0), mod.at(C), 1e-6);
      const lnRef = await reference.layerNormModulate(x, mod.at(0), mod.at(C), 1e-6);
      expect(relError(ln.data, lnRef.data)).toBeLessThan(2e-6);
      expect(Array.from(dense!.layerNormModulateSync(x, mod.at(0), mod.at(C), 1e-6).data)).toEqual(Array.from(ln.data));
      for (const gate of [mod.at(2 * C), undefined]) {
        const add = await dense!.gatedAdd(x, y, gate);
        const addRef = await reference.gatedAdd(x, y, gate);
        expect(relError(add.data, addRef.data)).toBeLessThan(1e-6);
        const inPlace = tensor(x.data.slice(), x.shape);
        dense!.gatedAddSync(inPlace, y, gate, { out: inPlace });
        expect(Array.from(inPlace.data)).toEqual(Array.from(add.data));
      }
    }
  });

  it('refuses mismatched shapes, foreign weights and overlapping outputs with coded errors', async () => {
    const w = { weight: new Float32Array(8 * 4), bias: null, inFeatures: 4, outFeatures: 8 };
    const packed = dense!.pack(w, 'fp32');
    await expect(dense!.linear(tensor(new Float32Array(12), [4, 3]), packed)).rejects.toMatchObject({ code: 'ERR_DITFA_SHAPE_MISMATCH' });
    await expect(dense!.linear(tensor(new Float32Array(8), [2, 4]), reference.pack(w, 'fp32'))).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT' });
    await expect(dense!.linear(tensor(new Float32Array(8), [2, 4]), packed, { split: 3 })).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT' });
    const shared = new Float32Array(32);
    await expect(dense!.linear(tensor(shared.subarray(0, 8), [2, 4]), packed, { out: [tensor(shared.subarray(4, 20), [2, 8])] })).rejects.toMatchObject({ code: 'ERR_DITFA_INVALID_ARGUMENT' });
    expect(() => dense!.pack({ ...w, bias: new Float32Array(3) }, 'fp32')).toThrow(/bias/);
    expect(() => dense!.pack(w, 'int8' as never)).toThrow(/dtype/);
  });
});
