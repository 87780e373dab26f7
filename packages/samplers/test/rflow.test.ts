import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCheckpoint, toFloat32, type CheckpointTensor } from '@ditfa/checkpoint';
import { concatBatch, tensor, type Tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import {
  createRng,
  createSampler,
  guide,
  rflowDeltas,
  rflowTimesteps,
  rflowTransformRatio,
  samplerFactory,
  splitLearnedSigma,
  validateSampler,
  validateSamplerFactory,
  type Sampler,
  type SamplerKind,
} from '../src/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const rflowDir = path.resolve(repoRoot, '../shared/fixtures/golden/samplers_rflow');
const f = Math.fround;

/** The measure of the golden README: max |a − b| / max(|b|, 1). */
function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!) / Math.max(Math.abs(b[k]!), 1));
  return m;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

/**
 * The fixture's fake STDiT3 on a doubled batch `[2B, C, ...]` (cond rows first):
 * `cat([0.1·x + sin(t/100) + 0.05·y_b, tanh(0.5·x)], dim=1)` with `y_b = 1` for the first B rows, in float32.
 */
function fakeModel(x: Tensor, t: number): Tensor {
  const [B2, C] = x.shape as [number, number];
  const row = x.data.length / B2;
  const s = f(Math.sin(f(t / 100)));
  const c = f(0.1);
  const yScale = f(0.05);
  const out = new Float32Array(2 * x.data.length);
  for (let b = 0; b < B2; b++) {
    const y = b < B2 / 2 ? yScale : 0;
    for (let k = 0; k < row; k++) {
      const v = x.data[b * row + k]!;
      out[2 * b * row + k] = f(f(f(c * v) + s) + y);
      out[2 * b * row + row + k] = f(Math.tanh(f(0.5 * v)));
    }
  }
  return tensor(out, [B2, 2 * C, ...x.shape.slice(2)]);
}

/** Drives a sampler through the public API as a pipeline does: doubled batch → guide → velocity → step. */
function runLoop(s: Sampler, z0: Tensor, cfgScale: number, each?: (i: number, z: Tensor) => void): Tensor {
  let z = tensor(z0.data.map((v) => v * s.initNoiseSigma), z0.shape);
  for (let i = 0; i < s.steps; i++) {
    const out = fakeModel(concatBatch([z, z]), s.timesteps[i]!);
    const guided = guide(out, { order: 'cond-first', scale: cfgScale });
    const v = s.wantsVariance ? guided : splitLearnedSigma(guided).eps;
    z = s.step(v, i, z); // rflow never needs noise
    each?.(i, z);
  }
  return z;
}

/** The issue asks every stored sample within 1e-4 · max(|b|, 1); case.json suggests 1e-5. */
const TOL = 1e-4;
const CASE_TOL = 1e-5;

interface CaseJson {
  readonly cfg_scale: number;
  readonly z_shape: number[];
  readonly additional_args: { readonly height: number; readonly width: number; readonly num_frames: number };
  readonly timestep_transform: { readonly this_case: { readonly ratio: number } };
  readonly scenarios: Record<string, { readonly use_timestep_transform: boolean; readonly runs: Record<string, Record<string, unknown>> }>;
}

describe.skipIf(!existsSync(rflowDir))('rflow against Open-Sora v1.2 RFLOW.sample (samplers_rflow golden)', () => {
  const io = existsSync(rflowDir) ? loadCheckpoint(path.join(rflowDir, 'io.safetensors')).tensors : new Map<string, CheckpointTensor>();
  const spec = existsSync(rflowDir) ? (JSON.parse(readFileSync(path.join(rflowDir, 'case.json'), 'utf8')) as CaseJson) : undefined;
  const get = (name: string): Float32Array => {
    const t = io.get(name);
    if (!t) throw new Error(`missing ${name}`);
    return toFloat32(t);
  };
  const transform = spec
    ? { height: spec.additional_args.height, width: spec.additional_args.width, frames: spec.additional_args.num_frames }
    : { height: 240, width: 426, frames: 51 };

  it('computes the transform ratio of the case (240×426, 51 frames → nf 15)', () => {
    // case.json quotes the ratio in float64; ours is the float32 chain of the official tensor code
    expect(Math.abs(rflowTransformRatio(transform) - spec!.timestep_transform.this_case.ratio)).toBeLessThan(2.4e-7);
  });

  const runs: [string, number][] = [
    ['rflow', 10],
    ['rflow', 30],
    ['rflow_transform', 10],
    ['rflow_transform', 30],
  ];
  it.each(runs)('%s, %i steps: float32 timesteps and dt exactly equal, every step within tolerance', (scen, steps) => {
    const prefix = `${scen}.steps${steps}`;
    const useTransform = spec!.scenarios[scen]!.use_timestep_transform;
    expect(useTransform).toBe(scen === 'rflow_transform');
    const s = createSampler({ kind: 'rflow', steps, ...(useTransform ? { timestepTransform: transform } : {}) });
    expect(validateSampler(s)).toBe(s);
    expect(s.name).toBe(useTransform ? 'rflow+transform(h=240,w=426,frames=51)' : 'rflow');
    expect(s.kind).toBe('rflow');
    expect(s.prediction).toBe('velocity');
    expect(s.wantsVariance).toBe(false);
    expect(s.initNoiseSigma).toBe(1);
    expect(s.steps).toBe(steps);

    // timesteps: exactly the float32 values the official code hands the model
    expect(s.timesteps).toEqual(Array.from(get(`${prefix}.timesteps`)));
    const dtKey = Object.keys(spec!.scenarios[scen]!.runs[String(steps)]!).find((k) => k.startsWith('dt'))!;
    expect(Array.from(rflowDeltas(s.timesteps))).toEqual((spec!.scenarios[scen]!.runs[String(steps)]![dtKey] as number[]).map(f));

    const zShape = spec!.z_shape;
    const z0 = tensor(get('z'), zShape);
    const n = z0.data.length;
    const trajectory = get(`${prefix}.trajectory`);
    let worst = 0;
    const z = runLoop(s, z0, spec!.cfg_scale, (i, zi) => {
      worst = Math.max(worst, maxRel(zi.data, trajectory.subarray(i * n, (i + 1) * n)));
    });
    const final = maxRel(z.data, get(`${prefix}.final`));
    expect(z.shape).toEqual(zShape);
    expect(final, `final max rel ${final}`).toBeLessThan(TOL);
    expect(worst, `trajectory max rel ${worst}`).toBeLessThan(TOL);
    // and the tighter bound the fixture itself suggests
    expect(Math.max(final, worst), `max rel ${Math.max(final, worst)}`).toBeLessThan(CASE_TOL);

    // a second generation after reset() is bit-identical
    s.reset();
    expect(Array.from(runLoop(s, z0, spec!.cfg_scale).data)).toEqual(Array.from(z.data));
  });

  it('a factory makes fresh samplers with the same name and numerics', () => {
    const factory = samplerFactory({ kind: 'rflow', timestepTransform: transform });
    expect(factory.name).toBe('rflow+transform(h=240,w=426,frames=51)');
    const a = factory.create({ steps: 10 });
    const b = factory.create({ steps: 10 });
    expect(a).not.toBe(b);
    expect(a.name).toBe(factory.name);
    expect(a.timesteps).toEqual(Array.from(get('rflow_transform.steps10.timesteps')));
    const z0 = tensor(get('z'), spec!.z_shape);
    expect(maxRel(runLoop(a, z0, 7).data, get('rflow_transform.steps10.final'))).toBeLessThan(CASE_TOL);
  });
});

describe('rflow timesteps and step', () => {
  it('uses (1 − i/N)·T as float32 and Euler steps down to t = 0', () => {
    expect(rflowTimesteps(10)).toEqual([1000, 900, 800, 700, 600, 500, 400, 300, 200, 100]);
    expect(rflowTimesteps(4, 500)).toEqual([500, 375, 250, 125]);
    const ts = rflowTimesteps(30);
    expect(ts.every((t) => t === f(t))).toBe(true);
    const dts = rflowDeltas(ts);
    // the last dt runs the time to 0: the float32 steps sum to ~1
    expect(Array.from(dts).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    expect(dts[29]).toBe(f(ts[29]! / 1000));
  });

  it('the transform is the identity ratio for a 512×512 image and shifts times up for large videos', () => {
    expect(rflowTransformRatio({ height: 512, width: 512, frames: 1 })).toBe(1);
    const plain = rflowTimesteps(10);
    const image = rflowTimesteps(10, 1000, { height: 512, width: 512, frames: 1 });
    expect(maxRel(image, plain)).toBeLessThan(1e-7);
    const video = rflowTimesteps(10, 1000, { height: 720, width: 1280, frames: 102 });
    video.forEach((t, i) => expect(t).toBeGreaterThanOrEqual(plain[i]!));
    expect(video[0]).toBe(1000);
  });

  it('z ← z + v·dt, elementwise in float32, for any rank', () => {
    const s = createSampler({ kind: 'rflow', steps: 2 });
    expect(s.needsNoise(0)).toBe(false);
    const x = tensor(Float32Array.from([1, 2, 3, 4]), [1, 1, 2, 2]);
    const v = tensor(Float32Array.from([0.5, -1, 0, 2]), [1, 1, 2, 2]);
    const y = s.step(v, 0, x);
    expect(Array.from(y.data)).toEqual([1.25, 1.5, 3, 5]);
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect(Array.from(s.step(v, 1, y).data)).toEqual([1.5, 1, 3, 6]);
  });

  it('rejects bad steps, transforms, options and step calls with coded errors', () => {
    const bad = 'ERR_DITFA_INVALID_ARGUMENT';
    for (const steps of [0, -1, 2.5, Number.NaN, '10', undefined, 1001]) {
      expect(codeOf(() => createSampler({ kind: 'rflow', steps: steps as number })), String(steps)).toBe(bad);
    }
    expect(messageOf(() => createSampler({ kind: 'rflow', steps: -3 }))).toMatch(/steps but received -3 \(number\)/);
    expect(codeOf(() => createSampler({ kind: 'rflow', steps: 10, numTimesteps: 0 }))).toBe(bad);
    expect(codeOf(() => createSampler({ kind: 'rflow', steps: 10, numTimesteps: 999.5 }))).toBe(bad);
    const good = { height: 240, width: 426, frames: 51 };
    for (const t of [
      { ...good, height: 0 },
      { ...good, height: Number.NaN },
      { ...good, width: -426 },
      { ...good, width: Number.POSITIVE_INFINITY },
      { ...good, width: '426' },
      { ...good, frames: 0 },
      { ...good, frames: 16 }, // 16 // 17 · 5 = 0 would give a zero ratio and NaN timesteps
      { ...good, frames: 51.5 },
      { height: 240, width: 426 },
      null,
      'big',
    ]) {
      expect(codeOf(() => createSampler({ kind: 'rflow', steps: 10, timestepTransform: t as never })), JSON.stringify(t)).toBe(bad);
      expect(codeOf(() => samplerFactory({ kind: 'rflow', timestepTransform: t as never })), JSON.stringify(t)).toBe(bad);
    }
    expect(messageOf(() => createSampler({ kind: 'rflow', steps: 10, timestepTransform: { ...good, frames: 16 } }))).toMatch(/frames/);
    expect(messageOf(() => createSampler({ kind: 'rflow', steps: 10, timestepTransform: { ...good, height: 0 } }))).toMatch(/height/);
    // options of another family
    expect(codeOf(() => createSampler({ kind: 'rflow', steps: 10, iddpmVariant: 'dit' } as never))).toBe(bad);
    expect(codeOf(() => createSampler({ kind: 'ddim', steps: 10, timestepTransform: good } as never))).toBe(bad);
    expect(codeOf(() => createSampler(null as never))).toBe(bad);
    expect(codeOf(() => samplerFactory({ kind: 'rflow' }).create({ steps: 0 }))).toBe(bad);
    // step shape and order
    const s = createSampler({ kind: 'rflow', steps: 3 });
    const x = tensor(new Float32Array(8), [2, 4]);
    expect(codeOf(() => s.step(tensor(new Float32Array(16), [2, 8]), 0, x))).toBe('ERR_DITFA_SHAPE_MISMATCH');
    expect(codeOf(() => s.step(x, 1, x))).toBe(bad);
  });
});

describe('the open Sampler contract', () => {
  it('names every built-in configuration; all built-ins pass validateSampler', () => {
    const cases: [Parameters<typeof createSampler>[0], string, string, boolean][] = [
      [{ kind: 'dpmpp-2m', steps: 5 }, 'dpmpp-2m', 'dpmpp-2m', false],
      [{ kind: 'ddim', steps: 5 }, 'ddim', 'ddim', false],
      [{ kind: 'iddpm', steps: 5 }, 'iddpm', 'iddpm', true],
      [{ kind: 'iddpm', steps: 5, iddpmVariant: 'opensora' }, 'iddpm-opensora', 'iddpm', true],
      [{ kind: 'rflow', steps: 5 }, 'rflow', 'rflow', false],
      [{ kind: 'rflow', steps: 5, numTimesteps: 500 }, 'rflow(T=500)', 'rflow', false],
      [{ kind: 'rflow', steps: 5, timestepTransform: { height: 240, width: 426, frames: 51 } }, 'rflow+transform(h=240,w=426,frames=51)', 'rflow', false],
    ];
    for (const [options, name, kind, wantsVariance] of cases) {
      const s = validateSampler(createSampler(options));
      expect([s.name, s.kind, s.wantsVariance]).toEqual([name, kind, wantsVariance]);
      expect(s.prediction).toBe(kind === 'rflow' ? 'velocity' : 'eps');
      const { steps, ...rest } = options;
      expect(samplerFactory(rest).create({ steps }).name).toBe(name);
      expect(samplerFactory(rest).name).toBe(name);
    }
  });

  it('accepts a kind typed as SamplerKind, as pipelines pass it', () => {
    const kinds: SamplerKind[] = ['dpmpp-2m', 'ddim', 'iddpm', 'rflow'];
    for (const kind of kinds) expect(createSampler({ kind, steps: 4 }).kind).toBe(kind);
  });

  it('validates a plugin sampler field by field', () => {
    const plugin = {
      name: 'euler-plugin',
      kind: 'euler',
      steps: 2,
      timesteps: [999, 499.5],
      initNoiseSigma: 14.6,
      prediction: 'v',
      wantsVariance: false,
      needsNoise: () => false,
      step: (out: Tensor) => out,
      reset: () => undefined,
    };
    expect(validateSampler(plugin)).toBe(plugin);
    const { step: _step, ...noStep } = plugin;
    expect(codeOf(() => validateSampler(noStep))).toBe('ERR_DITFA_INVALID_ARGUMENT');
    expect(messageOf(() => validateSampler(noStep))).toBe("Expected the sampler's step to be a function but received undefined");
    const broken: [Record<string, unknown>, RegExp][] = [
      [{ name: '' }, /name/],
      [{ kind: 3 }, /kind/],
      [{ steps: 0 }, /steps/],
      [{ timesteps: [999] }, /timesteps/],
      [{ timesteps: [999, Number.NaN] }, /timesteps\[1\]/],
      [{ initNoiseSigma: -1 }, /initNoiseSigma/],
      [{ prediction: 'x0' }, /prediction/],
      [{ wantsVariance: 'no' }, /wantsVariance/],
      [{ needsNoise: undefined }, /needsNoise/],
      [{ reset: 1 }, /reset/],
    ];
    for (const [patch, field] of broken) {
      const s = { ...plugin, ...patch };
      expect(codeOf(() => validateSampler(s)), JSON.stringify(patch)).toBe('ERR_DITFA_INVALID_ARGUMENT');
      expect(messageOf(() => validateSampler(s))).toMatch(field);
    }
    for (const v of [null, undefined, 'rflow', 3]) expect(codeOf(() => validateSampler(v))).toBe('ERR_DITFA_INVALID_ARGUMENT');
    const factory = { create: () => plugin };
    expect(validateSamplerFactory(factory)).toBe(factory);
    expect(codeOf(() => validateSamplerFactory({ make: () => plugin }))).toBe('ERR_DITFA_INVALID_ARGUMENT');
    expect(codeOf(() => validateSamplerFactory(null))).toBe('ERR_DITFA_INVALID_ARGUMENT');
  });
});

describe('guidance on 5-D video outputs', () => {
  it('guides [2B, 2C, T, H, W] per element; first half of channels before or after guidance agree', () => {
    const rng = createRng(3);
    const out = rng.randn([4, 8, 3, 6, 8]); // [2B = 4, 2C = 8, T, H, W], cond rows first
    const row = out.data.length / 4;
    const guided = guide(out, { order: 'cond-first', scale: 7 });
    expect(guided.shape).toEqual([2, 8, 3, 6, 8]);
    for (let b = 0; b < 2; b++) {
      for (let k = 0; k < row; k++) {
        const c = out.data[b * row + k]!;
        const u = out.data[(b + 2) * row + k]!;
        expect(guided.data[b * row + k]).toBe(f(u + f(f(7) * f(c - u))));
      }
    }
    // Open-Sora: v = out.chunk(2, dim=1)[0]; v_cond, v_uncond = v.chunk(2, dim=0); guide
    const firstHalfThenGuide = guide(splitLearnedSigma(out).eps, { order: 'cond-first', scale: 7 });
    const guideThenFirstHalf = splitLearnedSigma(guided).eps;
    expect(firstHalfThenGuide.shape).toEqual([2, 4, 3, 6, 8]);
    expect(Array.from(guideThenFirstHalf.data)).toEqual(Array.from(firstHalfThenGuide.data));
    // guiding only the velocity channels leaves the sigma half from the cond rows
    const velocityOnly = guide(out, { order: 'cond-first', scale: 7, channels: 4 });
    expect(Array.from(splitLearnedSigma(velocityOnly).eps.data)).toEqual(Array.from(firstHalfThenGuide.data));
    expect(Array.from(splitLearnedSigma(velocityOnly).variance.data)).toEqual(Array.from(splitLearnedSigma(out).variance.data.subarray(0, row))); // cond rows: 2 × row/2
  });
});
