import { InvalidArgumentError, expectInteger } from '@ditfa/core';
import { GLYPH_HEIGHT, GLYPH_WIDTH, glyph } from './font.js';

export type Rgb = readonly [number, number, number];

/** An 8-bit RGB raster, row-major, 3 bytes per pixel. */
export class Canvas {
  readonly width: number;
  readonly height: number;
  readonly pixels: Uint8Array;

  constructor(width: number, height: number, background: Rgb = [255, 255, 255]) {
    this.width = expectInteger('width', width, 1, 1 << 15);
    this.height = expectInteger('height', height, 1, 1 << 15);
    this.pixels = new Uint8Array(width * height * 3);
    this.fillRect(0, 0, width, height, background);
  }

  /** Fills the rectangle, clipped to the canvas. */
  fillRect(x: number, y: number, w: number, h: number, color: Rgb): void {
    const x0 = Math.max(0, Math.floor(x));
    const y0 = Math.max(0, Math.floor(y));
    const x1 = Math.min(this.width, Math.floor(x + w));
    const y1 = Math.min(this.height, Math.floor(y + h));
    for (let yy = y0; yy < y1; yy++)
      for (let xx = x0; xx < x1; xx++) {
        const o = (yy * this.width + xx) * 3;
        this.pixels[o] = color[0];
        this.pixels[o + 1] = color[1];
        this.pixels[o + 2] = color[2];
      }
  }

  /** Draws text with the 5×7 bitmap font at integer `scale`; returns the width drawn. */
  text(x: number, y: number, text: string, color: Rgb = [0, 0, 0], scale = 1): number {
    const step = (GLYPH_WIDTH + 1) * scale;
    [...text].forEach((ch, i) => {
      const rows = glyph(ch);
      for (let r = 0; r < GLYPH_HEIGHT; r++)
        for (let c = 0; c < GLYPH_WIDTH; c++) {
          if ((rows[r]! >> (GLYPH_WIDTH - 1 - c)) & 1) this.fillRect(x + i * step + c * scale, y + r * scale, scale, scale, color);
        }
    });
    return textWidth(text, scale);
  }

  /** Copies a grayscale (`channels` 1) or RGB (3) 8-bit image in at (x, y), clipped. */
  blit(x: number, y: number, image: { width: number; height: number; channels: 1 | 3; data: Uint8Array }): void {
    for (let yy = 0; yy < image.height; yy++)
      for (let xx = 0; xx < image.width; xx++) {
        const tx = x + xx;
        const ty = y + yy;
        if (tx < 0 || ty < 0 || tx >= this.width || ty >= this.height) continue;
        const s = (yy * image.width + xx) * image.channels;
        const o = (ty * this.width + tx) * 3;
        for (let c = 0; c < 3; c++) this.pixels[o + c] = image.data[s + (image.channels === 1 ? 0 : c)]!;
      }
  }
}

/** Width in pixels of `text` drawn at `scale`. */
export function textWidth(text: string, scale = 1): number {
  const n = [...text].length;
  return n === 0 ? 0 : (n * (GLYPH_WIDTH + 1) - 1) * scale;
}

/** Parses `#rrggbb`. */
export function hexColor(hex: string): Rgb {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) throw new InvalidArgumentError(`Expected a colour like "#1f77b4" but received ${JSON.stringify(hex)}`);
  return [parseInt(m[1]!, 16), parseInt(m[2]!, 16), parseInt(m[3]!, 16)];
}
