import { describe, expect, it } from 'vitest';
import { createReferenceDense, roundBf16, tensor } from '../src/index.js';

// The reference dense kernels on cases small enough to check by hand.
describe('reference dense kernels', () => {
  const dense = createReferenceDense();
  // W = [[1, 2], [3, 4], [5, 6]] (3 outputs, 2 inputs), b = [0.5, -1, 0]
  const w = { weight: Float32Array.from([1, 2, 3, 4, 5, 6]), bias: Float32Array.from([0.5, -1, 0]), inFeatures: 2, outFeatures: 3 };
  const x = tensor(Float32Array.from([1, 0, 0, 1, 2, -1]), [3, 2]);

  it('computes x·Wᵀ + b, splits columns and adds a gated residual per sample', async () => {
    const packed = dense.pack(w, 'fp32');
    const [y] = await dense.linear(x, packed);
    expect(Array.from(y!.data)).toEqual([1.5, 2, 5, 2.5, 3, 6, 0.5, 1, 4]);
    expect(y!.shape).toEqual([3, 3]);
    const parts = await dense.linear(x, packed, { split: 3 });
    expect(parts.map((p) => Array.from(p.data))).toEqual([[1.5, 2.5, 0.5], [2, 3, 1], [5, 6, 4]]);
    // rows 0-1 are sample 0 (gate 2), row 2 is sample 1 (gate -1)
    const gate = { table: tensor(Float32Array.from([9, 2, 2, 2, 9, -1, -1, -1]), [2, 4]), offset: 1, rowsPerSample: 2 };
    const residual = tensor(new Float32Array(9).fill(1), [3, 3]);
    const [r] = await dense.linear(x, packed, { residual: { tensor: residual, gate } });
    expect(Array.from(r!.data)).toEqual([4, 5, 11, 6, 7, 13, 0.5, 0, -3]);
  });

  it('normalises and modulates each row before the product, and applies GELU (tanh)', async () => {
    const mod = tensor(Float32Array.from([0.5, 0.5, 1, -1]), [1, 4]); // shift [0.5, 0.5], scale [1, -1]
    const nm = { shift: { table: mod, offset: 0, rowsPerSample: 3 }, scale: { table: mod, offset: 2, rowsPerSample: 3 }, eps: 1e-6 };
    const ln = await dense.layerNormModulate(x, nm.shift, nm.scale, nm.eps);
    // each row of two different values a, b normalises to ±|a − b|/2 / √((a − b)²/4 + eps): (±n)·(1 + scale) + shift
    const n = (d: number): number => d / 2 / Math.sqrt(d * d / 4 + 1e-6);
    const expected = [2 * n(1) + 0.5, 0.5, -2 * n(1) + 0.5, 0.5, 2 * n(3) + 0.5, 0.5];
    Array.from(ln.data).forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 6));
    const [y] = await dense.linear(x, dense.pack({ ...w, bias: null }, 'fp32'), { normModulate: nm, activation: 'gelu-tanh' });
    const gelu = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    const a0 = expected[0]!;
    expect(y!.data[0]).toBeCloseTo(gelu(a0 + 2 * 0.5), 6);
    expect(y!.data[2]).toBeCloseTo(gelu(5 * a0 + 6 * 0.5), 5);
  });

  it("rounds the layer input and the weights to bfloat16 for 'bf16'", async () => {
    expect(roundBf16(1 + 2 ** -9)).toBe(1); // below half a bf16 step: down
    expect(roundBf16(1 + 3 * 2 ** -9)).toBe(1 + 2 ** -7); // above: up
    expect(roundBf16(1 + 2 ** -8)).toBe(1); // a tie goes to even
    const one = tensor(Float32Array.from([1 + 3 * 2 ** -9]), [1, 1]);
    const [y] = await dense.linear(one, dense.pack({ weight: Float32Array.from([1 + 3 * 2 ** -9]), bias: null, inFeatures: 1, outFeatures: 1 }, 'bf16'));
    expect(y!.data[0]).toBe(Math.fround((1 + 2 ** -7) ** 2));
  });

  it('adds with and without a gate, in place', async () => {
    const a = tensor(Float32Array.from([1, 2, 3, 4]), [2, 2]);
    const b = tensor(Float32Array.from([10, 20, 30, 40]), [2, 2]);
    expect(Array.from((await dense.gatedAdd(a, b, undefined)).data)).toEqual([11, 22, 33, 44]);
    const gate = { table: tensor(Float32Array.from([0.5, 0, 1, 2]), [2, 2]), offset: 0, rowsPerSample: 1 };
    await dense.gatedAdd(a, b, gate, { out: a });
    expect(Array.from(a.data)).toEqual([6, 2, 33, 84]);
  });

  it('refuses shapes that do not fit, naming what it expected', async () => {
    await expect(dense.linear(tensor(new Float32Array(6), [2, 3]), dense.pack(w, 'fp32'))).rejects.toMatchObject({ code: 'ERR_DITFA_SHAPE_MISMATCH' });
    expect(() => dense.pack({ ...w, weight: new Float32Array(5) }, 'fp32')).toThrow(/3×2 weights/);
    const gate = { table: tensor(new Float32Array(2), [1, 2]), offset: 0, rowsPerSample: 1 };
    await expect(dense.gatedAdd(x, x, gate)).rejects.toMatchObject({ code: 'ERR_DITFA_SHAPE_MISMATCH' });
  });
});
