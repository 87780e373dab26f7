import { InvalidArgumentError, ShapeMismatchError, tensor, zeros, type Tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { CudaBackendImpl, type CudaDeviceInfo } from '../src/base.js';
import type { NativeBinding } from '../src/binding.js';

// Argument checking runs in TypeScript before any native call. A recording test double stands in for the
// addon: it keeps a log of calls and holds no memory, so these tests run on any machine and prove that a
// bad argument is rejected before the addon (and device memory) is touched.

function recordingBinding(): { binding: NativeBinding; calls: string[] } {
  const calls: string[] = [];
  let next = 1;
  const log =
    (name: string) =>
    (..._args: unknown[]): undefined => {
      calls.push(name);
      return undefined;
    };
  const binding: NativeBinding = {
    abiVersion: 1,
    libAbiVersion: 1,
    open: () => '',
    probe: () => {
      throw new Error('not used');
    },
    alloc: () => {
      calls.push('alloc');
      return next++;
    },
    free: log('free'),
    upload: log('upload'),
    download: log('download'),
    downloadAsync: async () => {
      calls.push('downloadAsync');
    },
    copy: log('copy'),
    convert: log('convert'),
    fill: log('fill'),
    cfgCopy: log('cfgCopy'),
    attention: log('attention'),
    synchronize: log('synchronize'),
    liveBuffers: () => ({ count: 0, bytes: 0 }),
  };
  return { binding, calls };
}

const device: CudaDeviceInfo = {
  name: 'test double',
  arch: 'sm_90',
  multiprocessors: 1,
  totalMemory: 0,
  sharedMemoryPerBlockOptin: 0,
  driverVersion: 'none',
  runtimeVersion: '13.0',
  deviceCount: 1,
  builtArchs: 'sm_90,compute_80',
};

function setup() {
  const { binding, calls } = recordingBinding();
  return { backend: new CudaBackendImpl(binding, device), calls };
}

const q = zeros([2, 8, 2, 72]);

describe('host-tensor calls validate before touching native memory', () => {
  const cases: Array<[string, (b: CudaBackendImpl) => Promise<unknown>, unknown]> = [
    ['q of rank 3', (b) => b.attention(zeros([2, 8, 72]), q, q), ShapeMismatchError],
    ['k and v of different shapes', (b) => b.attention(q, q, zeros([2, 9, 2, 72])), ShapeMismatchError],
    ['data shorter than the shape', (b) => b.attention({ data: new Float32Array(5), shape: [2, 8, 2, 72] } as Tensor, q, q), ShapeMismatchError],
    ['a head size above 256', (b) => b.attention(zeros([1, 2, 1, 257]), zeros([1, 2, 1, 257]), zeros([1, 2, 1, 257])), InvalidArgumentError],
    ['a non-finite scale', (b) => b.attention(q, q, q, { scale: Number.NaN }), InvalidArgumentError],
    ['an unknown compute type', (b) => b.attention(q, q, q, { compute: 'fp8' as 'fp32' }), InvalidArgumentError],
    ['a negative window', (b) => b.windowAttention(q, q, q, { kind: '1d', size: -3 }), InvalidArgumentError],
    ['a 2-D grid that does not hold L', (b) => b.windowAttention(q, q, q, { kind: '2d', rows: 3, cols: 3, radius: 1 }), ShapeMismatchError],
    ['window attention with Lq != Lkv', (b) => b.windowAttention(q, zeros([2, 4, 2, 72]), zeros([2, 4, 2, 72]), { kind: '1d', size: 1 }), ShapeMismatchError],
    ['an out of the wrong shape', (b) => b.attention(q, q, q, { out: zeros([2, 8, 2, 64]) }), ShapeMismatchError],
    ['a residual of the wrong shape', (b) => b.windowWithResidual(q, q, q, { kind: '1d', size: 2 }, zeros([2, 8, 2, 64])), ShapeMismatchError],
    ['the same tensor for out and residualOut', (b) => {
      const o = zeros(q.shape);
      return b.fullWithResidual(q, q, q, { kind: '1d', size: 2 }, { out: o, residualOut: o });
    }, InvalidArgumentError],
  ];
  for (const [name, call, type] of cases) {
    it(`rejects ${name}`, async () => {
      const { backend, calls } = setup();
      await expect(call(backend)).rejects.toBeInstanceOf(type);
      expect(calls).toEqual([]);
    });
  }

  it('frees every temporary device tensor after a call', async () => {
    const { backend, calls } = setup();
    const r = await backend.attention(q, q, q, { compute: 'bf16' });
    expect(r.shape).toEqual(q.shape);
    expect(calls.filter((c) => c === 'attention')).toHaveLength(1);
    expect(calls.filter((c) => c === 'alloc').length).toBe(calls.filter((c) => c === 'free').length);
    expect(backend.liveTensors()).toEqual({ count: 0, bytes: 0 });
  });
});

describe('device-tensor calls validate before the kernel is launched', () => {
  it('rejects mixed dtypes, foreign, disposed and aliased tensors', () => {
    const { backend, calls } = setup();
    const other = setup().backend;
    const a = backend.empty([1, 16, 2, 64], 'bf16');
    const f = backend.empty([1, 16, 2, 64], 'f32');
    const foreign = other.empty([1, 16, 2, 64], 'bf16');
    const dead = backend.empty([1, 16, 2, 64], 'bf16');
    dead.dispose();
    calls.length = 0;
    expect(() => backend.attentionDevice(a, a, f)).toThrow(InvalidArgumentError);
    expect(() => backend.attentionDevice(a, foreign, a)).toThrow(/another one/);
    expect(() => backend.attentionDevice(a, dead, a)).toThrow(/disposed/);
    expect(() => backend.attentionDevice(a, a, a, { out: a })).toThrow(/distinct/);
    expect(() => backend.windowWithResidualDevice(a, a, a, { kind: '1d', size: 3 }, f)).toThrow(ShapeMismatchError);
    expect(() => backend.attentionDevice(a, a, a, { path: 'wgmma' as 'auto' })).toThrow(InvalidArgumentError);
    expect(() => backend.cfgCopy(backend.empty([3, 4], 'f32'), 'cond-first')).toThrow(ShapeMismatchError);
    expect(() => backend.cfgCopy(a, 'first' as 'cond-first')).toThrow(InvalidArgumentError);
    expect(calls.filter((c) => c !== 'alloc')).toEqual([]);
  });

  it('passes the fused call the residual as out and the full output as full_out', () => {
    const calls: unknown[][] = [];
    const { binding } = recordingBinding();
    const b = new CudaBackendImpl({ ...binding, attention: (...args: unknown[]) => void calls.push(args) }, device);
    const x = b.empty([2, 8, 2, 72], 'bf16');
    const { out, residual } = b.fullWithResidualDevice(x, x, x, { kind: '1d', size: 2 });
    const args = calls[0]!;
    expect(args[3]).toBe(residual.handle('r'));
    expect(args[5]).toBe(out.handle('o'));
    expect(args.slice(6, 13)).toEqual([1, 2, 8, 8, 2, 72, 1 / Math.sqrt(72)]);
    expect(args.slice(13)).toEqual([1, 2, 0, 0, 0, 0]);
  });

  it('disposes everything it allocated when the backend is disposed', () => {
    const { backend } = setup();
    backend.empty([4], 'f32');
    backend.upload(tensor(new Float32Array(4), [4]), 'bf16');
    expect(backend.liveTensors().count).toBe(2);
    backend.dispose();
    expect(backend.liveTensors().count).toBe(0);
    expect(() => backend.empty([1])).toThrow(/disposed/);
  });
});
