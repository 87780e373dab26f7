/**
 * The weight-free embeddings of STDiT2/STDiT3, computed with float32 rounding at each operation as the
 * official PyTorch code does: the dynamic 2-D position table (`PositionEmbedding2D`, scaled by the
 * resolution), the rotary tables of the temporal attention (`rotary_embedding_torch`), and the
 * sinusoid inputs of the timestep and size embedders (models-dit's `timestepFrequencies`, the same
 * GLIDE formula: `[cos, sin]`, `/half`).
 */
export { timestepFrequencies } from '@ditfa/models-dit';

const f = Math.fround;

/**
 * `PositionEmbedding2D(C)(…, H', W', scale, base_size)` → `[H'·W', C]`, tokens row-major: row `i` has the
 * coordinate `i/scale·base/H'`, column `j` `j/scale·base/W'`; channels `[sin(col·w), cos(col·w),
 * sin(row·w), cos(row·w)]` with `w_k = 1/10000^(2k/(C/2))`, `k < C/4`.
 */
export function positionEmbedding2D(channels: number, rows: number, cols: number, scale: number, baseSize: number): Float32Array {
  const half = channels / 2;
  const quarter = channels / 4;
  const invFreq = Array.from({ length: quarter }, (_, k) => f(1 / f(10000 ** f((2 * k) / half))));
  const sc = f(scale);
  const coords = (n: number): number[] => {
    const stretch = f(baseSize / n);
    return Array.from({ length: n }, (_, i) => f(f(i / sc) * stretch));
  };
  const rowCoord = coords(rows);
  const colCoord = coords(cols);
  const out = new Float32Array(rows * cols * channels);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const o = (i * cols + j) * channels;
      for (let k = 0; k < quarter; k++) {
        const c = f(colCoord[j]! * invFreq[k]!);
        const r = f(rowCoord[i]! * invFreq[k]!);
        out[o + k] = Math.sin(c);
        out[o + quarter + k] = Math.cos(c);
        out[o + half + k] = Math.sin(r);
        out[o + half + quarter + k] = Math.cos(r);
      }
    }
  }
  return out;
}

/** `scale` and `base_size` of the position embedding for a pixel size and token grid (official STDiT2/3 forward). */
export function positionScale(heightPx: number, widthPx: number, inputSqSize: number, rows: number, cols: number): { scale: number; baseSize: number } {
  return { scale: Math.sqrt(heightPx * widthPx) / inputSqSize, baseSize: Math.round(Math.sqrt(rows * cols)) };
}

/**
 * Rotary tables for `frames` positions, `[frames, heads·headDim]` each: angle `pos·freq_j` (float32) for
 * the interleaved pair `(2j, 2j+1)` of every head, so that `rope(x) = x·cos + rotate_half(x)·sin` with
 * `rotate_half(x)[2j] = −x[2j+1]`, `rotate_half(x)[2j+1] = x[2j]` (rotary-embedding-torch).
 */
export function ropeTables(freqs: Float32Array, frames: number, heads: number): { cos: Float32Array; sin: Float32Array } {
  const hd = 2 * freqs.length;
  const C = heads * hd;
  const cos = new Float32Array(frames * C);
  const sin = new Float32Array(frames * C);
  for (let t = 0; t < frames; t++) {
    for (let j = 0; j < freqs.length; j++) {
      const a = f(t * freqs[j]!);
      const c = Math.cos(a);
      const s = Math.sin(a);
      for (let h = 0; h < heads; h++) {
        const o = t * C + h * hd + 2 * j;
        cos[o] = c;
        cos[o + 1] = c;
        sin[o] = s;
        sin[o + 1] = s;
      }
    }
  }
  return { cos, sin };
}
