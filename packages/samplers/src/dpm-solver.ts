import { expectInteger, tensor, type Tensor } from '@ditfa/core';
import type { Sampler } from './sampler.js';
import { TRAIN_TIMESTEPS, diffusersAlphasCumprod, roundHalfEven } from './schedule.js';
import { checkSample, checkStepIndex, expectSameShape, f } from './util.js';

/**
 * diffusers' `DPMSolverMultistepScheduler` as PixArt-Σ (and DiT, given its DDIM config) configure it:
 * `algorithm_type "dpmsolver++"`, `solver_order 2`, `solver_type "midpoint"`, `lower_order_final`,
 * `timestep_spacing "linspace"`, `final_sigmas_type "zero"`, ε prediction, linear betas.
 *
 * Arithmetic follows diffusers' float32 tensor operations one by one (each rounded to float32), so
 * results agree with diffusers to float32 rounding of the transcendental functions.
 */
export function dpmSolverTimesteps(steps: number): number[] {
  // np.linspace(0, 999, n + 1).round()[::-1][:-1]; round() is numpy's half-to-even
  const out: number[] = [];
  const last = TRAIN_TIMESTEPS - 1;
  for (let k = steps; k >= 1; k--) {
    const v = k === steps ? last : k * (last / steps);
    out.push(roundHalfEven(v));
  }
  return out;
}

/** σ̃ per step (`sqrt((1 − ᾱ)/ᾱ)` in float32) with a final 0, as `scheduler.sigmas`. */
export function dpmSolverSigmas(timesteps: readonly number[], alphasCumprod: Float32Array = diffusersAlphasCumprod()): Float32Array {
  const out = new Float32Array(timesteps.length + 1);
  timesteps.forEach((t, k) => {
    const a = alphasCumprod[t]!;
    out[k] = f(Math.sqrt(f(f(1 - a) / a)));
  });
  out[timesteps.length] = 0;
  return out;
}

interface AlphaSigma {
  alpha: number;
  sigma: number;
  lambda: number;
}

function alphaSigma(s: number): AlphaSigma {
  const alpha = f(1 / f(Math.sqrt(f(f(s * s) + 1))));
  const sigma = f(s * alpha);
  // λ = log α − log σ; σ = 0 gives λ = +∞ (the final step), handled by the caller.
  const lambda = f(f(Math.log(alpha)) - f(Math.log(sigma)));
  return { alpha, sigma, lambda };
}

export function createDpmSolver(options: { steps: number }): Sampler {
  const steps = expectInteger('steps', options.steps, 1, TRAIN_TIMESTEPS);
  const timesteps = Object.freeze(dpmSolverTimesteps(steps));
  const sigmas = dpmSolverSigmas(timesteps);
  const coeffs = Array.from(sigmas, (s) => alphaSigma(s));
  let next = 0;
  let previousX0: Float32Array | undefined;

  return {
    name: 'dpmpp-2m',
    kind: 'dpmpp-2m',
    steps,
    timesteps,
    initNoiseSigma: 1,
    prediction: 'eps',
    wantsVariance: false,
    needsNoise: () => false,
    reset() {
      next = 0;
      previousX0 = undefined;
    },
    step(modelOutput: Tensor, i: number, x: Tensor): Tensor {
      checkSample('x', x);
      expectSameShape('modelOutput (ε)', modelOutput, x);
      checkStepIndex(i, next, steps);
      const s0 = coeffs[i]!;
      const t = coeffs[i + 1]!;
      const n = x.data.length;
      const eps = modelOutput.data;
      const xs = x.data;
      // convert_model_output: x0 = (x − σ_s·ε) / α_s
      const x0 = new Float32Array(n);
      for (let k = 0; k < n; k++) x0[k] = f(f(xs[k]! - f(s0.sigma * eps[k]!)) / s0.alpha);
      const out = new Float32Array(n);
      const final = i === steps - 1; // final_sigmas_type "zero" forces first order; σ_t = 0 → x_t = x0
      if (final && sigmas[i + 1] === 0) {
        out.set(x0);
      } else if (i === 0 || final || previousX0 === undefined) {
        // first order: x_t = (σ_t/σ_s)·x − α_t(e^(−h) − 1)·x0
        const h = f(t.lambda - s0.lambda);
        const c1 = f(t.sigma / s0.sigma);
        const c2 = f(t.alpha * f(f(Math.exp(-h)) - 1));
        for (let k = 0; k < n; k++) out[k] = f(f(c1 * xs[k]!) - f(c2 * x0[k]!));
      } else {
        // second order, midpoint: D0 = m0, D1 = (m0 − m1)/r0
        const s1 = coeffs[i - 1]!;
        const h = f(t.lambda - s0.lambda);
        const h0 = f(s0.lambda - s1.lambda);
        const r0 = f(h0 / h);
        const invR0 = f(1 / r0);
        const c1 = f(t.sigma / s0.sigma);
        const c2 = f(t.alpha * f(f(Math.exp(-h)) - 1));
        const c3 = f(0.5 * c2);
        const m1 = previousX0;
        for (let k = 0; k < n; k++) {
          const d1 = f(invR0 * f(x0[k]! - m1[k]!));
          out[k] = f(f(f(c1 * xs[k]!) - f(c2 * x0[k]!)) - f(c3 * d1));
        }
      }
      previousX0 = x0;
      next = i + 1;
      return tensor(out, x.shape);
    },
  };
}
