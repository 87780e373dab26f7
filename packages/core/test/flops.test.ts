import { describe, expect, it } from 'vitest';
import { attentionFlops, bandPairs1D, builtinMethodFlops, rawAttentionFlops, windowFraction, windowPairs, type AttentionShape } from '../src/index.js';

function bruteForcePairs(n: number, allow: (i: number, j: number) => boolean): number {
  let c = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (allow(i, j)) c++;
  return c;
}

describe('FLOP model', () => {
  it('counts 4·B·Lq·Lkv·C per attention call', () => {
    expect(attentionFlops(2, 1024, 1024, 1152)).toBe(4 * 2 * 1024 * 1024 * 1152);
    expect(attentionFlops(1, 3, 7, 5)).toBe(420);
  });

  it('counts hand-made 1-D bands with clipped edges', () => {
    // L=5, w=1: rows see 2,3,3,3,2 keys
    expect(bandPairs1D(5, 1)).toBe(13);
    // L=6, w=2: 3,4,5,5,4,3
    expect(bandPairs1D(6, 2)).toBe(24);
    expect(bandPairs1D(4, 0)).toBe(4);
    expect(bandPairs1D(4, 3)).toBe(16);
    expect(bandPairs1D(4, 100)).toBe(16);
    expect(bandPairs1D(1, 0)).toBe(1);
    expect(bandPairs1D(0, 3)).toBe(0);
    // DiT-512: L=1024, w=128 → 1024·257 − 128·129
    expect(bandPairs1D(1024, 128)).toBe(1024 * 257 - 128 * 129);
  });

  it('agrees with brute-force counting for every small L and w', () => {
    for (let L = 1; L <= 20; L++)
      for (let w = 0; w <= L + 1; w++) expect(bandPairs1D(L, w)).toBe(bruteForcePairs(L, (i, j) => Math.abs(i - j) <= w));
  });

  it('counts 2-D neighbourhoods as the product of two clipped bands', () => {
    // 3×4 grid, radius 1: rows 7 pairs, cols 10 pairs → 70
    expect(windowPairs({ kind: '2d', rows: 3, cols: 4, radius: 1 }, 12)).toBe(70);
    for (const [rows, cols, radius] of [[3, 5, 1], [4, 4, 2], [5, 3, 0], [2, 7, 9]] as const) {
      const brute = bruteForcePairs(rows * cols, (i, j) => {
        const [ri, ci, rj, cj] = [Math.floor(i / cols), i % cols, Math.floor(j / cols), j % cols];
        return Math.abs(ri - rj) <= radius && Math.abs(ci - cj) <= radius;
      });
      expect(windowPairs({ kind: '2d', rows, cols, radius }, rows * cols)).toBe(brute);
    }
    expect(() => windowPairs({ kind: '2d', rows: 3, cols: 4, radius: 1 }, 13)).toThrow();
  });

  it('gives the window fraction pairs / L² (never zero, unlike the reference code)', () => {
    expect(windowFraction({ kind: '1d', size: 1 }, 5)).toBe(13 / 25);
    expect(windowFraction({ kind: '1d', size: 0 }, 4)).toBe(0.25);
  });

  it('prices the built-in methods as METHOD.md says', () => {
    const shape: AttentionShape = { batch: 4, tokens: 16, channels: 8, cfg: true, window: { kind: '1d', size: 2 } };
    const raw = rawAttentionFlops(shape);
    const win = 4 * 4 * bandPairs1D(16, 2) * 8;
    expect(raw).toBe(4 * 4 * 16 * 16 * 8);
    expect(builtinMethodFlops.full(shape)).toBe(raw);
    expect(builtinMethodFlops.full(shape, { refreshResidual: true })).toBe(raw + win);
    expect(builtinMethodFlops['full+asc'](shape)).toBe(raw / 2);
    expect(builtinMethodFlops['full+asc'](shape, { refreshResidual: true })).toBe((raw + win) / 2);
    expect(builtinMethodFlops.wars(shape)).toBe(win);
    expect(builtinMethodFlops['wars+asc'](shape)).toBe(win / 2);
    expect(builtinMethodFlops.ast()).toBe(0);
    // without CFG there is no half to skip
    expect(builtinMethodFlops['full+asc']({ ...shape, cfg: false })).toBe(raw);
  });
});
