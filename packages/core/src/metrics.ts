import { ShapeMismatchError } from './errors.js';

function check(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length) throw new ShapeMismatchError(`Expected ${what} inputs of equal length but received ${a.length} and ${b.length}`);
  if (a.length === 0) throw new ShapeMismatchError(`Expected non-empty inputs for ${what} but received empty arrays`);
}

/**
 * The paper's loss, mean relative absolute error with magnitudes:
 * `mean_i clip(|o_i − o'_i| / (max(|o_i|, |o'_i|) + 1e-6), 0, 10)`.
 * (The reference code takes a signed element-wise max; METHOD.md asks for magnitudes.)
 */
export function meanRelativeAbsoluteError(reference: ArrayLike<number>, candidate: ArrayLike<number>): number {
  check(reference, candidate, 'meanRelativeAbsoluteError');
  let sum = 0;
  for (let i = 0; i < reference.length; i++) {
    const o = reference[i]!;
    const c = candidate[i]!;
    const r = Math.abs(o - c) / (Math.max(Math.abs(o), Math.abs(c)) + 1e-6);
    sum += r > 10 ? 10 : r;
  }
  return sum / reference.length;
}

/** Mean squared error. */
export function meanSquaredError(reference: ArrayLike<number>, candidate: ArrayLike<number>): number {
  check(reference, candidate, 'meanSquaredError');
  let sum = 0;
  for (let i = 0; i < reference.length; i++) {
    const d = reference[i]! - candidate[i]!;
    sum += d * d;
  }
  return sum / reference.length;
}

export interface PsnrOptions {
  /**
   * Peak signal value. Default: the reference's range `max − min` (use 2 for data in [-1, 1] and 255
   * for 8-bit images).
   */
  readonly peak?: number;
}

/** Peak signal-to-noise ratio in dB; `Infinity` for identical inputs. */
export function psnr(reference: ArrayLike<number>, candidate: ArrayLike<number>, options: PsnrOptions = {}): number {
  const mse = meanSquaredError(reference, candidate);
  let peak = options.peak;
  if (peak === undefined) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < reference.length; i++) {
      lo = Math.min(lo, reference[i]!);
      hi = Math.max(hi, reference[i]!);
    }
    peak = hi - lo;
  }
  if (mse === 0) return Infinity;
  return 10 * Math.log10((peak * peak) / mse);
}

/** Largest absolute element-wise difference. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  check(a, b, 'maxAbsDiff');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Largest absolute value. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
