import { ErrorCode, type Tensor, type WindowSpec } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { CPU_MAX_HEAD_DIM, cpuBackendStatus, createCpuBackend } from '../src/base.js';
import { NativeOp, loadNative, type NativeRunArgs } from '../src/binding.js';
import { randomTensor, rng } from './helpers.js';

const status = cpuBackendStatus();

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

describe.skipIf(!status.available)('argument validation before native memory is touched', () => {
  const backend = createCpuBackend();
  const next = rng(3);
  const shape = [2, 12, 3, 8];
  const q = randomTensor(shape, next);
  const k = randomTensor(shape, next);
  const v = randomTensor(shape, next);

  it('rejects data lengths that disagree with the shape', () => {
    const short: Tensor = { data: q.data.subarray(1), shape };
    expect(codeOf(() => backend.attentionSync(short, k, v))).toBe(ErrorCode.ShapeMismatch);
    expect(codeOf(() => backend.windowAttentionSync(q, { data: k.data, shape: [2, 12, 3, 4] }, v, { kind: '1d', size: 1 }))).toBe(
      ErrorCode.ShapeMismatch,
    );
  });

  it('rejects a negative or fractional window, and bad grids', () => {
    expect(codeOf(() => backend.windowAttentionSync(q, k, v, { kind: '1d', size: -3 }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => backend.windowAttentionSync(q, k, v, { kind: '1d', size: 1.5 }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => backend.fullWithResidualSync(q, k, v, { kind: '2d', rows: 3, cols: 5, radius: 1 }))).toBe(ErrorCode.ShapeMismatch);
    expect(codeOf(() => backend.windowAttentionSync(q, k, v, { kind: '2d', rows: 3, cols: 4, radius: -1 }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => backend.windowAttentionSync(q, k, v, { kind: '3d' } as unknown as WindowSpec))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => backend.windowAttentionSync(q, k, v, undefined as unknown as WindowSpec))).toBe(ErrorCode.InvalidArgument);
  });

  it('rejects head sizes above the limit and window attention across different lengths', () => {
    const big = [1, 2, 1, CPU_MAX_HEAD_DIM + 1];
    const t = randomTensor(big, next);
    expect(codeOf(() => backend.attentionSync(t, t, t))).toBe(ErrorCode.InvalidArgument);
    const kLong = randomTensor([2, 13, 3, 8], next);
    expect(codeOf(() => backend.windowAttentionSync(q, kLong, kLong, { kind: '1d', size: 1 }))).toBe(ErrorCode.ShapeMismatch);
  });

  it('rejects outputs that overlap the inputs, a residual of the wrong shape and a bad out', () => {
    expect(codeOf(() => backend.attentionSync(q, k, v, { out: q }))).toBe(ErrorCode.InvalidArgument);
    const w: WindowSpec = { kind: '1d', size: 2 };
    const r = randomTensor(shape, next);
    expect(codeOf(() => backend.windowWithResidualSync(q, k, v, w, r, { out: r }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => backend.windowWithResidualSync(q, k, v, w, randomTensor([2, 12, 3, 4], next)))).toBe(ErrorCode.ShapeMismatch);
    const out = randomTensor(shape, next);
    expect(codeOf(() => backend.fullWithResidualSync(q, k, v, w, { out, residualOut: out }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => backend.attentionSync(q, k, v, { out: randomTensor([2, 12, 3, 7], next) }))).toBe(ErrorCode.ShapeMismatch);
    expect(codeOf(() => backend.attentionSync(q, k, v, { scale: Number.NaN }))).toBe(ErrorCode.InvalidArgument);
  });

  it('rejects bf16 where the CPU lacks it, and unknown compute types', () => {
    if (!status.computeDtypes.includes('bf16')) {
      expect(codeOf(() => backend.attentionSync(q, k, v, { compute: 'bf16' }))).toBe(ErrorCode.InvalidArgument);
    }
    expect(codeOf(() => backend.attentionSync(q, k, v, { compute: 'fp16' as 'fp32' }))).toBe(ErrorCode.InvalidArgument);
  });

  it('async kernels reject (never crash) on bad input', async () => {
    await expect(backend.windowAttention(q, k, v, { kind: '1d', size: -1 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
  });

  it('the native layer checks again on its own: wrong lengths, types, ranges and aliasing', () => {
    const native = loadNative().addon!;
    const n = q.data.length;
    const ok: NativeRunArgs = [NativeOp.Full, q.data, k.data, v.data, new Float32Array(n), new Float32Array(0), 2, 12, 12, 3, 8, 0.3, 0, 0, 0, 0, 0, 0];
    native.runSync(...ok);
    const bad = (i: number, value: unknown): NativeRunArgs => ok.map((x, j) => (j === i ? value : x)) as NativeRunArgs;
    expect(codeOf(() => native.runSync(...bad(1, q.data.subarray(0, n - 1))))).toBe(ErrorCode.ShapeMismatch);
    expect(codeOf(() => native.runSync(...bad(2, new Float64Array(n))))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => native.runSync(...bad(4, new Float32Array(n + 1))))).toBe(ErrorCode.ShapeMismatch);
    expect(codeOf(() => native.runSync(...bad(4, q.data)))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => native.runSync(...bad(10, 300)))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => native.runSync(...bad(10, 2.5)))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => native.runSync(...bad(11, Number.POSITIVE_INFINITY)))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => native.runSync(...bad(6, -1)))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => native.runSync(...bad(0, 7)))).toBe(ErrorCode.InvalidArgument);
    // Window ops: a grid that does not hold L tokens, a missing residual, a window on full attention.
    const grid = (rows: number, cols: number): NativeRunArgs =>
      [NativeOp.Window, q.data, k.data, v.data, new Float32Array(n), new Float32Array(0), 2, 12, 12, 3, 8, 0.3, 0, 2, 0, rows, cols, 1] as NativeRunArgs;
    native.runSync(...grid(3, 4));
    expect(codeOf(() => native.runSync(...grid(5, 3)))).toBe(ErrorCode.ShapeMismatch);
    expect(codeOf(() => native.runSync(...grid(0, 4)))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => native.runSync(...bad(0, NativeOp.WindowResidual)))).toBe(ErrorCode.ShapeMismatch);
    expect(codeOf(() => native.runSync(...bad(13, 1)))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => native.runSync(...(ok.slice(0, 10) as unknown as NativeRunArgs)))).toBe(ErrorCode.InvalidArgument);
  });
});

describe('loading', () => {
  it('the addon is built here (set DITFA_KERNELS_CPU_SKIP_BUILD=1 where it is skipped on purpose)', () => {
    if (process.env['DITFA_KERNELS_CPU_SKIP_BUILD'] === '1') return;
    expect(status.errors).toEqual([]);
    expect(status.available).toBe(true);
    expect(status.isas).toContain('scalar');
    expect(status.threads).toBeGreaterThanOrEqual(1);
  });
});
