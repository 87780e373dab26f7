import {
  referenceAttention,
  referenceWindowAttention,
  type Tensor,
  type WindowSpec,
} from '@ditfa/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BF16_ERROR_BOUND, createCpuBackend, cpuBackendStatus } from '../src/base.js';
import { ISA_NAMES, NativeIsa, loadNative } from '../src/binding.js';
import { maxAbs, randomTensor, relError, rng } from './helpers.js';

// Parity of every native kernel, on every instruction-set path this CPU runs, against core's reference
// backend (float64). The cross product L × H × D × w × B is sampled: every value of each axis appears,
// and the reference's cost (B·H·D·L²) stays bounded so the suite runs in seconds.
const TOLERANCE = 1e-5;

const status = cpuBackendStatus();
const native = loadNative().addon;
const isas = ([NativeIsa.Scalar, NativeIsa.Avx2, NativeIsa.Avx512] as const).filter((i) => native && (native.supportedIsas() & (1 << i)) !== 0);

interface Case {
  readonly B: number;
  readonly L: number;
  readonly H: number;
  readonly D: number;
  readonly windows: readonly WindowSpec[];
}

function oneD(L: number): WindowSpec[] {
  return [0, 1, 5, Math.floor(L / 8), L, L + 3].map((size) => ({ kind: '1d', size }));
}

const cases: Case[] = [
  // L = 1
  { B: 1, L: 1, H: 1, D: 8, windows: oneD(1) },
  { B: 3, L: 1, H: 16, D: 128, windows: oneD(1) },
  // L = 7
  { B: 2, L: 7, H: 3, D: 32, windows: oneD(7) },
  { B: 1, L: 7, H: 16, D: 80, windows: oneD(7) },
  { B: 3, L: 7, H: 1, D: 72, windows: oneD(7) },
  // L = 64
  { B: 1, L: 64, H: 16, D: 72, windows: oneD(64) },
  { B: 2, L: 64, H: 3, D: 128, windows: oneD(64) },
  { B: 3, L: 64, H: 1, D: 8, windows: oneD(64) },
  // L = 257
  { B: 1, L: 257, H: 3, D: 128, windows: oneD(257) },
  { B: 2, L: 257, H: 3, D: 80, windows: oneD(257) },
  { B: 3, L: 257, H: 1, D: 32, windows: oneD(257) },
  { B: 1, L: 257, H: 1, D: 72, windows: oneD(257) },
  // L = 1024 (the reference's slow end)
  { B: 1, L: 1024, H: 1, D: 72, windows: [0, 5, 128, 1024].map((size) => ({ kind: '1d', size }) as const) },
  // long enough (Lkv·D·8 > 1 MiB, H > 1) for the fp32 paths to copy K and V into contiguous blocks first
  { B: 1, L: 1700, H: 2, D: 80, windows: [0, 212].map((size) => ({ kind: '1d', size }) as const) },
  // between 256 KiB and 1 MiB: full attention and the fused call copy K and V, window calls read them in place
  { B: 1, L: 600, H: 2, D: 72, windows: [0, 75].map((size) => ({ kind: '1d', size }) as const) },
  // head sizes at the edges: 1, odd, and the largest accepted
  { B: 2, L: 33, H: 1, D: 1, windows: oneD(33) },
  { B: 1, L: 17, H: 3, D: 255, windows: oneD(17) },
  { B: 1, L: 40, H: 2, D: 256, windows: oneD(40) },
  // 2-D grids with odd sides, radius 0, small, and covering the grid
  { B: 2, L: 63, H: 3, D: 32, windows: [0, 1, 2, 8].map((radius) => ({ kind: '2d', rows: 7, cols: 9, radius }) as const) },
  { B: 1, L: 65, H: 16, D: 72, windows: [1, 3, 12].map((radius) => ({ kind: '2d', rows: 13, cols: 5, radius }) as const) },
  { B: 1, L: 7, H: 1, D: 8, windows: [0, 2, 6].map((radius) => ({ kind: '2d', rows: 1, cols: 7, radius }) as const) },
  { B: 3, L: 9, H: 3, D: 80, windows: [0, 4].map((radius) => ({ kind: '2d', rows: 9, cols: 1, radius }) as const) },
  { B: 1, L: 255, H: 3, D: 72, windows: [1, 2, 5, 16].map((radius) => ({ kind: '2d', rows: 15, cols: 17, radius }) as const) },
  { B: 1, L: 1023, H: 1, D: 72, windows: [2, 7].map((radius) => ({ kind: '2d', rows: 31, cols: 33, radius }) as const) },
];

function windowName(w: WindowSpec): string {
  return w.kind === '1d' ? `w=${w.size}` : `${w.rows}x${w.cols} r=${w.radius}`;
}

describe.skipIf(!status.available)('native kernels vs the reference backend', () => {
  const backend = createCpuBackend();
  afterAll(() => native?.forceIsa(-1));

  for (const [index, c] of cases.entries()) {
    const shape = [c.B, c.L, c.H, c.D];
    describe(`B=${c.B} L=${c.L} H=${c.H} D=${c.D}`, () => {
      const next = rng(1000 + index);
      const q = randomTensor(shape, next, 2);
      const k = randomTensor(shape, next, 2);
      const v = randomTensor(shape, next);
      const residual = randomTensor(shape, next);
      const full = referenceAttention(q, k, v);
      const windows = c.windows.map((w) => ({ w, ref: referenceWindowAttention(q, k, v, w) }));
      const fullScale = maxAbs(full.data);

      for (const isa of isas) {
        it(`${ISA_NAMES[isa]}: full, window, fused and window+residual within ${TOLERANCE} of the output scale`, () => {
          native!.forceIsa(isa);
          expect(relError(backend.attentionSync(q, k, v).data, full.data)).toBeLessThanOrEqual(TOLERANCE);
          for (const { w, ref } of windows) {
            const label = `${ISA_NAMES[isa]} ${windowName(w)}`;
            expect(relError(backend.windowAttentionSync(q, k, v, w).data, ref.data), `window ${label}`).toBeLessThanOrEqual(TOLERANCE);
            const fused = backend.fullWithResidualSync(q, k, v, w);
            expect(relError(fused.out.data, full.data), `fused out ${label}`).toBeLessThanOrEqual(TOLERANCE);
            const expectedResidual = full.data.map((x, i) => x - ref.data[i]!);
            expect(relError(fused.residual.data, expectedResidual, fullScale), `fused residual ${label}`).toBeLessThanOrEqual(TOLERANCE);
            const withResidual = backend.windowWithResidualSync(q, k, v, w, residual);
            const expected = ref.data.map((x, i) => x + residual.data[i]!);
            expect(relError(withResidual.data, expected), `window+residual ${label}`).toBeLessThanOrEqual(TOLERANCE);
          }
        });
      }
    });
  }

  it('cross-attention (Lq ≠ Lkv), a custom scale and a caller-provided out tensor', async () => {
    const next = rng(7);
    const q = randomTensor([2, 37, 3, 72], next);
    const k = randomTensor([2, 300, 3, 72], next);
    const v = randomTensor([2, 300, 3, 72], next);
    const ref = referenceAttention(q, k, v, { scale: 0.31 });
    for (const isa of isas) {
      native!.forceIsa(isa);
      const out: Tensor = { data: new Float32Array(q.data.length), shape: q.shape };
      const got = await backend.attention(q, k, v, { scale: 0.31, out });
      expect(got.data).toBe(out.data);
      expect(relError(out.data, ref.data)).toBeLessThanOrEqual(TOLERANCE);
    }
  });

  it('async kernels equal their sync twins bit for bit', async () => {
    native!.forceIsa(-1);
    const next = rng(11);
    const shape = [2, 130, 3, 40];
    const [q, k, v, r] = [randomTensor(shape, next), randomTensor(shape, next), randomTensor(shape, next), randomTensor(shape, next)];
    const w: WindowSpec = { kind: '1d', size: 9 };
    expect((await backend.attention(q, k, v)).data).toEqual(backend.attentionSync(q, k, v).data);
    expect((await backend.windowAttention(q, k, v, w)).data).toEqual(backend.windowAttentionSync(q, k, v, w).data);
    const a = await backend.fullWithResidual(q, k, v, w);
    const b = backend.fullWithResidualSync(q, k, v, w);
    expect(a.out.data).toEqual(b.out.data);
    expect(a.residual.data).toEqual(b.residual.data);
    expect((await backend.windowWithResidual(q, k, v, w, r)).data).toEqual(backend.windowWithResidualSync(q, k, v, w, r).data);
    // Several calls in flight at once share the pool one after another.
    const expected = backend.attentionSync(q, k, v).data;
    const results = await Promise.all([1, 2, 3].map(() => backend.attention(q, k, v)));
    for (const res of results) expect(res.data).toEqual(expected);
  });

  it('gives the same bits with 1 thread and with 3', () => {
    native!.forceIsa(-1);
    const next = rng(13);
    const shape = [3, 200, 5, 24];
    const [q, k, v] = [randomTensor(shape, next), randomTensor(shape, next), randomTensor(shape, next)];
    const before = native!.threadCount();
    try {
      backend.setThreads(1);
      expect(backend.capabilities().threads).toBe(1);
      const one = backend.fullWithResidualSync(q, k, v, { kind: '1d', size: 20 });
      backend.setThreads(3);
      const three = backend.fullWithResidualSync(q, k, v, { kind: '1d', size: 20 });
      expect(three.out.data).toEqual(one.out.data);
      expect(three.residual.data).toEqual(one.residual.data);
    } finally {
      backend.setThreads(before);
    }
  });

  it('fused call stays exact when the window scores sit far below the full maximum (underflow fallback)', () => {
    // Keys 0..23 score ~115 (165 in log2 units, past fp32's 2^-126) above every other key. For queries
    // from 26 on they lie outside the 1-token band and come first in the sweep: relative to their maximum
    // the window's probabilities underflow to zero, so the kernel must notice and recompute the window.
    const L = 64;
    const D = 8;
    const q = { data: new Float32Array(L * D), shape: [1, L, 1, D] };
    const k = { data: new Float32Array(L * D), shape: [1, L, 1, D] };
    const v = randomTensor([1, L, 1, D], rng(17));
    for (let i = 0; i < L; i++) {
      q.data[i * D] = 18;
      q.data[i * D + 1] = ((i % 5) - 2) * 0.3;
      k.data[i * D + 1] = ((i % 3) - 1) * 0.5;
      if (i < 24) k.data[i * D] = 18;
    }
    const w: WindowSpec = { kind: '1d', size: 1 };
    const full = referenceAttention(q, k, v);
    const win = referenceWindowAttention(q, k, v, w);
    const expected = full.data.map((x, i) => x - win.data[i]!);
    for (const isa of isas) {
      native!.forceIsa(isa);
      const got = backend.fullWithResidualSync(q, k, v, w);
      expect(relError(got.out.data, full.data)).toBeLessThanOrEqual(TOLERANCE);
      expect(relError(got.residual.data, expected, maxAbs(full.data))).toBeLessThanOrEqual(TOLERANCE);
    }
  });
});

const bf16Isas = ([NativeIsa.Avx512Bf16, NativeIsa.AmxBf16] as const).filter((i) => native && (native.supportedIsas() & (1 << i)) !== 0);

describe.skipIf(!status.computeDtypes.includes('bf16')).each(bf16Isas.map((isa) => [ISA_NAMES[isa], isa] as const))('bf16 compute within its documented bound (%s)', (_name, isa) => {
  const backend = createCpuBackend();
  beforeAll(() => native!.forceBf16Isa(isa));
  afterAll(() => native!.forceBf16Isa(-1));
  const bf16Cases = [
    { B: 1, L: 7, H: 1, D: 8, w: { kind: '1d', size: 1 } },
    { B: 2, L: 257, H: 3, D: 72, w: { kind: '1d', size: 32 } },
    { B: 1, L: 130, H: 2, D: 33, w: { kind: '1d', size: 1000 } },
    { B: 1, L: 63, H: 16, D: 128, w: { kind: '2d', rows: 7, cols: 9, radius: 2 } },
  ] as const;
  for (const [index, c] of bf16Cases.entries()) {
    it(`B=${c.B} L=${c.L} H=${c.H} D=${c.D} ${windowName(c.w)}`, async () => {
      const next = rng(500 + index);
      const shape = [c.B, c.L, c.H, c.D];
      const [q, k, v, r] = [randomTensor(shape, next, 2), randomTensor(shape, next, 2), randomTensor(shape, next), randomTensor(shape, next)];
      const full = referenceAttention(q, k, v);
      const win = referenceWindowAttention(q, k, v, c.w);
      const scale = maxAbs(full.data);
      const opts = { compute: 'bf16' } as const;
      const got = await backend.attention(q, k, v, opts);
      const err = relError(got.data, full.data);
      expect(err).toBeLessThanOrEqual(BF16_ERROR_BOUND);
      // bf16 really is in use: exact fp32 would be ~1e-7 from the reference.
      expect(err).toBeGreaterThan(1e-5);
      expect(relError((await backend.windowAttention(q, k, v, c.w, opts)).data, win.data)).toBeLessThanOrEqual(BF16_ERROR_BOUND);
      const fused = await backend.fullWithResidual(q, k, v, c.w, opts);
      expect(relError(fused.out.data, full.data)).toBeLessThanOrEqual(BF16_ERROR_BOUND);
      const residual = full.data.map((x, i) => x - win.data[i]!);
      expect(relError(fused.residual.data, residual, scale)).toBeLessThanOrEqual(BF16_ERROR_BOUND);
      const withResidual = await backend.windowWithResidual(q, k, v, c.w, r, opts);
      expect(relError(withResidual.data, win.data.map((x, i) => x + r.data[i]!))).toBeLessThanOrEqual(BF16_ERROR_BOUND);
    });
  }
});
