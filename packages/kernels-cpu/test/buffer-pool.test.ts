import { describe, expect, it } from 'vitest';
import { createCpuBackend, cpuBackendStatus } from '../src/base.js';
import { loadNative } from '../src/binding.js';

// The recycling pool behind the kernels' outputs: arrays of the asked length, writable, independent, and
// a pool whose idle bytes stay under its limit.
const native = loadNative().addon;

describe.skipIf(!cpuBackendStatus().available)('output buffer pool', () => {
  it('hands out independent writable arrays of the asked length, small ones from V8', () => {
    const a = native!.allocFloat32(1 << 20);
    const b = native!.allocFloat32(1 << 20);
    expect(a).toBeInstanceOf(Float32Array);
    expect([a.length, b.length]).toEqual([1 << 20, 1 << 20]);
    a.fill(1);
    b.fill(2);
    expect([a[12345], b[12345]]).toEqual([1, 2]);
    expect(native!.allocFloat32(10).length).toBe(10);
    expect(native!.allocFloat32(0).length).toBe(0);
    const s = native!.bufferPoolStats();
    expect(s.liveBytes).toBeGreaterThanOrEqual(2 * 4 * (1 << 20));
    expect(s.idleBytes).toBeLessThanOrEqual(s.limitBytes);
  });

  it('keeps at most the limit idle, and trims on request', () => {
    const before = native!.bufferPoolStats().limitBytes;
    try {
      native!.setBufferPoolLimit(0);
      expect(native!.bufferPoolStats().idleBytes).toBe(0);
      native!.trimBufferPool();
      expect(native!.bufferPoolStats().idleBytes).toBe(0);
    } finally {
      native!.setBufferPoolLimit(before);
    }
    expect(() => native!.setBufferPoolLimit(-1)).toThrow(/bytes/);
  });

  it("hands the pipeline pool memory through the backend's allocate, huge blocks included", () => {
    const backend = createCpuBackend();
    const before = native!.bufferPoolStats().liveBytes;
    // 5 MiB: at and above 4 MiB the pool aligns blocks for transparent huge pages
    const big = backend.allocate(5 << 18);
    expect(big).toBeInstanceOf(Float32Array);
    expect(big.length).toBe(5 << 18);
    expect(native!.bufferPoolStats().liveBytes - before).toBeGreaterThanOrEqual(5 << 20);
    big.fill(3);
    expect([big[0], big[big.length - 1]]).toEqual([3, 3]);
    expect(backend.allocate(7).length).toBe(7);
    for (const bad of [-1, 1.5, Number.NaN]) {
      expect(() => backend.allocate(bad)).toThrow(expect.objectContaining({ code: 'ERR_DITFA_INVALID_ARGUMENT' }));
    }
  });

  it('backs kernel outputs, which the kernels write whole', async () => {
    const backend = createCpuBackend();
    const shape = [1, 300, 2, 64];
    const q = { data: new Float32Array(300 * 128).map((_, i) => Math.sin(i)), shape };
    const first = await backend.attention(q, q, q);
    const again = await backend.attention(q, q, q);
    expect(Array.from(again.data)).toEqual(Array.from(first.data));
    expect(first.data.every(Number.isFinite)).toBe(true);
  });
});
