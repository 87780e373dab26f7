/**
 * The linear noise schedule every supported model was trained with (β from 1e-4 to 0.02 over 1000
 * steps), computed the two ways the reference implementations do:
 *
 * - diffusers: float32 `torch.linspace` and `torch.cumprod` ({@link diffusersAlphasCumprod});
 * - DiT / IDDPM: float64 `np.linspace` and `np.cumprod` ({@link linearBetasF64}).
 */

export const TRAIN_TIMESTEPS = 1000;
export const BETA_START = 0.0001;
export const BETA_END = 0.02;

const f = Math.fround;

/** `np.linspace(start, end, n, dtype=float64)`: `i·step + start`, last element set to `end`. */
export function linearBetasF64(n = TRAIN_TIMESTEPS, start = BETA_START, end = BETA_END): Float64Array {
  const out = new Float64Array(n);
  const step = (end - start) / (n - 1);
  for (let i = 0; i < n; i++) out[i] = i * step + start;
  if (n > 1) out[n - 1] = end;
  return out;
}

/**
 * ᾱ as diffusers builds it: `betas = torch.linspace(start, end, n, dtype=float32)` (ATen's scalar
 * formula: `start + step·i` for the first half, `end − step·(n−1−i)` for the second, in float32),
 * `alphas = 1 − betas`, `torch.cumprod` (accumulated in double, stored in float32).
 */
export function diffusersAlphasCumprod(n = TRAIN_TIMESTEPS, start = BETA_START, end = BETA_END): Float32Array {
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  const out = new Float32Array(n);
  let acc = 1;
  for (let i = 0; i < n; i++) {
    const beta = i < half ? f(s + f(step * i)) : f(e - f(step * (n - 1 - i)));
    acc *= f(1 - beta);
    out[i] = acc;
  }
  return out;
}

/** Python 3's `round()`: to the nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
