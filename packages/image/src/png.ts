import { DitfaError, InvalidArgumentError, ShapeMismatchError, expectInteger } from '@ditfa/core';
import pngjs from 'pngjs';
import type { Canvas } from './canvas.js';

const { PNG } = pngjs;

/** An 8-bit image with 1 (gray), 3 (RGB) or 4 (RGBA) channels, row-major. */
export interface RasterImage {
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3 | 4;
  readonly data: Uint8Array;
}

export class PngDecodeError extends DitfaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DITFA_PNG_DECODE', message, options);
  }
}

/** Encodes an 8-bit gray, RGB or RGBA image (or a {@link Canvas}) as PNG bytes. */
export function encodePng(image: RasterImage | Canvas): Buffer {
  const channels = 'channels' in image ? image.channels : 3;
  const data = 'data' in image ? image.data : image.pixels;
  expectInteger('width', image.width, 1);
  expectInteger('height', image.height, 1);
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw new InvalidArgumentError(`Expected 1, 3 or 4 channels but received ${String(channels)}`);
  }
  if (data.length !== image.width * image.height * channels) {
    throw new ShapeMismatchError(`Expected ${image.width * image.height * channels} bytes for a ${image.width}×${image.height}×${channels} image but received ${data.length}`);
  }
  const png = new PNG({ width: image.width, height: image.height, colorType: channels === 1 ? 0 : channels === 3 ? 2 : 6, inputColorType: channels === 1 ? 0 : channels === 3 ? 2 : 6, inputHasAlpha: channels === 4 });
  png.data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return PNG.sync.write(png, { colorType: channels === 1 ? 0 : channels === 3 ? 2 : 6, inputColorType: channels === 1 ? 0 : channels === 3 ? 2 : 6, inputHasAlpha: channels === 4 });
}

/** Decodes PNG bytes to RGBA. */
export function decodePng(bytes: Uint8Array): RasterImage {
  try {
    const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return { width: png.width, height: png.height, channels: 4, data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength) };
  } catch (cause) {
    throw new PngDecodeError(`Expected PNG data but could not decode it: ${(cause as Error).message}`, { cause });
  }
}
