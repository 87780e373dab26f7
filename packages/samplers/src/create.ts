import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { createDdim } from './ddim.js';
import { createDpmSolver } from './dpm-solver.js';
import { createIddpm, type IddpmVariant } from './iddpm.js';
import type { Sampler, SamplerKind } from './sampler.js';

export interface SamplerOptions {
  readonly kind: SamplerKind;
  /** Number of denoising steps (IDDPM: DiT's `create_diffusion(str(steps))`). */
  readonly steps: number;
  /** IDDPM only: `'dit'` (default) or `'opensora'` (float32 respaced betas). */
  readonly iddpmVariant?: IddpmVariant;
}

/** Builds a sampler; see {@link Sampler} for the loop a pipeline runs. */
export function createSampler(options: SamplerOptions): Sampler {
  switch (options?.kind) {
    case 'dpmpp-2m':
      return createDpmSolver(options);
    case 'ddim':
      return createDdim(options);
    case 'iddpm':
      return createIddpm({ steps: options.steps, variant: options.iddpmVariant ?? 'dit' });
    default:
      throw new InvalidArgumentError(`Expected kind "dpmpp-2m", "ddim" or "iddpm" but received ${describeValue(options?.kind)}`);
  }
}
