import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { createDdim } from './ddim.js';
import { createDpmSolver } from './dpm-solver.js';
import { createIddpm, type IddpmVariant } from './iddpm.js';
import { checkTimestepTransform, createRflow, rflowName, type RflowTimestepTransform } from './rflow.js';
import type { Sampler, SamplerFactory, SamplerKind } from './sampler.js';
import { TRAIN_TIMESTEPS } from './schedule.js';

/** Options of the ε-prediction samplers (linear β schedule over 1000 training steps). */
export interface DiffusionSamplerOptions {
  readonly kind: 'dpmpp-2m' | 'ddim' | 'iddpm';
  /** Number of denoising steps (IDDPM: DiT's `create_diffusion(str(steps))`). */
  readonly steps: number;
  /** IDDPM only: `'dit'` (default) or `'opensora'` (float32 respaced betas). */
  readonly iddpmVariant?: IddpmVariant;
}

/** Options of Open-Sora v1.2's rectified flow. */
export interface RflowSamplerOptions {
  readonly kind: 'rflow';
  /** Number of sampling steps (`num_sampling_steps`), at most `numTimesteps`. */
  readonly steps: number;
  /** Training time scale (`num_timesteps`); default 1000. */
  readonly numTimesteps?: number;
  /** Open-Sora's `timestep_transform` from the pixel height, width and frame count (`use_timestep_transform=True`). */
  readonly timestepTransform?: RflowTimestepTransform;
}

export type SamplerOptions = DiffusionSamplerOptions | RflowSamplerOptions;

/** {@link SamplerOptions} without `steps`, for {@link samplerFactory}. */
export type SamplerFactoryOptions = Omit<DiffusionSamplerOptions, 'steps'> | Omit<RflowSamplerOptions, 'steps'>;

/** A {@link SamplerFactory} for the built-in samplers; `name` is known before any sampler is made. */
export interface BuiltinSamplerFactory extends SamplerFactory {
  /** The `name` of every sampler it creates. */
  readonly name: string;
  readonly kind: SamplerKind;
}

interface Resolved {
  readonly name: string;
  readonly kind: SamplerKind;
  make(steps: number): Sampler;
}

function rejectField(options: object, field: string, kind: string, onlyFor: string): void {
  const value = (options as Record<string, unknown>)[field];
  if (value !== undefined) {
    throw new InvalidArgumentError(`Expected no ${field} for kind "${kind}" (it applies to ${onlyFor} only) but received ${describeValue(value)}`);
  }
}

/** Validates everything but `steps` and returns the configuration's name and a maker. */
function resolve(options: SamplerFactoryOptions): Resolved {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(`Expected sampler options { kind, steps, ... } but received ${describeValue(options)}`);
  }
  const kind = options.kind;
  switch (kind) {
    case 'dpmpp-2m':
    case 'ddim':
    case 'iddpm': {
      rejectField(options, 'numTimesteps', kind, '"rflow"');
      rejectField(options, 'timestepTransform', kind, '"rflow"');
      if (kind !== 'iddpm') {
        // iddpmVariant is ignored for the other diffusion samplers (as before)
        return { name: kind, kind, make: (steps) => (kind === 'ddim' ? createDdim({ steps }) : createDpmSolver({ steps })) };
      }
      const variant = (options as DiffusionSamplerOptions).iddpmVariant ?? 'dit';
      if (variant !== 'dit' && variant !== 'opensora') {
        throw new InvalidArgumentError(`Expected iddpmVariant "dit" or "opensora" but received ${describeValue(variant)}`);
      }
      return { name: variant === 'opensora' ? 'iddpm-opensora' : 'iddpm', kind, make: (steps) => createIddpm({ steps, variant }) };
    }
    case 'rflow': {
      rejectField(options, 'iddpmVariant', kind, '"iddpm"');
      const o = options as Omit<RflowSamplerOptions, 'steps'>;
      const numTimesteps = o.numTimesteps ?? TRAIN_TIMESTEPS;
      if (!Number.isInteger(numTimesteps) || numTimesteps < 1 || numTimesteps > 1 << 24) {
        throw new InvalidArgumentError(`Expected an integer in [1, ${1 << 24}] for numTimesteps but received ${describeValue(numTimesteps)}`);
      }
      const timestepTransform = o.timestepTransform === undefined ? undefined : checkTimestepTransform(o.timestepTransform);
      return {
        name: rflowName(numTimesteps, timestepTransform),
        kind,
        make: (steps) => createRflow({ steps, numTimesteps, ...(timestepTransform ? { timestepTransform } : {}) }),
      };
    }
    default:
      throw new InvalidArgumentError(`Expected kind "dpmpp-2m", "ddim", "iddpm" or "rflow" but received ${describeValue(kind)}`);
  }
}

/** Builds a sampler for one generation; see {@link Sampler} for the loop a pipeline runs. */
export function createSampler(options: SamplerOptions): Sampler {
  return resolve(options).make(options.steps);
}

/**
 * A {@link SamplerFactory} for a built-in sampler configuration: the options are checked now, and
 * `create({ steps })` makes a fresh sampler per generation (samplers are stateful).
 */
export function samplerFactory(options: SamplerFactoryOptions): BuiltinSamplerFactory {
  const r = resolve(options);
  return Object.freeze({ name: r.name, kind: r.kind, create: (o: { readonly steps: number }) => r.make(o?.steps) });
}
