import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCheckpoint, toFloat32, type CheckpointTensor } from '@ditfa/checkpoint';
import { tensor, type Tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { createSampler, diffusersAlphasCumprod, dpmSolverSigmas, guide, guideBatch, iddpmStep, iddpmTables, type Sampler } from '../src/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const golden = path.resolve(repoRoot, '../shared/fixtures/golden');
const samplersDir = path.join(golden, 'samplers');
const f = Math.fround;

/** The measure of the golden README: max |a − b| / max(|b|, 1). */
export function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!) / Math.max(Math.abs(b[k]!), 1));
  return m;
}

function ints(t: CheckpointTensor): number[] {
  return Array.from(new BigInt64Array(t.bytes.slice().buffer), Number);
}

/** The goldens' fake diffusers model: eps = 0.1·x + sin(t/100), in float32. */
function fakeEps(x: Tensor, t: number): Tensor {
  const s = f(Math.sin(f(t / 100)));
  const c = f(0.1);
  return tensor(x.data.map((v) => f(f(c * v) + s)), x.shape);
}

/** The goldens' fake IDDPM model: cat([0.1·x + sin(t/100), tanh(0.5·x)], dim=1). */
function fakeLearnedSigma(x: Tensor, t: number): Tensor {
  const [B, C] = x.shape as [number, number];
  const row = x.data.length / B;
  const eps = fakeEps(x, t).data;
  const out = new Float32Array(2 * x.data.length);
  for (let b = 0; b < B; b++) {
    out.set(eps.subarray(b * row, (b + 1) * row), 2 * b * row);
    for (let k = 0; k < row; k++) out[2 * b * row + row + k] = f(Math.tanh(f(0.5 * x.data[b * row + k]!)));
  }
  return tensor(out, [B, 2 * C, ...x.shape.slice(2)]);
}

/** The issue asks sampler loops within 1e-5 relative; the golden README suggests 1e-4. */
const TOL = 1e-4;

describe.skipIf(!existsSync(samplersDir))('samplers against the diffusers / DiT goldens', () => {
  const io = existsSync(samplersDir) ? loadCheckpoint(path.join(samplersDir, 'io.safetensors')).tensors : new Map<string, CheckpointTensor>();
  const get = (name: string): Float32Array => {
    const t = io.get(name);
    if (!t) throw new Error(`missing ${name}`);
    return toFloat32(t);
  };
  const xT = (): Tensor => tensor(get('xT'), [2, 4, 8, 8]);

  it('builds diffusers alphas_cumprod to within 1 float32 ulp', () => {
    const ref = get('dpmpp2m_ditconfig.alphas_cumprod');
    expect(maxRel(diffusersAlphasCumprod(), ref)).toBeLessThan(1e-7);
  });

  const loops: [string, 'dpmpp-2m' | 'ddim', number][] = [
    ['dpmpp2m_ditconfig', 'dpmpp-2m', 10],
    ['dpmpp2m_ditconfig', 'dpmpp-2m', 20],
    ['dpmpp2m_pixartconfig', 'dpmpp-2m', 10],
    ['dpmpp2m_pixartconfig', 'dpmpp-2m', 20],
    ['ddim_ditconfig', 'ddim', 10],
    ['ddim_ditconfig', 'ddim', 20],
  ];
  it.each(loops)('%s with %s, %i steps: timesteps equal, every step within 1e-5 relative', (sched, kind, steps) => {
    const prefix = `${sched}.steps${steps}`;
    const s: Sampler = createSampler({ kind, steps });
    expect(s.timesteps).toEqual(ints(io.get(`${prefix}.timesteps`)!));
    if (kind === 'dpmpp-2m') expect(maxRel(dpmSolverSigmas(s.timesteps), get(`${prefix}.sigmas`))).toBeLessThan(1e-6);
    const trajectory = get(`${prefix}.trajectory`);
    let x = xT();
    let worst = 0;
    for (let i = 0; i < s.steps; i++) {
      x = s.step(fakeEps(x, s.timesteps[i]!), i, x);
      worst = Math.max(worst, maxRel(x.data, trajectory.subarray(i * x.data.length, (i + 1) * x.data.length)));
    }
    const final = maxRel(x.data, get(`${prefix}.final`));
    expect(final, `final max rel ${final}`).toBeLessThan(TOL / 10);
    expect(worst, `trajectory max rel ${worst}`).toBeLessThan(TOL / 10);
  });

  it.each([10, 20])('IDDPM %i steps: timestep map, betas, first p_sample and full loop match DiT', (K) => {
    const prefix = `iddpm.steps${K}`;
    const tables = iddpmTables(K);
    expect(tables.timestepMap).toEqual(ints(io.get(`${prefix}.timestep_map`)!));
    const betasRef = new Float64Array(io.get(`${prefix}.betas_f64`)!.bytes.slice().buffer);
    expect(maxRel(tables.betas, betasRef)).toBeLessThan(1e-12);

    // one p_sample at index K-1 from xT
    const fs = `${prefix}.first_step`;
    const x = tensor(get(`${fs}.x_t`), [2, 4, 8, 8]);
    expect(ints(io.get(`${fs}.t_model`)!)).toEqual([tables.timestepMap[K - 1], tables.timestepMap[K - 1]]);
    const out = fakeLearnedSigma(x, tables.timestepMap[K - 1]!);
    expect(maxRel(out.data, get(`${fs}.model_out`))).toBeLessThan(1e-6);
    const detail = iddpmStep(tables, K - 1, tensor(get(`${fs}.model_out`), [2, 8, 8, 8]), x, tensor(get(`${fs}.noise`), [2, 4, 8, 8]));
    expect(maxRel(detail.predXstart, get(`${fs}.pred_xstart`))).toBeLessThan(1e-6);
    expect(maxRel(detail.mean, get(`${fs}.mean`))).toBeLessThan(1e-6);
    expect(maxRel(detail.logVariance, get(`${fs}.log_variance`))).toBeLessThan(1e-6);
    expect(maxRel(detail.sample, get(`${fs}.sample`))).toBeLessThan(1e-6);

    // full loop with the recorded noises
    const s = createSampler({ kind: 'iddpm', steps: K });
    expect(s.timesteps).toEqual([...tables.timestepMap].reverse());
    const noises = get(`${prefix}.noises`);
    const trajectory = get(`${prefix}.trajectory`);
    let xs = xT();
    const n = xs.data.length;
    let worst = 0;
    for (let i = 0; i < s.steps; i++) {
      const noise = s.needsNoise(i) ? tensor(noises.slice(i * n, (i + 1) * n), xs.shape) : undefined;
      xs = s.step(fakeLearnedSigma(xs, s.timesteps[i]!), i, xs, noise);
      worst = Math.max(worst, maxRel(xs.data, trajectory.subarray(i * n, (i + 1) * n)));
    }
    const final = maxRel(xs.data, get(`${prefix}.final`));
    expect(final, `final max rel ${final}`).toBeLessThan(TOL / 10);
    expect(worst, `trajectory max rel ${worst}`).toBeLessThan(TOL / 10);
  });
});

describe.skipIf(!existsSync(samplersDir))('IDDPM, Open-Sora variant', () => {
  it.each([10, 20])('%i steps: float32 respaced betas, first p_sample and full loop match Open-Sora v1.1', (K) => {
    const io = loadCheckpoint(path.join(samplersDir, 'io.safetensors')).tensors;
    const get = (name: string): Float32Array => toFloat32(io.get(name)!);
    const prefix = `iddpm.steps${K}`;
    const tables = iddpmTables(K, 'opensora');
    expect(Array.from(tables.betas, Math.fround)).toEqual(Array.from(get(`${prefix}.opensora.betas_f32`)));
    const fs = `${prefix}.first_step`;
    const x = tensor(get(`${fs}.x_t`), [2, 4, 8, 8]);
    const detail = iddpmStep(tables, K - 1, tensor(get(`${fs}.model_out`), [2, 8, 8, 8]), x, tensor(get(`${fs}.noise`), [2, 4, 8, 8]));
    expect(maxRel(detail.predXstart, get(`${prefix}.opensora.first_step.pred_xstart`))).toBeLessThan(2e-5);
    expect(maxRel(detail.logVariance, get(`${prefix}.opensora.first_step.log_variance`))).toBeLessThan(1e-6);
    expect(maxRel(detail.sample, get(`${prefix}.opensora.first_step.sample`))).toBeLessThan(1e-6);
    const s = createSampler({ kind: 'iddpm', steps: K, iddpmVariant: 'opensora' });
    const noises = get(`${prefix}.noises`);
    let xs = tensor(get('xT'), [2, 4, 8, 8]);
    const n = xs.data.length;
    for (let i = 0; i < s.steps; i++) {
      const noise = s.needsNoise(i) ? tensor(noises.slice(i * n, (i + 1) * n), xs.shape) : undefined;
      xs = s.step(fakeLearnedSigma(xs, s.timesteps[i]!), i, xs, noise);
    }
    const final = maxRel(xs.data, get(`${prefix}.opensora.final`));
    expect(final, `final max rel ${final}`).toBeLessThan(TOL / 10);
    // and the DiT variant is measurably elsewhere, as the README says (~1.7e-4)
    expect(maxRel(xs.data, get(`${prefix}.final`))).toBeGreaterThan(5e-5);
  });
});

const ditDir = path.join(golden, 'dit_b4_s8');
describe.skipIf(!existsSync(ditDir))('guidance against DiT forward_with_cfg', () => {
  it('guides channels 0-2 like the original and keeps the rest raw per half', () => {
    const io = loadCheckpoint(path.join(ditDir, 'io.safetensors')).tensors;
    const raw = tensor(toFloat32(io.get('cfg.output.raw_forward')!), [4, 8, 8, 8]);
    const ref = toFloat32(io.get('cfg.output.out')!);
    const batch = guideBatch(raw, { order: 'cond-first', scale: 4, channels: 3 });
    expect(maxRel(batch.data, ref)).toBeLessThan(1e-6);
    const half = guide(raw, { order: 'cond-first', scale: 4, channels: 3 });
    expect(maxRel(half.data, ref.subarray(0, half.data.length))).toBeLessThan(1e-6);
    // guiding every channel differs from the original (channel 3 and the variance channels)
    expect(maxRel(guide(raw, { order: 'cond-first', scale: 4 }).data, ref.subarray(0, half.data.length))).toBeGreaterThan(1e-3);
  });
});
