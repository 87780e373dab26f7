import { describe, expect, it } from 'vitest';
import { ErrorCode, broadcastCfg, cfgHalves, concatBatch, sliceBatch, tensor, zeros } from '../src/index.js';

describe('tensors', () => {
  it('checks data length against the shape', () => {
    expect(() => tensor(new Float32Array(5), [2, 3])).toThrow(expect.objectContaining({ code: ErrorCode.ShapeMismatch }));
    expect(() => tensor(new Float32Array(6), [2, -3])).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(() => tensor([1, 2] as never, [2])).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(zeros([2, 3]).data.length).toBe(6);
  });

  it('slices the batch as a view without copying', () => {
    const t = tensor(Float32Array.from({ length: 12 }, (_, i) => i), [4, 3]);
    const s = sliceBatch(t, 1, 3);
    expect(s.shape).toEqual([2, 3]);
    expect([...s.data]).toEqual([3, 4, 5, 6, 7, 8]);
    expect(s.data.buffer).toBe(t.data.buffer);
    expect(() => sliceBatch(t, 3, 5)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
  });

  it('splits CFG halves from the stated side, for both orders', () => {
    const t = tensor(Float32Array.from({ length: 8 }, (_, i) => i), [4, 2]);
    const first = cfgHalves(t, { order: 'cond-first' });
    expect([...first.cond.data]).toEqual([0, 1, 2, 3]);
    expect([...first.uncond.data]).toEqual([4, 5, 6, 7]);
    expect(first.condStart).toBe(0);
    const second = cfgHalves(t, { order: 'cond-second' });
    expect([...second.cond.data]).toEqual([4, 5, 6, 7]);
    expect([...second.uncond.data]).toEqual([0, 1, 2, 3]);
    expect(second.condStart).toBe(2);
    expect(second.cond.data.buffer).toBe(t.data.buffer);
    expect(() => cfgHalves(tensor(new Float32Array(6), [3, 2]), { order: 'cond-first' })).toThrow(
      expect.objectContaining({ code: ErrorCode.ShapeMismatch }),
    );
  });

  it('concatenates and broadcasts along the batch', () => {
    const a = tensor(Float32Array.of(1, 2), [1, 2]);
    const b = tensor(Float32Array.of(3, 4, 5, 6), [2, 2]);
    expect([...concatBatch([a, b]).data]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(broadcastCfg(a).shape).toEqual([2, 2]);
    expect([...broadcastCfg(a).data]).toEqual([1, 2, 1, 2]);
    expect(() => concatBatch([a, tensor(new Float32Array(3), [1, 3])])).toThrow(expect.objectContaining({ code: ErrorCode.ShapeMismatch }));
  });

  it('concatenates into memory an allocator supplies, overwriting whatever it held', () => {
    const a = tensor(Float32Array.of(1, 2), [1, 2]);
    const b = tensor(Float32Array.of(3, 4, 5, 6), [2, 2]);
    const given = new Float32Array(6).fill(Number.NaN);
    const lengths: number[] = [];
    const out = concatBatch([a, b], (n) => (lengths.push(n), given));
    expect(out.data).toBe(given);
    expect(lengths).toEqual([6]);
    expect([...out.data]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(out.shape).toEqual([3, 2]);
    expect(() => concatBatch([a, b], () => new Float32Array(5))).toThrow(
      expect.objectContaining({ code: ErrorCode.ShapeMismatch, message: expect.stringMatching(/allocator to return 6 floats/) }),
    );
  });
});
