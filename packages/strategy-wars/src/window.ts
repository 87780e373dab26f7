import { expectInteger, type Window1D, type Window2D } from '@ditfa/core';

/**
 * The paper's default window: `L/8` tokens per side of a 1-D sliding window over the flattened token
 * sequence (DiT-512: L = 1024, w = 128; PixArt-1024: 4096, 512; PixArt-2K: 16384, 2048).
 */
export function defaultWindow(tokens: number): Window1D {
  expectInteger('tokens', tokens, 1);
  return Object.freeze({ kind: '1d', size: Math.floor(tokens / 8) });
}

/**
 * A 2-D neighbourhood window over a `rows × cols` token grid (tokens row-major): query `(r, c)` sees keys
 * within `radius` rows and `radius` columns. The default radius, a quarter of the shorter side, admits
 * about as many keys as the default 1-D window on a square grid (32×32: 17² = 289 keys against 257).
 */
export function neighbourhoodWindow(rows: number, cols: number, radius?: number): Window2D {
  expectInteger('rows', rows, 1);
  expectInteger('cols', cols, 1);
  const r = radius === undefined ? Math.floor(Math.min(rows, cols) / 4) : expectInteger('radius', radius, 0);
  return Object.freeze({ kind: '2d', rows, cols, radius: r });
}
