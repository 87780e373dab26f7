import { ErrorCode, tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { Canvas, decodePng, encodePng, hexColor, imageGrid, tensorToImages, textWidth } from '../src/index.js';

describe('image', () => {
  it('round-trips an RGB canvas through PNG', () => {
    const c = new Canvas(7, 5, [10, 20, 30]);
    c.fillRect(2, 1, 3, 2, [255, 0, 0]);
    const img = decodePng(encodePng(c));
    expect([img.width, img.height]).toEqual([7, 5]);
    const px = (x: number, y: number) => [...img.data.subarray((y * 7 + x) * 4, (y * 7 + x) * 4 + 3)];
    expect(px(0, 0)).toEqual([10, 20, 30]);
    expect(px(3, 2)).toEqual([255, 0, 0]);
    expect(px(5, 2)).toEqual([10, 20, 30]);
  });

  it('encodes grayscale and rejects inconsistent sizes', () => {
    const img = decodePng(encodePng({ width: 2, height: 2, channels: 1, data: Uint8Array.of(0, 85, 170, 255) }));
    expect([...img.data].filter((_, i) => i % 4 === 0)).toEqual([0, 85, 170, 255]);
    expect(() => encodePng({ width: 2, height: 2, channels: 1, data: new Uint8Array(3) })).toThrow(expect.objectContaining({ code: ErrorCode.ShapeMismatch }));
    expect(() => decodePng(Uint8Array.of(1, 2, 3))).toThrow(expect.objectContaining({ code: 'ERR_DITFA_PNG_DECODE' }));
  });

  it('draws text with the bitmap font', () => {
    const c = new Canvas(20, 9);
    expect(c.text(1, 1, 'F1')).toBe(textWidth('F1'));
    // 'F' has its top row fully set: pixels (1..5, 1) are black
    for (let x = 1; x <= 5; x++) expect(c.pixels[(1 * 20 + x) * 3]).toBe(0);
    expect(c.pixels[(1 * 20 + 6) * 3]).toBe(255);
    expect(hexColor('#1f77b4')).toEqual([31, 119, 180]);
    expect(() => hexColor('blue')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
  });

  it('maps tensors to images and lays them out in a grid', () => {
    const t = tensor(Float32Array.of(-1, 1, 0, 2, -1, -1, -1, -1), [2, 1, 2, 2]);
    const imgs = tensorToImages(t);
    expect([...imgs[0]!.data]).toEqual([0, 255, 128, 255]);
    const grid = imageGrid(imgs, { columns: 2, padding: 1, scale: 2 });
    expect([grid.width, grid.height]).toEqual([2 * 4 + 3, 4 + 2]);
    // top-left pixel of the first image (scaled 2×) sits at (1, 1)
    expect(grid.pixels[(1 * grid.width + 1) * 3]).toBe(0);
    expect(grid.pixels[(1 * grid.width + 3) * 3]).toBe(255);
  });
});
