import { expectInteger, tensor, type Tensor } from '@ditfa/core';
import type { Sampler } from './sampler.js';
import { TRAIN_TIMESTEPS, diffusersAlphasCumprod } from './schedule.js';
import { checkSample, checkStepIndex, expectSameShape, f } from './util.js';

/** DDIM timesteps with "leading" spacing: `arange(n)·(1000 // n)` reversed (steps_offset 0). */
export function ddimTimesteps(steps: number): number[] {
  const ratio = Math.floor(TRAIN_TIMESTEPS / steps);
  return Array.from({ length: steps }, (_, k) => (steps - 1 - k) * ratio);
}

/**
 * diffusers' `DDIMScheduler` as DiT's hub config sets it: linear betas, ε prediction, η = 0,
 * `clip_sample=False`, `set_alpha_to_one=True` (ᾱ_prev = 1 after the last step), "leading" spacing.
 * Float32 arithmetic in diffusers' operation order.
 */
export function createDdim(options: { steps: number }): Sampler {
  const steps = expectInteger('steps', options.steps, 1, TRAIN_TIMESTEPS);
  const timesteps = Object.freeze(ddimTimesteps(steps));
  const ratio = Math.floor(TRAIN_TIMESTEPS / steps);
  const acp = diffusersAlphasCumprod();
  let next = 0;
  return {
    name: 'ddim',
    kind: 'ddim',
    steps,
    timesteps,
    initNoiseSigma: 1,
    prediction: 'eps',
    wantsVariance: false,
    needsNoise: () => false,
    reset() {
      next = 0;
    },
    step(modelOutput: Tensor, i: number, x: Tensor): Tensor {
      checkSample('x', x);
      expectSameShape('modelOutput (ε)', modelOutput, x);
      checkStepIndex(i, next, steps);
      const t = timesteps[i]!;
      const prev = t - ratio;
      const a = acp[t]!;
      const aPrev = prev >= 0 ? acp[prev]! : 1;
      const sqrtBeta = f(Math.sqrt(f(1 - a)));
      const sqrtA = f(Math.sqrt(a));
      const sqrtAPrev = f(Math.sqrt(aPrev));
      const dir = f(Math.sqrt(f(1 - aPrev)));
      const eps = modelOutput.data;
      const xs = x.data;
      const out = new Float32Array(xs.length);
      for (let k = 0; k < xs.length; k++) {
        const x0 = f(f(xs[k]! - f(sqrtBeta * eps[k]!)) / sqrtA);
        out[k] = f(f(sqrtAPrev * x0) + f(dir * eps[k]!));
      }
      next = i + 1;
      return tensor(out, x.shape);
    },
  };
}
