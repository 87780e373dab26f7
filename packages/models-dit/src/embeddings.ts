/**
 * The fixed (weight-free) embeddings, computed in float64 and stored as float32 exactly as the
 * official code does: the GLIDE timestep sinusoid (`/128`, cos first — DiT original and PixArt; not
 * diffusers' DiT `/127`) and the MAE 2-D sin-cos position table (first half of the channels from the
 * column coordinate, second half from the row), with PixArt's base size and interpolation scale.
 */

/**
 * `[B, dim]`: `[cos(t·f_k), sin(t·f_k)]`, `f_k = exp(−ln(maxPeriod)·k/(dim/2))`. The frequencies and
 * the products `t·f_k` are rounded to float32 as the official PyTorch code computes them (its float32
 * arguments reach ~1000, where rounding moves the sinusoid by up to 3e-5).
 */
export function timestepFrequencies(t: ArrayLike<number>, dim = 256, maxPeriod = 10000): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(t.length * dim);
  const f = Math.fround;
  const lnp = f(-Math.log(maxPeriod));
  const freqs = Array.from({ length: half }, (_, k) => f(Math.exp(f(f(lnp * k) / half))));
  for (let b = 0; b < t.length; b++) {
    const tb = f(t[b]!);
    for (let k = 0; k < half; k++) {
      const arg = f(tb * freqs[k]!);
      out[b * dim + k] = Math.cos(arg);
      out[b * dim + half + k] = Math.sin(arg);
    }
  }
  return out;
}

export interface PosEmbedOptions {
  /** PixArt: grid side the model was trained at (`sample_size / patch`); absent = plain integer positions (DiT). */
  readonly baseSize?: number;
  readonly interpolationScale?: number;
}

/** `[rows·cols, channels]` 2-D sin-cos table, tokens row-major. */
export function sincosPosEmbed(channels: number, rows: number, cols: number, options: PosEmbedOptions = {}): Float32Array {
  const quarter = channels / 4;
  const omega = Array.from({ length: quarter }, (_, k) => 1 / 10000 ** (k / quarter));
  const scale = options.interpolationScale ?? 1;
  const rowCoord = (i: number): number => (options.baseSize === undefined ? i : i / (rows / options.baseSize) / scale);
  const colCoord = (j: number): number => (options.baseSize === undefined ? j : j / (cols / options.baseSize) / scale);
  const out = new Float32Array(rows * cols * channels);
  for (let i = 0; i < rows; i++) {
    const r = rowCoord(i);
    for (let j = 0; j < cols; j++) {
      const c = colCoord(j);
      const o = (i * cols + j) * channels;
      for (let k = 0; k < quarter; k++) {
        out[o + k] = Math.sin(c * omega[k]!);
        out[o + quarter + k] = Math.cos(c * omega[k]!);
        out[o + 2 * quarter + k] = Math.sin(r * omega[k]!);
        out[o + 3 * quarter + k] = Math.cos(r * omega[k]!);
      }
    }
  }
  return out;
}
