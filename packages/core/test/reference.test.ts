import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  createReferenceBackend,
  referenceAttention,
  referenceFullWithResidual,
  referenceWindowAttention,
  referenceWindowWithResidual,
  tensor,
  windowAllows,
  type Tensor,
} from '../src/index.js';
import { maxDiff, randomTensor } from './helpers.js';

const at = (t: Tensor, b: number, l: number, h: number, d: number): number => {
  const [, L, H, D] = t.shape as [number, number, number, number];
  return t.data[((b * L + l) * H + h) * D + d]!;
};

describe('reference attention: closed-form cases', () => {
  it('gives the mean of V when every key is the same', () => {
    const [B, L, H, D] = [2, 5, 3, 4];
    const q = randomTensor([B, L, H, D], 1);
    const k = tensor(new Float32Array(B * L * H * D).fill(0.7), [B, L, H, D]);
    const v = randomTensor([B, L, H, D], 2);
    const out = referenceAttention(q, k, v);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let d = 0; d < D; d++) {
          let mean = 0;
          for (let j = 0; j < L; j++) mean += at(v, b, j, h, d) / L;
          for (let i = 0; i < L; i++) expect(at(out, b, i, h, d)).toBeCloseTo(mean, 6);
        }
  });

  it('selects one value row when one logit dominates', () => {
    const [B, L, H, D] = [1, 6, 2, 3];
    const q = tensor(new Float32Array(B * L * H * D).fill(1), [B, L, H, D]);
    const kData = new Float32Array(B * L * H * D);
    // key 4 of head 0 and key 1 of head 1 have huge dot products with every query
    for (let d = 0; d < D; d++) {
      kData[((0 * L + 4) * H + 0) * D + d] = 100;
      kData[((0 * L + 1) * H + 1) * D + d] = 100;
    }
    const k = tensor(kData, [B, L, H, D]);
    const v = randomTensor([B, L, H, D], 3);
    const out = referenceAttention(q, k, v);
    for (let i = 0; i < L; i++)
      for (let d = 0; d < D; d++) {
        expect(at(out, 0, i, 0, d)).toBeCloseTo(at(v, 0, 4, 0, d), 6);
        expect(at(out, 0, i, 1, d)).toBeCloseTo(at(v, 0, 1, 1, d), 6);
      }
  });

  it('a single key returns its value whatever the query', () => {
    const q = randomTensor([1, 3, 1, 4], 4);
    const k = randomTensor([1, 1, 1, 4], 5);
    const v = randomTensor([1, 1, 1, 4], 6);
    const out = referenceAttention(q, k, v);
    for (let i = 0; i < 3; i++) for (let d = 0; d < 4; d++) expect(at(out, 0, i, 0, d)).toBeCloseTo(v.data[d]!, 7);
  });

  it('w >= L equals full attention; w = 0 returns each token its own value', () => {
    const [B, L, H, D] = [2, 9, 2, 5];
    const q = randomTensor([B, L, H, D], 7);
    const k = randomTensor([B, L, H, D], 8);
    const v = randomTensor([B, L, H, D], 9);
    const full = referenceAttention(q, k, v);
    expect(maxDiff(referenceWindowAttention(q, k, v, { kind: '1d', size: L }).data, full.data)).toBe(0);
    expect(maxDiff(referenceWindowAttention(q, k, v, { kind: '1d', size: L - 1 }).data, full.data)).toBe(0);
    expect(maxDiff(referenceWindowAttention(q, k, v, { kind: '1d', size: 0 }).data, v.data)).toBeLessThan(1e-7);
    expect(maxDiff(referenceWindowAttention(q, k, v, { kind: '1d', size: L - 2 }).data, full.data)).toBeGreaterThan(1e-6);
  });

  it('a 2-D window of radius >= the grid equals full attention', () => {
    const [rows, cols] = [3, 5];
    const q = randomTensor([1, rows * cols, 2, 4], 10);
    const k = randomTensor([1, rows * cols, 2, 4], 11);
    const v = randomTensor([1, rows * cols, 2, 4], 12);
    const full = referenceAttention(q, k, v);
    expect(maxDiff(referenceWindowAttention(q, k, v, { kind: '2d', rows, cols, radius: 4 }).data, full.data)).toBe(0);
    expect(maxDiff(referenceWindowAttention(q, k, v, { kind: '2d', rows, cols, radius: 1 }).data, full.data)).toBeGreaterThan(1e-6);
  });

  it('the 2-D neighbourhood admits exactly the clipped square around each token', () => {
    const w = { kind: '2d', rows: 3, cols: 4, radius: 1 } as const;
    // token 5 = (1, 1): rows 0..2, cols 0..2
    const seen = [...Array(12).keys()].filter((j) => windowAllows(w, 5, j));
    expect(seen).toEqual([0, 1, 2, 4, 5, 6, 8, 9, 10]);
    // token 3 = (0, 3): rows 0..1, cols 2..3
    expect([...Array(12).keys()].filter((j) => windowAllows(w, 3, j))).toEqual([2, 3, 6, 7]);
  });

  it('residual + window == full, and windowWithResidual adds the residual', () => {
    const q = randomTensor([2, 11, 3, 4], 13);
    const k = randomTensor([2, 11, 3, 4], 14);
    const v = randomTensor([2, 11, 3, 4], 15);
    for (const window of [{ kind: '1d', size: 2 } as const, { kind: '2d', rows: 1, cols: 11, radius: 3 } as const]) {
      const { out, residual } = referenceFullWithResidual(q, k, v, window);
      const win = referenceWindowAttention(q, k, v, window);
      const sum = win.data.map((x, i) => x + residual.data[i]!);
      expect(maxDiff(sum, out.data)).toBeLessThan(1e-6);
      expect(maxDiff(out.data, referenceAttention(q, k, v).data)).toBe(0);
      expect(maxDiff(referenceWindowWithResidual(q, k, v, window, residual).data, out.data)).toBeLessThan(1e-6);
    }
  });

  it('writes into a caller-provided output and honours the scale', () => {
    const q = randomTensor([1, 4, 1, 2], 16);
    const k = randomTensor([1, 4, 1, 2], 17);
    const v = randomTensor([1, 4, 1, 2], 18);
    const out = tensor(new Float32Array(8), [1, 4, 1, 2]);
    const r = referenceAttention(q, k, v, { out, scale: 0 });
    expect(r.data).toBe(out.data);
    // scale 0: uniform weights, the mean of V for every query
    const mean = [0, 1].map((d) => [0, 1, 2, 3].reduce((s, j) => s + v.data[j * 2 + d]!, 0) / 4);
    for (let i = 0; i < 4; i++) for (let d = 0; d < 2; d++) expect(out.data[i * 2 + d]).toBeCloseTo(mean[d]!, 6);
  });

  it('supports cross-attention shapes (Lq != Lkv) for full attention only', () => {
    const q = randomTensor([1, 3, 2, 4], 19);
    const k = randomTensor([1, 7, 2, 4], 20);
    const v = randomTensor([1, 7, 2, 4], 21);
    expect(referenceAttention(q, k, v).shape).toEqual([1, 3, 2, 4]);
    expect(() => referenceWindowAttention(q, k, v, { kind: '1d', size: 1 })).toThrow(expect.objectContaining({ code: ErrorCode.ShapeMismatch }));
  });
});

describe('reference attention: argument validation', () => {
  const q = randomTensor([1, 4, 2, 3], 1);
  const cases: Array<[string, () => unknown, string]> = [
    ['rank', () => referenceAttention(tensor(new Float32Array(24), [4, 2, 3]), q, q), ErrorCode.ShapeMismatch],
    ['k/v shapes', () => referenceAttention(q, q, randomTensor([1, 5, 2, 3], 2)), ErrorCode.ShapeMismatch],
    ['heads', () => referenceAttention(q, randomTensor([1, 4, 3, 3], 2), randomTensor([1, 4, 3, 3], 3)), ErrorCode.ShapeMismatch],
    ['data length', () => referenceAttention({ data: new Float32Array(5), shape: [1, 4, 2, 3] }, q, q), ErrorCode.ShapeMismatch],
    ['negative window', () => referenceWindowAttention(q, q, q, { kind: '1d', size: -3 }), ErrorCode.InvalidArgument],
    ['fractional window', () => referenceWindowAttention(q, q, q, { kind: '1d', size: 1.5 }), ErrorCode.InvalidArgument],
    ['grid size', () => referenceWindowAttention(q, q, q, { kind: '2d', rows: 3, cols: 3, radius: 1 }), ErrorCode.ShapeMismatch],
    ['window kind', () => referenceWindowAttention(q, q, q, { kind: '3d' } as never), ErrorCode.InvalidArgument],
    ['scale', () => referenceAttention(q, q, q, { scale: Number.NaN }), ErrorCode.InvalidArgument],
    ['out shape', () => referenceAttention(q, q, q, { out: tensor(new Float32Array(4), [4]) }), ErrorCode.ShapeMismatch],
    ['residual shape', () => referenceWindowWithResidual(q, q, q, { kind: '1d', size: 1 }, tensor(new Float32Array(4), [4])), ErrorCode.ShapeMismatch],
  ];
  it.each(cases)('rejects a bad %s with a coded error', (_name, call, code) => {
    expect(call).toThrow(expect.objectContaining({ code }));
  });

  it('says what was expected and what was received', () => {
    expect(() => referenceWindowAttention(q, q, q, { kind: '1d', size: -3 })).toThrow(
      'Expected a non-negative integer for window size but received -3 (number)',
    );
  });

  it('the backend wraps the same kernels asynchronously', async () => {
    const backend = createReferenceBackend();
    expect(backend.capabilities().windows).toEqual(['1d', '2d']);
    const k = randomTensor([1, 4, 2, 3], 2);
    const v = randomTensor([1, 4, 2, 3], 3);
    expect((await backend.attention(q, k, v)).data).toEqual(referenceAttention(q, k, v).data);
    const fused = await backend.fullWithResidual(q, k, v, { kind: '1d', size: 1 });
    expect(maxDiff((await backend.windowWithResidual(q, k, v, { kind: '1d', size: 1 }, fused.residual)).data, fused.out.data)).toBeLessThan(1e-6);
    await expect(backend.windowAttention(q, k, v, { kind: '1d', size: -1 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
  });
});
