import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  attentionFlops,
  bandPairs1D,
  condRows,
  defineLayers,
  layerAttentionFlops,
  layerShape,
  rawAttentionFlops,
  requireWindow,
  strategySet,
  windowFlops,
  windowFraction,
  windowPairs,
  type AttentionShape,
} from '../src/index.js';
import { declaredStrategy, planOf } from './helpers.js';

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

  it('counts a layer\'s raw attention as 4·B·Lq·Lkv·C, kv tokens included, and the ASC rows', () => {
    expect(rawAttentionFlops({ batch: 4, tokens: 16, channels: 8, cfg: true, window: null })).toBe(32768);
    expect(rawAttentionFlops({ batch: 4, tokens: 16, kvTokens: 5, channels: 8, cfg: true, window: null })).toBe(4 * 4 * 16 * 5 * 8);
    expect(condRows({ batch: 4, tokens: 1, channels: 1, cfg: true, window: null })).toBe(2);
    expect(condRows({ batch: 4, tokens: 1, channels: 1, cfg: false, window: null })).toBe(4);
    // 3×4 grid, radius 1: 70 pairs
    expect(windowFlops(2, 12, 8, { kind: '2d', rows: 3, cols: 4, radius: 1 })).toBe(4 * 2 * 70 * 8);
  });

  it('names the method when a window method meets a layer without a window', () => {
    const noWindow: AttentionShape = { batch: 2, tokens: 4, kvTokens: 7, channels: 8, cfg: false, window: null };
    expect(() => requireWindow(noWindow, 'dilated')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(() => requireWindow(noWindow, 'dilated')).toThrow(/window for method "dilated"/);
    expect(requireWindow({ window: { kind: '1d', size: 3 } }, 'dilated')).toEqual({ kind: '1d', size: 3 });
  });
});

/**
 * The paper's methods, as a strategy package declares them (METHOD.md, "Counting attention FLOPs"), built
 * from core's primitives only: core knows none of them by name.
 */
describe('FLOPs of paper-like methods declared with caches', () => {
  const win = (shape: AttentionShape, method: string): number => windowFlops(shape.batch, shape.tokens, shape.channels, requireWindow(shape, method));
  const half = (shape: AttentionShape): AttentionShape => ({ ...shape, batch: condRows(shape) });
  const refresh = (shape: AttentionShape, writes: readonly string[] | undefined): number => (writes?.includes('residual') ? win(shape, 'full') : 0);
  const full = declaredStrategy('full', { writes: ['residual'] }, (s, o) => rawAttentionFlops(s) + refresh(s, o?.writes));
  const fullAsc = declaredStrategy('full+asc', { writes: ['residual'] }, (s, o) => rawAttentionFlops(half(s)) + refresh(half(s), o?.writes));
  const wars = declaredStrategy('wars', { reads: ['residual'] }, (s) => win(s, 'wars'));
  const warsAsc = declaredStrategy('wars+asc', { reads: ['residual'] }, (s) => win(half(s), 'wars+asc'));
  const ast = declaredStrategy('ast', { reads: ['projected'], observes: ['projected'] }, () => 0);
  const strategies = strategySet([full, fullAsc, wars, warsAsc, ast]);

  // B = 4 (2 samples under CFG), L = 16, C = 8, w = 2: raw 4·4·16·16·8 = 32768; band 16·5 − 2·3 = 74 pairs → 4·4·74·8 = 9472
  const [layer] = defineLayers([{ block: 0, site: 'self', batch: 4, tokens: 16, heads: 2, headDim: 4, cfg: true, window: { kind: '1d', size: 2 } }]);
  const shape = layerShape(layer!);
  const at = (steps: string[], step: number, method = steps[step]!): number =>
    layerAttentionFlops(strategies.require(method), shape, { step, numSteps: steps.length, layer: 0, plan: planOf(steps.map((m) => [m])), strategies });

  it('prices one call as METHOD.md says', () => {
    expect(full.flops(shape)).toBe(32768);
    expect(full.flops(shape, { writes: ['residual'] })).toBe(32768 + 9472);
    expect(fullAsc.flops(shape)).toBe(16384);
    expect(fullAsc.flops(shape, { writes: ['residual'] })).toBe((32768 + 9472) / 2);
    expect(wars.flops(shape)).toBe(9472);
    expect(warsAsc.flops(shape)).toBe(4736);
    expect(ast.flops(shape)).toBe(0);
    // without CFG there is no half to skip
    expect(fullAsc.flops({ ...shape, cfg: false })).toBe(32768);
  });

  it('pays the residual window at a full step only when a later step reads the residual', () => {
    expect(at(['full', 'ast', 'wars'], 0)).toBe(32768 + 9472);
    expect(at(['full', 'full', 'wars'], 0)).toBe(32768);
    expect(at(['full', 'full', 'wars'], 1)).toBe(32768 + 9472);
    expect(at(['full', 'ast', 'ast'], 0)).toBe(32768);
    expect(at(['full', 'full+asc', 'wars+asc'], 1)).toBe(21120);
    expect(at(['full', 'full+asc', 'full'], 1)).toBe(16384);
    expect(at(['full', 'wars', 'wars+asc'], 2)).toBe(4736);
    // a whole plan: 3 steps of one layer, raw total 3·32768
    const steps = ['full', 'wars', 'ast'];
    const total = steps.reduce((sum, _m, s) => sum + at(steps, s), 0);
    expect(total / (3 * 32768)).toBe((32768 + 9472 + 9472) / (3 * 32768));
  });

  it('refuses a window method on a layer without a window, naming it', () => {
    expect(() => wars.flops({ ...shape, window: null })).toThrow(/window for method "wars"/);
  });
});
