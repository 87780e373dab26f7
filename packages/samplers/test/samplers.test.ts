import { tensor, zeros } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import {
  createRng,
  createSampler,
  ddimTimesteps,
  dpmSolverTimesteps,
  guide,
  guideBatch,
  roundHalfEven,
  spaceTimesteps,
  splitLearnedSigma,
} from '../src/index.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('timesteps', () => {
  it('DPM-Solver linspace spacing matches MODELS.md for 20 steps', () => {
    expect(dpmSolverTimesteps(20)).toEqual([999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50]);
  });
  it('DDIM leading spacing: 50 steps → 980 … 0', () => {
    const t = ddimTimesteps(50);
    expect(t[0]).toBe(980);
    expect(t.at(-1)).toBe(0);
    expect(t).toHaveLength(50);
  });
  it('IDDPM respacing keeps {0, 4, …, 995, 999} for "250" and {0, 10, …, 989, 999} for "100"', () => {
    const k250 = spaceTimesteps(1000, '250');
    expect(k250).toHaveLength(250);
    expect(k250.slice(0, 3)).toEqual([0, 4, 8]);
    expect(k250.slice(-2)).toEqual([995, 999]);
    const k100 = spaceTimesteps(1000, 100);
    expect(k100.slice(0, 3)).toEqual([0, 10, 20]);
    expect(k100.slice(-3)).toEqual([979, 989, 999]);
    expect(spaceTimesteps(1000, '10')).toEqual([0, 111, 222, 333, 444, 555, 666, 777, 888, 999]);
  });
  it('rounds halves to even like Python', () => {
    expect([0.5, 1.5, 2.5, -0.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, 2, 3]);
  });
});

describe('sampler step objects', () => {
  const x = tensor(new Float32Array(2 * 4).map((_, k) => k - 3), [2, 4]);

  it('DPM-Solver++ returns x0 = (x − σ·ε)/α exactly at the final step (σ_next = 0, λ = +∞)', () => {
    const s = createSampler({ kind: 'dpmpp-2m', steps: 1 });
    const eps = tensor(new Float32Array(8).fill(0.25), [2, 4]);
    const out = s.step(eps, 0, x);
    const a = 1 / Math.sqrt(1 + (1 - 4.0358e-5) / 4.0358e-5);
    for (let k = 0; k < 8; k++) {
      expect(Number.isFinite(out.data[k]!)).toBe(true);
      expect(out.data[k]).toBeCloseTo((x.data[k]! - Math.sqrt(1 - a * a) * 0.25) / a, 1);
    }
  });

  it('enforces step order, shapes and noise, and resets', () => {
    const s = createSampler({ kind: 'dpmpp-2m', steps: 3 });
    expect(codeOf(() => s.step(zeros([2, 4]), 1, x))).toBe('ERR_DITFA_INVALID_ARGUMENT');
    expect(codeOf(() => s.step(zeros([2, 8]), 0, x))).toBe('ERR_DITFA_SHAPE_MISMATCH');
    const first = s.step(zeros([2, 4]), 0, x);
    s.reset();
    expect(Array.from(s.step(zeros([2, 4]), 0, x).data)).toEqual(Array.from(first.data));
    const iddpm = createSampler({ kind: 'iddpm', steps: 5 });
    expect(iddpm.wantsVariance).toBe(true);
    expect(iddpm.needsNoise(0)).toBe(true);
    expect(iddpm.needsNoise(4)).toBe(false);
    expect(codeOf(() => iddpm.step(zeros([2, 8]), 0, x))).toBe('ERR_DITFA_INVALID_ARGUMENT');
    expect(codeOf(() => iddpm.step(zeros([2, 4]), 0, x, zeros([2, 4])))).toBe('ERR_DITFA_SHAPE_MISMATCH');
    expect(codeOf(() => createSampler({ kind: 'euler' as never, steps: 5 }))).toBe('ERR_DITFA_INVALID_ARGUMENT');
    expect(codeOf(() => createSampler({ kind: 'ddim', steps: 0 }))).toBe('ERR_DITFA_INVALID_ARGUMENT');
  });

  it('DDIM with ε = 0 scales x by sqrt(ᾱ_prev/ᾱ_t) per step', () => {
    const s = createSampler({ kind: 'ddim', steps: 2 });
    expect(s.timesteps).toEqual([500, 0]);
    const y = s.step(zeros([2, 4]), 0, x);
    expect(y.data[0]! / x.data[0]!).toBeGreaterThan(1);
  });
});

describe('guidance', () => {
  // [2B=2, C=2, 2] rows: cond-second puts cond in row 1.
  const out = tensor(Float32Array.from([1, 1, 10, 10, 3, 3, 20, 20]), [2, 2, 2]);
  it('applies uncond + s·(cond − uncond) to the chosen channels, in either batch order', () => {
    expect(Array.from(guide(out, { order: 'cond-second', scale: 2 }).data)).toEqual([5, 5, 30, 30]);
    expect(Array.from(guide(out, { order: 'cond-first', scale: 2 }).data)).toEqual([-1, -1, 0, 0]);
    expect(Array.from(guide(out, { order: 'cond-second', scale: 2, channels: 1 }).data)).toEqual([5, 5, 20, 20]);
    expect(Array.from(guideBatch(out, { order: 'cond-second', scale: 2, channels: 1 }).data)).toEqual([5, 5, 10, 10, 5, 5, 20, 20]);
    expect(codeOf(() => guide(tensor(new Float32Array(6), [3, 2]), { order: 'cond-first', scale: 1 }))).toBe('ERR_DITFA_SHAPE_MISMATCH');
    expect(codeOf(() => guide(out, { order: 'cond-first', scale: 1, channels: 3 }))).toBe('ERR_DITFA_INVALID_ARGUMENT');
  });
  it('splits learned-sigma outputs into ε and variance values', () => {
    const { eps, variance } = splitLearnedSigma(out);
    expect(eps.shape).toEqual([2, 1, 2]);
    expect(Array.from(eps.data)).toEqual([1, 1, 3, 3]);
    expect(Array.from(variance.data)).toEqual([10, 10, 20, 20]);
  });
});

describe('seeded RNG', () => {
  it('matches an independent Python implementation of SplitMix64 + xoshiro128** + Box–Muller', () => {
    const rng = createRng(42);
    expect([0, 1, 2, 3, 4, 5].map(() => rng.nextUint32())).toEqual([1776835114, 4165204688, 17111135, 2317295270, 2792088233, 2554630222]);
    const g = createRng(42);
    expect(g.normal()).toBeCloseTo(1.0330460074021803, 14);
    expect(g.normal()).toBeCloseTo(0.025864784484702003, 14);
  });
  it('is reproducible per seed and standard normal in distribution', () => {
    const a = createRng(7).randn([4096]);
    expect(Array.from(createRng(7).randn([4096]).data)).toEqual(Array.from(a.data));
    expect(Array.from(createRng(8).randn([8]).data)).not.toEqual(Array.from(a.data.subarray(0, 8)));
    let mean = 0;
    let sq = 0;
    for (const v of a.data) (mean += v), (sq += v * v);
    mean /= a.data.length;
    const variance = sq / a.data.length - mean * mean;
    expect(Math.abs(mean)).toBeLessThan(0.06);
    expect(Math.abs(variance - 1)).toBeLessThan(0.08);
    const u = createRng(1);
    for (let k = 0; k < 1000; k++) {
      const v = u.uniform();
      expect(v >= 0 && v < 1).toBe(true);
    }
  });
});
