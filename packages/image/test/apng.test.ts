import { crc32 } from 'node:zlib';
import { ErrorCode } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { Canvas, apngFrameCount, decodePng, encodeApng, encodePng, pngChunks } from '../src/index.js';

const frame = (shade: number): Canvas => {
  const c = new Canvas(6, 4, [shade, 255 - shade, 40]);
  c.fillRect(1, 1, 2, 2, [255, shade, 0]);
  return c;
};

describe('animated PNG', () => {
  const frames = [frame(0), frame(90), frame(200)];
  const apng = encodeApng(frames, { fps: 4 });
  const chunks = pngChunks(apng);

  it('is a PNG whose default image is the first frame, with valid CRCs (zlib) and the APNG chunk sequence', () => {
    expect(Array.from(decodePng(apng).data)).toEqual(Array.from(decodePng(encodePng(frames[0]!)).data));
    const view = new DataView(apng.buffer, apng.byteOffset, apng.byteLength);
    for (let o = 8, i = 0; o < apng.length; i++) {
      const length = view.getUint32(o);
      expect(view.getUint32(o + 8 + length), chunks[i]!.type).toBe(crc32(apng.subarray(o + 4, o + 8 + length)));
      o += 12 + length;
    }
    expect(chunks.map((c) => c.type).filter((t) => t !== 'IDAT' && t !== 'fdAT')).toEqual(['IHDR', 'acTL', 'fcTL', 'fcTL', 'fcTL', 'IEND']);
    expect(apngFrameCount(apng)).toBe(3);
    // sequence numbers of fcTL and fdAT run 0, 1, 2, … in file order; delays 1000/4000 s
    const seq = chunks.filter((c) => c.type === 'fcTL' || c.type === 'fdAT').map((c) => new DataView(c.data.buffer, c.data.byteOffset).getUint32(0));
    expect(seq).toEqual(seq.map((_, i) => i));
    const fctl = chunks.find((c) => c.type === 'fcTL')!;
    const fv = new DataView(fctl.data.buffer, fctl.data.byteOffset, fctl.data.byteLength);
    expect([fv.getUint32(4), fv.getUint32(8), fv.getUint16(20), fv.getUint16(22), fctl.data[24], fctl.data[25]]).toEqual([6, 4, 1000, 4000, 0, 0]);
    expect(apngFrameCount(encodePng(frames[0]!))).toBe(1);
  });

  it('carries every later frame as fdAT data that decodes to it', () => {
    const ihdr = chunks.find((c) => c.type === 'IHDR')!;
    const fcIndex = chunks.map((c, i) => (c.type === 'fcTL' ? i : -1)).filter((i) => i >= 0);
    for (let f = 1; f < frames.length; f++) {
      const data = chunks.slice(fcIndex[f]! + 1, fcIndex[f + 1] ?? chunks.length - 1).filter((c) => c.type === 'fdAT').map((c) => c.data.subarray(4));
      const still = Buffer.concat([apng.subarray(0, 8), wrap('IHDR', ihdr.data), ...data.map((d) => wrap('IDAT', d)), wrap('IEND', new Uint8Array(0))]);
      expect(Array.from(decodePng(still).data), `frame ${f}`).toEqual(Array.from(decodePng(encodePng(frames[f]!)).data));
    }
  });

  it('refuses no frames, frames of different sizes and bad timing', () => {
    expect(() => encodeApng([])).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(() => encodeApng([frame(0), new Canvas(5, 4)])).toThrow(expect.objectContaining({ code: ErrorCode.ShapeMismatch }));
    expect(() => encodeApng([frame(0)], { fps: 0 })).toThrow(/fps/);
    expect(() => pngChunks(Uint8Array.of(1, 2, 3))).toThrow(expect.objectContaining({ code: 'ERR_DITFA_PNG_DECODE' }));
  });
});

/** A PNG chunk with its CRC from zlib. */
function wrap(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}
