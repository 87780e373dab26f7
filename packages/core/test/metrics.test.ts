import { describe, expect, it } from 'vitest';
import { ErrorCode, maxAbsDiff, meanRelativeAbsoluteError, meanSquaredError, psnr } from '../src/index.js';

describe('metrics', () => {
  it('mean relative absolute error uses magnitudes', () => {
    // |1-0.5|/(1+1e-6) and |(-2)-(-1)|/(2+1e-6): a signed max would give max(-2,-1) = -1 for the second
    const l = meanRelativeAbsoluteError([1, -2], [0.5, -1]);
    expect(l).toBeCloseTo((0.5 / (1 + 1e-6) + 1 / (2 + 1e-6)) / 2, 12);
  });

  it('is zero for identical inputs and clipped at 10 per element', () => {
    expect(meanRelativeAbsoluteError([1, 2, 3], [1, 2, 3])).toBe(0);
    // |0 - 1e-5| / (1e-5 + 1e-6) ≈ 0.909; opposite signs give 2
    expect(meanRelativeAbsoluteError([1], [-1])).toBeCloseTo(2 / (1 + 1e-6), 12);
    expect(meanRelativeAbsoluteError([0], [1e-5])).toBeCloseTo(1e-5 / (1e-5 + 1e-6), 9);
    expect(meanRelativeAbsoluteError([0], [0])).toBe(0);
  });

  it('psnr follows 10·log10(peak²/mse)', () => {
    expect(meanSquaredError([0, 0], [1, 3])).toBe(5);
    expect(psnr([0, 2], [1, 2], { peak: 2 })).toBeCloseTo(10 * Math.log10(4 / 0.5), 12);
    // default peak: the reference's range
    expect(psnr([0, 4], [1, 4])).toBeCloseTo(10 * Math.log10(16 / 0.5), 12);
    expect(psnr([1, 2], [1, 2])).toBe(Infinity);
    expect(maxAbsDiff([1, 2], [1.5, 0])).toBe(2);
  });

  it('rejects inputs of different lengths', () => {
    expect(() => psnr([1], [1, 2])).toThrow(expect.objectContaining({ code: ErrorCode.ShapeMismatch }));
    expect(() => meanRelativeAbsoluteError([], [])).toThrow(expect.objectContaining({ code: ErrorCode.ShapeMismatch }));
  });
});
