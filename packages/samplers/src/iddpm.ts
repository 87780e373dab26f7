import { InvalidArgumentError, ShapeMismatchError, expectInteger, tensor, type Tensor } from '@ditfa/core';
import type { Sampler } from './sampler.js';
import { TRAIN_TIMESTEPS, linearBetasF64, roundHalfEven } from './schedule.js';
import { checkSample, checkStepIndex, expectSameShape, f } from './util.js';

/**
 * IDDPM's `space_timesteps(num_timesteps, section_counts)`: the kept original timesteps, ascending.
 * `sections` is DiT's `str(K)` or a comma list (`"10,15,20"`); each section takes `count` steps with
 * fractional stride `(size − 1)/(count − 1)`, rounded as Python's `round()`.
 */
export function spaceTimesteps(numTimesteps: number, sections: string | number): number[] {
  const counts = String(sections).split(',').map((s) => Number(s));
  if (counts.some((c) => !Number.isInteger(c) || c < 1)) {
    throw new InvalidArgumentError(`Expected section counts like "250" or "10,15,20" but received ${JSON.stringify(String(sections))}`);
  }
  const sizePer = Math.floor(numTimesteps / counts.length);
  const extra = numTimesteps % counts.length;
  let start = 0;
  const all = new Set<number>();
  counts.forEach((count, i) => {
    const size = sizePer + (i < extra ? 1 : 0);
    if (size < count) throw new InvalidArgumentError(`Expected at most ${size} steps in section ${i} but received ${count}`);
    const stride = count <= 1 ? 1 : (size - 1) / (count - 1);
    let cur = 0;
    for (let k = 0; k < count; k++) {
      all.add(start + roundHalfEven(cur));
      cur += stride;
    }
    start += size;
  });
  return [...all].sort((a, b) => a - b);
}

/** The float64 tables of a respaced `GaussianDiffusion` (DiT `respace.py` + `gaussian_diffusion.py`). */
export interface IddpmTables {
  /** `timestep_map`: the original timestep of each respaced index, ascending. */
  readonly timestepMap: readonly number[];
  readonly betas: Float64Array;
  readonly sqrtRecipAlphasCumprod: Float64Array;
  readonly sqrtRecipm1AlphasCumprod: Float64Array;
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;
  readonly posteriorLogVarianceClipped: Float64Array;
  readonly logBetas: Float64Array;
}

/**
 * Which implementation's tables to build. `'dit'`: float64 numpy tables (DiT). `'opensora'`: the
 * respaced betas stored as float32 (`torch.FloatTensor(new_betas)`) and every table derived with
 * float32 tensor operations, as Open-Sora v1.1's torch port does. The two land ~1.7e-4 (relative)
 * apart after a loop.
 */
export type IddpmVariant = 'dit' | 'opensora';

export function iddpmTables(sections: string | number, variant: IddpmVariant = 'dit'): IddpmTables {
  const base = linearBetasF64(TRAIN_TIMESTEPS);
  const use = new Set(spaceTimesteps(TRAIN_TIMESTEPS, sections));
  const map: number[] = [];
  const newBetas: number[] = [];
  let acp = 1;
  let last = 1;
  for (let i = 0; i < TRAIN_TIMESTEPS; i++) {
    acp *= 1 - base[i]!;
    if (use.has(i)) {
      const beta = 1 - acp / last;
      newBetas.push(variant === 'opensora' ? Math.fround(beta) : beta);
      last = acp;
      map.push(i);
    }
  }
  const K = newBetas.length;
  // DiT: float64 numpy tables. Open-Sora v1.1: the same formulas on float32 torch tensors; q rounds
  // every intermediate to float32 in that case.
  const q = variant === 'opensora' ? Math.fround : (v: number): number => v;
  const betas = Float64Array.from(newBetas);
  const alphasCumprod = new Float64Array(K);
  const prev = new Float64Array(K);
  let c = 1;
  for (let k = 0; k < K; k++) {
    prev[k] = c;
    c = q(c * q(1 - betas[k]!));
    alphasCumprod[k] = c;
  }
  const t = {
    timestepMap: Object.freeze(map),
    betas,
    sqrtRecipAlphasCumprod: new Float64Array(K),
    sqrtRecipm1AlphasCumprod: new Float64Array(K),
    posteriorMeanCoef1: new Float64Array(K),
    posteriorMeanCoef2: new Float64Array(K),
    posteriorLogVarianceClipped: new Float64Array(K),
    logBetas: new Float64Array(K),
  };
  const posteriorVariance = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    const b = betas[k]!;
    const a = alphasCumprod[k]!;
    const ap = prev[k]!;
    const oneMinusA = q(1 - a);
    t.sqrtRecipAlphasCumprod[k] = q(Math.sqrt(q(1 / a)));
    t.sqrtRecipm1AlphasCumprod[k] = q(Math.sqrt(q(q(1 / a) - 1)));
    posteriorVariance[k] = q(q(b * q(1 - ap)) / oneMinusA);
    t.posteriorMeanCoef1[k] = q(q(b * q(Math.sqrt(ap))) / oneMinusA);
    t.posteriorMeanCoef2[k] = q(q(q(1 - ap) * q(Math.sqrt(q(1 - b)))) / oneMinusA);
    t.logBetas[k] = q(Math.log(b));
  }
  for (let k = 0; k < K; k++) {
    // log(append(posterior_variance[1], posterior_variance[1:])): index 0 borrows index 1
    t.posteriorLogVarianceClipped[k] = K > 1 ? q(Math.log(posteriorVariance[k === 0 ? 1 : k]!)) : NaN;
  }
  return t;
}

/** Intermediates of one IDDPM step, for tests and diagnostics. */
export interface IddpmStepDetail {
  readonly predXstart: Float32Array;
  readonly mean: Float32Array;
  readonly logVariance: Float32Array;
  readonly sample: Float32Array;
}

/**
 * One `p_sample` of DiT's respaced IDDPM with learned-range variance, ε prediction and
 * `clip_denoised=False`. Float64 tables, each per-step coefficient cast to float32 and applied with
 * float32 operations in DiT's order.
 */
export function iddpmStep(tables: IddpmTables, index: number, modelOutput: Tensor, x: Tensor, noise: Tensor | undefined): IddpmStepDetail {
  const C = x.shape[1];
  if (C === undefined || x.shape.length < 2) throw new ShapeMismatchError(`Expected a sample [B, C, ...] but received [${x.shape.join(', ')}]`);
  const want = [x.shape[0]!, 2 * C, ...x.shape.slice(2)];
  if (modelOutput.shape.length !== want.length || want.some((s, k) => s !== modelOutput.shape[k])) {
    throw new ShapeMismatchError(
      `Expected modelOutput of shape [${want.join(', ')}] (ε and learned-range variance values) but received [${modelOutput.shape.join(', ')}]`,
    );
  }
  if (index !== 0) {
    if (!noise) throw new InvalidArgumentError(`Expected a noise tensor for IDDPM step at index ${index} but received none`);
    expectSameShape('noise', noise, x);
  }
  const c1 = f(tables.sqrtRecipAlphasCumprod[index]!);
  const c2 = f(tables.sqrtRecipm1AlphasCumprod[index]!);
  const k1 = f(tables.posteriorMeanCoef1[index]!);
  const k2 = f(tables.posteriorMeanCoef2[index]!);
  const minLog = f(tables.posteriorLogVarianceClipped[index]!);
  const maxLog = f(tables.logBetas[index]!);
  const n = x.data.length;
  const B = x.shape[0]!;
  const row = n / B;
  const predXstart = new Float32Array(n);
  const mean = new Float32Array(n);
  const logVariance = new Float32Array(n);
  const sample = new Float32Array(n);
  const out = modelOutput.data;
  const xs = x.data;
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < row; k++) {
      const at = b * row + k;
      const eps = out[2 * b * row + k]!;
      const v = out[2 * b * row + row + k]!;
      const frac = f(f(v + 1) / 2);
      const logVar = f(f(frac * maxLog) + f(f(1 - frac) * minLog));
      const x0 = f(f(c1 * xs[at]!) - f(c2 * eps));
      const m = f(f(k1 * x0) + f(k2 * xs[at]!));
      predXstart[at] = x0;
      mean[at] = m;
      logVariance[at] = logVar;
      sample[at] = index === 0 ? m : f(m + f(f(Math.exp(f(0.5 * logVar))) * noise!.data[at]!));
    }
  }
  return { predXstart, mean, logVariance, sample };
}

/**
 * DiT's original sampler: `create_diffusion(str(steps))` → `p_sample_loop` (respaced IDDPM, learned
 * range variance, ε prediction, `clip_denoised=False`). Step `i` runs respaced index `steps − 1 − i`;
 * the model gets `timesteps[i] = timestep_map[steps − 1 − i]`. Every step but the last needs N(0, I)
 * noise from the caller's RNG. `variant: 'opensora'` reproduces Open-Sora v1.0/v1.1's IDDPM.
 */
export function createIddpm(options: { steps: number; variant?: IddpmVariant }): Sampler {
  const requested = expectInteger('steps', options.steps, 1, TRAIN_TIMESTEPS);
  const variant = options.variant ?? 'dit';
  if (variant !== 'dit' && variant !== 'opensora') {
    throw new InvalidArgumentError(`Expected variant "dit" or "opensora" but received ${JSON.stringify(variant)}`);
  }
  const tables = iddpmTables(requested, variant);
  const steps = tables.timestepMap.length;
  const timesteps = Object.freeze([...tables.timestepMap].reverse());
  let next = 0;
  return {
    name: variant === 'opensora' ? 'iddpm-opensora' : 'iddpm',
    kind: 'iddpm',
    steps,
    timesteps,
    initNoiseSigma: 1,
    prediction: 'eps',
    wantsVariance: true,
    needsNoise: (i) => i < steps - 1,
    reset() {
      next = 0;
    },
    step(modelOutput: Tensor, i: number, x: Tensor, noise?: Tensor): Tensor {
      checkSample('x', x);
      checkSample('modelOutput', modelOutput);
      checkStepIndex(i, next, steps);
      const { sample } = iddpmStep(tables, steps - 1 - i, modelOutput, x, noise);
      next = i + 1;
      return tensor(sample, x.shape);
    },
  };
}
