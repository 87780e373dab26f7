import type { Tensor } from '@ditfa/core';

export type SamplerKind = 'dpmpp-2m' | 'ddim' | 'iddpm';

/**
 * A sampler as a step object: the pipeline asks it for the timestep to feed the model at step `i`,
 * runs the model, and hands the output back to `step`. Samples are `[B, C, ...]` float32 tensors with
 * channels on dimension 1; every row shares the step's timestep.
 */
export interface Sampler {
  readonly kind: SamplerKind;
  /** Number of denoising steps. */
  readonly steps: number;
  /** The timestep value to give the model at step `i` (integer, original 0–999 scale), `i = 0..steps−1`. */
  readonly timesteps: readonly number[];
  /** Multiply the initial N(0, I) noise by this before the first step (1 for all three samplers). */
  readonly initNoiseSigma: number;
  /**
   * `'eps'`: `step` takes ε with the sample's shape (split learned-sigma outputs first with
   * `splitLearnedSigma`). `'eps-and-variance'`: `step` takes the full `[B, 2C, ...]` output
   * (ε then the learned-range variance values), as DiT's IDDPM does.
   */
  readonly modelOutput: 'eps' | 'eps-and-variance';
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
