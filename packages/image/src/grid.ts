import { InvalidArgumentError, ShapeMismatchError, expectInteger, type Tensor } from '@ditfa/core';
import { Canvas, type Rgb } from './canvas.js';

/**
 * Images from `[N, C, H, W]` tensors (C = 1 gray or 3 RGB; other channel counts show their first
 * channel), mapped linearly from `range` to 0..255 and clipped.
 */
export function tensorToImages(t: Tensor, range: readonly [number, number] = [-1, 1]): { width: number; height: number; channels: 1 | 3; data: Uint8Array }[] {
  if (t.shape.length !== 4) throw new ShapeMismatchError(`Expected images as [N, C, H, W] but received [${t.shape.join(', ')}]`);
  const [n, c, h, w] = t.shape as [number, number, number, number];
  const [lo, hi] = range;
  if (!(hi > lo)) throw new InvalidArgumentError(`Expected a range [lo, hi] with hi > lo but received [${lo}, ${hi}]`);
  const channels: 1 | 3 = c === 3 ? 3 : 1;
  const out = [];
  for (let i = 0; i < n; i++) {
    const data = new Uint8Array(h * w * channels);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let ch = 0; ch < channels; ch++) {
          const v = t.data[((i * c + ch) * h + y) * w + x]!;
          data[(y * w + x) * channels + ch] = Math.max(0, Math.min(255, Math.round(((v - lo) / (hi - lo)) * 255)));
        }
    out.push({ width: w, height: h, channels, data });
  }
  return out;
}

export interface GridOptions {
  /** Images per row; default ⌈√n⌉. */
  readonly columns?: number;
  /** Pixels between images. */
  readonly padding?: number;
  /** Integer upscaling (nearest neighbour). */
  readonly scale?: number;
  readonly background?: Rgb;
}

/** Lays equally sized images out in a grid. */
export function imageGrid(images: readonly { width: number; height: number; channels: 1 | 3; data: Uint8Array }[], options: GridOptions = {}): Canvas {
  const first = images[0];
  if (!first) throw new InvalidArgumentError('Expected at least one image for a grid but received none');
  const columns = expectInteger('columns', options.columns ?? Math.ceil(Math.sqrt(images.length)), 1);
  const pad = expectInteger('padding', options.padding ?? 2, 0);
  const scale = expectInteger('scale', options.scale ?? 1, 1);
  const rows = Math.ceil(images.length / columns);
  const cw = first.width * scale;
  const ch = first.height * scale;
  const canvas = new Canvas(columns * cw + (columns + 1) * pad, rows * ch + (rows + 1) * pad, options.background ?? [0, 0, 0]);
  images.forEach((img, i) => {
    if (img.width !== first.width || img.height !== first.height) {
      throw new ShapeMismatchError(`Expected every grid image to be ${first.width}×${first.height} but image ${i} is ${img.width}×${img.height}`);
    }
    const scaled = scale === 1 ? img : upscale(img, scale);
    canvas.blit(pad + (i % columns) * (cw + pad), pad + Math.floor(i / columns) * (ch + pad), scaled);
  });
  return canvas;
}

function upscale(img: { width: number; height: number; channels: 1 | 3; data: Uint8Array }, s: number) {
  const w = img.width * s;
  const h = img.height * s;
  const data = new Uint8Array(w * h * img.channels);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < img.channels; c++) data[(y * w + x) * img.channels + c] = img.data[(Math.floor(y / s) * img.width + Math.floor(x / s)) * img.channels + c]!;
  return { width: w, height: h, channels: img.channels, data };
}
