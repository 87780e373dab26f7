import { InvalidArgumentError, ShapeMismatchError, describeValue, expectInteger } from '@ditfa/core';
import type { Canvas } from './canvas.js';
import { PngDecodeError, type RasterImage, encodePng } from './png.js';

/**
 * Animated PNG (APNG, the W3C PNG 3rd edition's `acTL`/`fcTL`/`fdAT` chunks): every frame is compressed
 * by {@link encodePng} and its image data re-wrapped — the first frame as the default image (`IDAT`,
 * what viewers without APNG show), the others as `fdAT`. Frames replace each other whole
 * (`dispose_op` none, `blend_op` source).
 */

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface Chunk {
  readonly type: string;
  readonly data: Uint8Array;
}

/** The chunks of PNG bytes (type and data; CRCs are not checked). */
export function pngChunks(bytes: Uint8Array): Chunk[] {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new PngDecodeError('Expected PNG data (the PNG signature) but received other bytes');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks: Chunk[] = [];
  for (let o = 8; o + 12 <= bytes.length; ) {
    const length = view.getUint32(o);
    if (o + 12 + length > bytes.length) throw new PngDecodeError(`Expected a whole PNG chunk at byte ${o} but the data ends first`);
    const type = String.fromCharCode(...bytes.subarray(o + 4, o + 8));
    chunks.push({ type, data: bytes.subarray(o + 8, o + 8 + length) });
    o += 12 + length;
  }
  return chunks;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function u32s(...values: number[]): Uint8Array {
  const out = new Uint8Array(4 * values.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint32(4 * i, v));
  return out;
}

export interface ApngOptions {
  /** Frames per second (default 8); ignored when `delayMs` is given. */
  readonly fps?: number;
  /** Milliseconds each frame shows. */
  readonly delayMs?: number;
  /** Times the animation plays (default 0: forever). */
  readonly loops?: number;
}

/** Encodes equally sized frames (8-bit images or canvases) as an animated PNG. */
export function encodeApng(frames: ReadonlyArray<RasterImage | Canvas>, options: ApngOptions = {}): Buffer {
  const first = frames[0];
  if (!first) throw new InvalidArgumentError('Expected at least one frame for an animation but received none');
  const loops = expectInteger('loops', options.loops ?? 0, 0, 2 ** 31 - 1);
  let num: number;
  let den: number;
  if (options.delayMs !== undefined) {
    num = expectInteger('delayMs', options.delayMs, 0, 65535);
    den = 1000;
  } else {
    const fps = options.fps ?? 8;
    if (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0 || fps > 1000) throw new InvalidArgumentError(`Expected fps in (0, 1000] but received ${describeValue(fps)}`);
    num = 1000;
    den = Math.min(65535, Math.round(fps * 1000));
  }
  const parts: Uint8Array[] = [SIGNATURE];
  let seq = 0;
  frames.forEach((frame, i) => {
    if (frame.width !== first.width || frame.height !== first.height) {
      throw new ShapeMismatchError(`Expected every frame to be ${first.width}×${first.height} but frame ${i} is ${frame.width}×${frame.height}`);
    }
    const chunks = pngChunks(encodePng(frame));
    if (i === 0) {
      parts.push(chunk('IHDR', chunks.find((c) => c.type === 'IHDR')!.data));
      parts.push(chunk('acTL', u32s(frames.length, loops)));
    }
    const fctl = new Uint8Array(26);
    const view = new DataView(fctl.buffer);
    view.setUint32(0, seq++);
    view.setUint32(4, frame.width);
    view.setUint32(8, frame.height);
    view.setUint16(20, num);
    view.setUint16(22, den);
    parts.push(chunk('fcTL', fctl)); // offsets 0, dispose_op 0 (none), blend_op 0 (source)
    for (const c of chunks.filter((c) => c.type === 'IDAT')) {
      if (i === 0) parts.push(chunk('IDAT', c.data));
      else {
        const data = new Uint8Array(4 + c.data.length);
        new DataView(data.buffer).setUint32(0, seq++);
        data.set(c.data, 4);
        parts.push(chunk('fdAT', data));
      }
    }
  });
  parts.push(chunk('IEND', new Uint8Array(0)));
  return Buffer.concat(parts);
}

/** Frames of an animated PNG (its `acTL` count; 1 for a still PNG). */
export function apngFrameCount(bytes: Uint8Array): number {
  const actl = pngChunks(bytes).find((c) => c.type === 'acTL');
  return actl ? new DataView(actl.data.buffer, actl.data.byteOffset, 4).getUint32(0) : 1;
}
