import type { Tensor } from '@ditfa/core';

/** The sampler families this package builds with `createSampler`. Plugins may use their own `kind` strings. */
export type SamplerKind = 'dpmpp-2m' | 'ddim' | 'iddpm' | 'rflow';

/** What the model predicts, which `step` consumes. */
export type PredictionType = 'eps' | 'v' | 'velocity';

/**
 * A sampler as a step object: the pipeline asks it for the timestep to feed the model at step `i`,
 * runs the model, and hands the output back to `step`. Samples are `[B, C, ...]` float32 tensors with
 * channels on dimension 1; every row shares the step's timestep.
 *
 * The interface is open: a plugin may supply its own sampler object (check it with
 * `validateSampler`) or a {@link SamplerFactory}.
 */
export interface Sampler {
  /** Stable name of the sampler AND its configuration, used in plan fingerprints: 'dpmpp-2m', 'ddim', 'iddpm' (DiT variant), 'iddpm-opensora', 'rflow', and for rflow with the timestep transform e.g. 'rflow+transform(h=240,w=426,frames=51)'. */
  readonly name: string;
  /** Family kind: 'dpmpp-2m' | 'ddim' | 'iddpm' | 'rflow' or a plugin's own string. */
  readonly kind: string;
  /** Number of denoising steps. */
  readonly steps: number;
  /** The timestep value given to the model at step i; may be non-integer (rflow). */
  readonly timesteps: readonly number[];
  /** Multiply the initial N(0, I) noise by this before the first step (1 for every built-in sampler). */
  readonly initNoiseSigma: number;
  /** What `step` takes: ε (eps), v-prediction (v) or the flow velocity (velocity). */
  readonly prediction: PredictionType;
  /** True when `step` takes the full learned-variance output `[B, 2C, ...]` (prediction then variance values), as DiT's IDDPM does. Otherwise `step` takes `[B, C, ...]` (callers split learned-sigma outputs first with `splitLearnedSigma`). */
  readonly wantsVariance: boolean;
  /** Whether `step(…, i, …)` needs a `noise` tensor (IDDPM at every step but the last). */
  needsNoise(i: number): boolean;
  /**
   * Advances the sample from step `i` to step `i + 1` and returns a new tensor. Steps must be taken
   * in order `0, 1, …` (multistep solvers remember earlier outputs); {@link reset} starts over.
   */
  step(modelOutput: Tensor, i: number, x: Tensor, noise?: Tensor): Tensor;
  /** Forgets the history so that the sampler can run another generation. */
  reset(): void;
}

/** Something a package provides to make samplers for a generation (samplers are stateful: one per generation). */
export interface SamplerFactory {
  /** Same as the samplers' `name` for the given steps' configuration (may be computed in create). */
  create(options: { readonly steps: number }): Sampler;
}
