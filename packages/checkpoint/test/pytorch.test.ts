import { readFileSync } from 'node:fs';
import * as zlib from 'node:zlib';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  CheckpointErrorCode,
  asFloat32,
  gatherStrided,
  loadCheckpoint,
  readPytorch,
  readSafetensors,
  toFloat32,
  toFloat32Tensors,
  unpickle,
  weightsHash,
} from '../src/index.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const fx = (name: string): string => path.join(fixtures, name);

function errorOf(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

describe('PyTorch zip checkpoints', () => {
  it('reads a module state_dict identical to the safetensors copy of the same weights', () => {
    const bin = loadCheckpoint(fx('weights.bin'));
    const st = loadCheckpoint(fx('weights.safetensors'));
    expect(bin.format).toBe('pytorch');
    expect(st.format).toBe('safetensors');
    expect(st.metadata).toEqual({ format: 'pt' });
    expect([...bin.tensors.keys()].sort()).toEqual([...st.tensors.keys()].sort());
    expect(bin.tensors.size).toBe(8);
    for (const [name, t] of st.tensors) {
      const b = bin.tensors.get(name)!;
      expect(b.dtype, name).toBe(t.dtype);
      expect(b.shape, name).toEqual(t.shape);
      expect(Buffer.from(b.bytes).equals(Buffer.from(t.bytes)), name).toBe(true);
    }
    expect(bin.tensors.get('2.weight')!.shape).toEqual([2, 4, 2, 2]);
    expect(bin.tensors.get('scalar')!.shape).toEqual([]);
    expect(Array.from(toFloat32(bin.tensors.get('scalar')!))).toEqual([2.5]);
    expect(bin.tensors.get('empty')!.shape).toEqual([0, 3]);
    expect(weightsHash(bin.tensors)).toBe(weightsHash(st.tensors));
    expect(weightsHash(toFloat32Tensors(bin.tensors))).toBe(weightsHash(st.tensors));
    const shared = toFloat32Tensors(st.tensors, { share: true });
    expect(weightsHash(shared)).toBe(weightsHash(st.tensors));
    const w = st.tensors.get('0.weight')!;
    expect(asFloat32(w).buffer).toBe(w.bytes.buffer);
    expect(toFloat32(w).buffer).not.toBe(w.bytes.buffer);
  });

  it('reads the same archive with deflated entries', () => {
    const a = readPytorch(fx('weights.bin'));
    const b = readPytorch(new Uint8Array(readFileSync(fx('weights_deflate.bin'))));
    expect(weightsHash(b.tensors)).toBe(weightsHash(a.tensors));
  });

  it('reads pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL) to the same tensors', () => {
    const a = readPytorch(fx('weights.bin'));
    const b = readPytorch(fx('weights_proto4.bin'));
    expect(b.tensors.size).toBe(8);
    expect(weightsHash(b.tensors)).toBe(weightsHash(a.tensors));
  });

  it('widens float16 and bfloat16 storages exactly as torch .float() does', () => {
    const bin = loadCheckpoint(fx('halfs.bin'));
    const st = loadCheckpoint(fx('halfs.safetensors'));
    const expected = loadCheckpoint(fx('halfs_expected_f32.safetensors'));
    expect(bin.tensors.get('f16')!.dtype).toBe('F16');
    expect(bin.tensors.get('bf16')!.dtype).toBe('BF16');
    expect(bin.tensors.get('f64')!.dtype).toBe('F64');
    for (const name of ['f16', 'bf16', 'f64']) {
      const want = Array.from(toFloat32(expected.tensors.get(name)!));
      expect(Array.from(toFloat32(bin.tensors.get(name)!)), name).toEqual(want);
      expect(Array.from(toFloat32(st.tensors.get(name)!)), name).toEqual(want);
    }
  });

  it('gathers non-contiguous views, storage offsets and shared storages', () => {
    const bin = loadCheckpoint(fx('views.bin'));
    const expected = loadCheckpoint(fx('views_expected.safetensors'));
    for (const [name, t] of expected.tensors) {
      expect(bin.tensors.get(name)!.shape, name).toEqual(t.shape);
      expect(Array.from(toFloat32(bin.tensors.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
    }
    expect(bin.tensors.get('transposed')!.shape).toEqual([6, 4]);
    expect(Array.from(toFloat32(bin.tensors.get('expanded')!))).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
  });

  it('flattens nested dicts, unwraps parameters and lists skipped non-tensor leaves', () => {
    const ckpt = loadCheckpoint(fx('nested.bin'));
    expect([...ckpt.tensors.keys()].sort()).toEqual(['model.w', 'p']);
    expect(Array.from(toFloat32(ckpt.tensors.get('p')!))).toEqual([0.5, 0.5, 0.5]);
    expect([...ckpt.ignored].sort()).toEqual(['epoch', 'name']);
  });

  it('refuses a pickle that would call os.system, naming the global, without running it', () => {
    const e = errorOf(() => loadCheckpoint(fx('malicious.bin')));
    expect(e.code).toBe(CheckpointErrorCode.UnsafePickle);
    expect(e.message).toMatch(/posix\.system|os\.system/);
  });

  it('reports truncated zips and legacy files with codes', () => {
    expect(errorOf(() => loadCheckpoint(fx('truncated.bin'))).code).toBe(CheckpointErrorCode.Corrupt);
    expect(errorOf(() => loadCheckpoint(fx('legacy.pt'))).code).toBe(CheckpointErrorCode.Unsupported);
    expect(errorOf(() => loadCheckpoint(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))).code).toBe(CheckpointErrorCode.Unsupported);
  });

  it('detects a corrupted storage byte through the zip CRC', () => {
    const bytes = new Uint8Array(readFileSync(fx('weights.bin')));
    const at = Buffer.from(bytes).indexOf('weights/data/0') + 'weights/data/0'.length;
    // The first local header of data/0 is followed by padding and the data; flip a byte of the data.
    const entryData = Buffer.from(bytes).indexOf(Buffer.from(readSafetensors(fx('weights.safetensors')).tensors.get('0.weight')!.bytes), at);
    expect(entryData).toBeGreaterThan(0);
    bytes[entryData] = bytes[entryData]! ^ 0xff;
    const e = errorOf(() => loadCheckpoint(bytes));
    expect(e.code).toBe(CheckpointErrorCode.Corrupt);
    expect(e.message).toContain('CRC-32');
  });
});

describe('restricted unpickler', () => {
  const pk = (...parts: (number | string)[]): Uint8Array =>
    new Uint8Array(parts.flatMap((p) => (typeof p === 'number' ? [p] : [...Buffer.from(p, 'latin1')])));

  it('builds dicts, lists, tuples, ints, floats and strings', () => {
    // {'a': [1, -2, 70000, 2**40, True, None], 'b': (1.5,)}
    const v = unpickle(pk(0x80, 2, 0x7d, 0x28, 0x8c, 1, 'a', 0x5d, 0x28, 0x4b, 1, 0x4a, 0xfe, 0xff, 0xff, 0xff, 0x4a, 0x70, 0x11, 0x01, 0x00,
      0x8a, 6, 0, 0, 0, 0, 0, 1, 0x88, 0x4e, 0x65, 0x8c, 1, 'b', 0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x85, 0x75, 0x2e));
    expect(v).toBeInstanceOf(Map);
    const m = v as Map<unknown, unknown>;
    expect(m.get('a')).toEqual([1, -2, 70000, 2 ** 40, true, null]);
    expect(m.get('b')).toEqual({ kind: 'tuple', items: [1.5] });
  });

  it.each([
    ['GLOBAL builtins.eval', pk(0x80, 2, 0x63, 'builtins\neval\n', 0x2e), 'builtins.eval'],
    ['STACK_GLOBAL os.system', pk(0x80, 4, 0x8c, 2, 'os', 0x8c, 6, 'system', 0x93, 0x2e), 'os.system'],
    ['INST', pk(0x80, 2, 0x28, 0x69, 'os\nsystem\n', 0x2e), 'INST'],
    ['NEWOBJ', pk(0x80, 2, 0x7d, 0x29, 0x81, 0x2e), 'NEWOBJ'],
    ['REDUCE on a plain value', pk(0x80, 2, 0x4b, 1, 0x29, 0x52, 0x2e), 'REDUCE'],
    ['BUILD on a list', pk(0x80, 2, 0x5d, 0x7d, 0x62, 0x2e), 'BUILD'],
  ])('rejects %s with ERR_DITFA_CHECKPOINT_UNSAFE_PICKLE', (_what, bytes, needle) => {
    const e = errorOf(() => unpickle(bytes));
    expect(e.code).toBe(CheckpointErrorCode.UnsafePickle);
    expect(e.message).toContain(needle);
  });

  it.each([
    ['a pickle without STOP', pk(0x80, 2, 0x7d)],
    ['a truncated BINUNICODE', pk(0x80, 2, 0x58, 10, 0, 0, 0, 'ab')],
    ['a memo get of a missing entry', pk(0x80, 2, 0x68, 3, 0x2e)],
    ['SETITEMS without a dict', pk(0x80, 2, 0x5d, 0x28, 0x4b, 1, 0x4b, 2, 0x75, 0x2e)],
    ['TUPLE without MARK', pk(0x80, 2, 0x4b, 1, 0x74, 0x2e)],
  ])('rejects %s as corrupt', (_what, bytes) => {
    expect(errorOf(() => unpickle(bytes)).code).toBe(CheckpointErrorCode.Corrupt);
  });

  it('refuses a dict that contains itself instead of recursing forever', () => {
    // d = {}; d['self'] = d  (EMPTY_DICT, BINPUT 0, SHORT_BINUNICODE 'self', BINGET 0, SETITEM)
    const bytes = pk(0x80, 2, 0x7d, 0x71, 0, 0x8c, 4, 'self', 0x68, 0, 0x73, 0x2e);
    const zipWith = (pkl: Uint8Array): Uint8Array => {
      // a minimal stored zip with archive/data.pkl
      const name = Buffer.from('archive/data.pkl');
      const crc = zlib.crc32(pkl) >>> 0;
      const local = Buffer.alloc(30);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt32LE(crc, 14);
      local.writeUInt32LE(pkl.length, 18);
      local.writeUInt32LE(pkl.length, 22);
      local.writeUInt16LE(name.length, 26);
      const central = Buffer.alloc(46);
      central.writeUInt32LE(0x02014b50, 0);
      central.writeUInt32LE(crc, 16);
      central.writeUInt32LE(pkl.length, 20);
      central.writeUInt32LE(pkl.length, 24);
      central.writeUInt16LE(name.length, 28);
      const cdOffset = 30 + name.length + pkl.length;
      const end = Buffer.alloc(22);
      end.writeUInt32LE(0x06054b50, 0);
      end.writeUInt16LE(1, 8);
      end.writeUInt16LE(1, 10);
      end.writeUInt32LE(46 + name.length, 12);
      end.writeUInt32LE(cdOffset, 16);
      return new Uint8Array(Buffer.concat([local, name, pkl, central, name, end]));
    };
    const e = errorOf(() => loadCheckpoint(zipWith(bytes)));
    expect(e.code).toBe(CheckpointErrorCode.Corrupt);
    expect(e.message).toContain('contains itself');
    // the same hand-made zip with a plain {} loads as an empty checkpoint
    expect(loadCheckpoint(zipWith(pk(0x80, 2, 0x7d, 0x2e))).tensors.size).toBe(0);
  });

  it('checks that a strided view stays inside its storage', () => {
    const storage = new Uint8Array(4 * 6);
    expect(errorOf(() => gatherStrided(storage, 6, { offset: 1, size: [2, 3], stride: [3, 1] }, 4, 't')).code).toBe(CheckpointErrorCode.Corrupt);
    expect(gatherStrided(storage, 6, { offset: 0, size: [2, 3], stride: [3, 1] }, 4, 't').byteLength).toBe(24);
  });
});
