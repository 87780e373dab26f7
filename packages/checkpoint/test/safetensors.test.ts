import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CheckpointErrorCode, f16BitsToF32, fromFloat32, readSafetensors, toFloat32, weightsHash, writeSafetensors, type CheckpointTensor } from '../src/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const golden = path.resolve(repoRoot, '../shared/fixtures/golden');

function header(json: unknown, data: Uint8Array = new Uint8Array(0), pad = true): Uint8Array {
  const text = new TextEncoder().encode(typeof json === 'string' ? json : JSON.stringify(json));
  const n = pad ? Math.ceil((8 + text.length) / 8) * 8 - 8 : text.length;
  const out = new Uint8Array(8 + n + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(text, 8);
  out.fill(0x20, 8 + text.length, 8 + n);
  out.set(data, 8 + n);
  return out;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('safetensors round trip', () => {
  const a = fromFloat32(new Float32Array([1, -2.5, 3e-8, 1e30, 0, -0]), [2, 3]);
  const b: CheckpointTensor = { dtype: 'BF16', shape: [2], bytes: new Uint8Array([0x80, 0x3f, 0x00, 0xc0]) };
  const c: CheckpointTensor = { dtype: 'I64', shape: [], bytes: new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0]) };
  const empty = fromFloat32(new Float32Array(0), [0, 4]);

  it('writes a padded header and reads the same tensors back, from bytes and from a file', () => {
    const bytes = writeSafetensors(new Map([['a', a], ['b', b], ['c', c], ['empty', empty]]), { format: 'pt' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const dir = mkdtempSync(path.join(tmpdir(), 'ditfa-st-'));
    try {
      const file = path.join(dir, 'w.safetensors');
      writeFileSync(file, bytes);
      for (const source of [bytes, file]) {
        const read = readSafetensors(source);
        expect(read.metadata).toEqual({ format: 'pt' });
        expect([...read.tensors.keys()]).toEqual(['a', 'b', 'c', 'empty']);
        expect(Array.from(toFloat32(read.tensors.get('a')!))).toEqual(Array.from(new Float32Array([1, -2.5, 3e-8, 1e30, 0, -0])));
        expect(Object.is(toFloat32(read.tensors.get('a')!)[5], -0)).toBe(true);
        expect(Array.from(toFloat32(read.tensors.get('b')!))).toEqual([1, -2]);
        expect(read.tensors.get('c')!.shape).toEqual([]);
        expect(read.tensors.get('empty')!.shape).toEqual([0, 4]);
      }
      const only = readSafetensors(file, { filter: (name) => name === 'b' });
      expect([...only.tensors.keys()]).toEqual(['b']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('decodes F16 exactly, including subnormals, infinities and NaN', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0xc000)).toBe(-2);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(f16BitsToF32(0x7e00))).toBe(true);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    // Every finite half value must round-trip through Math.fround unchanged (it is exactly representable).
    const all = new Uint8Array(2 * 0x7c00);
    for (let h = 0; h < 0x7c00; h++) all[2 * h] = h & 0xff, (all[2 * h + 1] = h >> 8);
    const decoded = toFloat32({ dtype: 'F16', shape: [0x7c00], bytes: all });
    for (let h = 0; h < 0x7c00; h++) expect(decoded[h]).toBe(f16BitsToF32(h));
  });

  it('hashes by content, independent of insertion order, and sensitive to every field', () => {
    const h1 = weightsHash(new Map([['a', a], ['b', b]]));
    expect(h1).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(weightsHash([['b', b], ['a', a]])).toBe(h1);
    expect(weightsHash([['a', { ...a, shape: [3, 2] }], ['b', b]])).not.toBe(h1);
    expect(weightsHash([['a2', a], ['b', b]])).not.toBe(h1);
    expect(weightsHash([['a', a], ['b', { ...b, dtype: 'F16' }]])).not.toBe(h1);
    expect(weightsHash([['a', { data: toFloat32(a), shape: [2, 3] }], ['b', b]])).toBe(h1);
  });
});

describe('safetensors validation', () => {
  const four = new Uint8Array(4);
  it.each([
    ['a file shorter than the length field', new Uint8Array(5)],
    ['a header length beyond the file', (() => { const x = header({}); new DataView(x.buffer).setBigUint64(0, 1000n, true); return x; })()],
    ['a huge header length', (() => { const x = header({}); new DataView(x.buffer).setBigUint64(0, 2n ** 62n, true); return x; })()],
    ['malformed JSON', header('{"a": ')],
    ['a header that is not an object', header('[1,2]')],
    ['an unknown dtype', header({ a: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, four)],
    ['a negative dimension', header({ a: { dtype: 'U8', shape: [-4], data_offsets: [0, 4] } }, four)],
    ['a fractional dimension', header({ a: { dtype: 'U8', shape: [1.5], data_offsets: [0, 4] } }, four)],
    ['begin > end', header({ a: { dtype: 'U8', shape: [0], data_offsets: [4, 0] } }, four)],
    ['offsets past the data', header({ a: { dtype: 'U8', shape: [8], data_offsets: [0, 8] } }, four)],
    ['a byte length that disagrees with the shape', header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, four)],
    ['overlapping tensors', header({ a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, four)],
    ['a hole in the data', header({ a: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, four)],
    ['trailing bytes not covered', header({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, four)],
    ['non-string metadata', header({ __metadata__: { x: 1 } })],
    ['missing data_offsets', header({ a: { dtype: 'U8', shape: [4] } }, four)],
  ])('rejects %s with ERR_DITFA_CHECKPOINT_CORRUPT', (_what, bytes) => {
    expect(code(() => readSafetensors(bytes))).toBe(CheckpointErrorCode.Corrupt);
  });

  it('names what it expected and what it received', () => {
    const e = errorOf(() => readSafetensors(header({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, four)));
    expect(e.message).toContain('"w"');
    expect(e.message).toContain('8 bytes');
    expect(e.message).toContain('span 4');
  });

  it('reports a missing file as ERR_DITFA_CHECKPOINT_IO', () => {
    expect(code(() => readSafetensors('/nonexistent/ditfa/w.safetensors'))).toBe(CheckpointErrorCode.Io);
  });

  it('reads a truncated copy of a valid file as corrupt', () => {
    const bytes = writeSafetensors([['a', fromFloat32(new Float32Array(16), [16])]]);
    expect(code(() => readSafetensors(bytes.subarray(0, bytes.length - 3)))).toBe(CheckpointErrorCode.Corrupt);
  });
});

describe.skipIf(!existsSync(golden))('safetensors against the golden fixtures (written by the Python safetensors library)', () => {
  it('reads dit_b4_s8/weights.safetensors and io.safetensors, and rewrites them byte-identically in content', () => {
    const file = path.join(golden, 'dit_b4_s8/weights.safetensors');
    const w = readSafetensors(file);
    expect(w.tensors.get('y_embedder.embedding_table.weight')!.shape).toEqual([11, 64]);
    expect(w.tensors.get('pos_embed')!.shape).toEqual([1, 16, 64]);
    const io = readSafetensors(path.join(golden, 'dit_b4_s8/io.safetensors'));
    const t = io.tensors.get('input.t')!;
    expect(t.dtype).toBe('I64');
    expect(Array.from(new BigInt64Array(t.bytes.slice().buffer))).toEqual([0n, 17n, 500n, 999n]);
    const again = readSafetensors(writeSafetensors(w.tensors, w.metadata));
    expect(weightsHash(again.tensors)).toBe(weightsHash(w.tensors));
    const fromBytes = readSafetensors(new Uint8Array(readFileSync(file)));
    expect(weightsHash(fromBytes.tensors)).toBe(weightsHash(w.tensors));
  });
});
