import { InvalidArgumentError, describeValue, expectInteger, tensor, type Tensor } from '@ditfa/core';
import type { Sampler } from './sampler.js';
import { TRAIN_TIMESTEPS } from './schedule.js';
import { checkSample, checkStepIndex, expectSameShape, f } from './util.js';

/**
 * Open-Sora v1.2's resolution- and length-dependent timestep shift (`timestep_transform`), given the
 * **pixel** height and width and the **pixel** frame count, as Open-Sora passes them to the model.
 */
export interface RflowTimestepTransform {
  readonly height: number;
  readonly width: number;
  /** Pixel frame count (51 for a 51-frame video, 1 for an image). */
  readonly frames: number;
}

export interface RflowOptions {
  /** Number of sampling steps (`num_sampling_steps`). */
  readonly steps: number;
  /** Training time scale (`num_timesteps`); default 1000. */
  readonly numTimesteps?: number;
  /** Apply `timestep_transform` (`use_timestep_transform=True`, as Open-Sora v1.2's inference config does). */
  readonly timestepTransform?: RflowTimestepTransform;
}

/** Open-Sora's base resolution for the transform: 512². */
const BASE_RESOLUTION = 512 * 512;

/** Validates a transform and returns it with float32 values (Open-Sora holds them in float32 tensors). */
export function checkTimestepTransform(transform: unknown): RflowTimestepTransform {
  if (typeof transform !== 'object' || transform === null) {
    throw new InvalidArgumentError(`Expected timestepTransform to be { height, width, frames } but received ${describeValue(transform)}`);
  }
  const { height, width, frames } = transform as Record<string, unknown>;
  for (const [name, v] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new InvalidArgumentError(`Expected a positive pixel size for timestepTransform.${name} but received ${describeValue(v)}`);
    }
  }
  // frames // 17 * 5 is 0 for 2…16 frames: the ratio would be 0 and the first timestep 0/0.
  if (typeof frames !== 'number' || !Number.isInteger(frames) || frames < 1 || (frames > 1 && frames < 17)) {
    throw new InvalidArgumentError(
      `Expected timestepTransform.frames to be 1 (an image) or an integer >= 17 (pixel frames; Open-Sora uses frames // 17 · 5) but received ${describeValue(frames)}`,
    );
  }
  return { height: height as number, width: width as number, frames };
}

/**
 * The transform's ratio in float32, as Open-Sora computes it on `[B]` float32 tensors:
 * `sqrt(height·width / 512²) · sqrt(nf)` with `nf = 1` for one frame, else `floor(frames/17)·5`.
 */
export function rflowTransformRatio(transform: RflowTimestepTransform): number {
  const { height, width, frames } = checkTimestepTransform(transform);
  const resolution = f(f(height) * f(width));
  const ratioSpace = f(Math.sqrt(f(resolution / BASE_RESOLUTION)));
  const nf = frames === 1 ? 1 : f(Math.floor(f(frames) / 17) * 5);
  const ratioTime = f(Math.sqrt(nf)); // (nf / base_num_frames).sqrt() with base 1
  return f(ratioSpace * ratioTime); // · scale 1.0
}

/**
 * The timestep the model gets at each step of Open-Sora v1.2's `RFLOW.sample` (float32 values):
 * `(1 − i/N)·numTimesteps`, then, with a transform, `s = t/T`, `t' = r·s/(1 + (r − 1)·s)·T`, each
 * operation rounded to float32 like the official tensor code.
 */
export function rflowTimesteps(steps: number, numTimesteps = TRAIN_TIMESTEPS, transform?: RflowTimestepTransform): number[] {
  const T = expectInteger('numTimesteps', numTimesteps, 1, 1 << 24);
  const N = expectInteger('steps', steps, 1, T);
  const ratio = transform === undefined ? undefined : rflowTransformRatio(transform);
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    // Python floats, then torch.tensor([t] * B) → float32
    let t = f((1 - i / N) * T);
    if (ratio !== undefined) {
      const s = f(t / T);
      const num = f(ratio * s);
      const den = f(1 + f(f(ratio - 1) * s));
      t = f(f(num / den) * T);
    }
    out.push(t);
  }
  return out;
}

/** The Euler step sizes of `RFLOW.sample`: `(t_i − t_{i+1})/T` and `t_{N−1}/T` for the last step, in float32. */
export function rflowDeltas(timesteps: readonly number[], numTimesteps = TRAIN_TIMESTEPS): Float32Array {
  const T = expectInteger('numTimesteps', numTimesteps, 1, 1 << 24);
  const n = timesteps.length;
  return Float32Array.from(timesteps, (t, i) => f((i < n - 1 ? f(t - timesteps[i + 1]!) : t) / T));
}

/** The sampler name for a configuration: `rflow`, `rflow(T=500)`, `rflow+transform(h=240,w=426,frames=51)`. */
export function rflowName(numTimesteps: number, transform?: RflowTimestepTransform): string {
  const base = numTimesteps === TRAIN_TIMESTEPS ? 'rflow' : `rflow(T=${numTimesteps})`;
  return transform === undefined ? base : `${base}+transform(h=${transform.height},w=${transform.width},frames=${transform.frames})`;
}

/**
 * Open-Sora v1.2's rectified flow (`opensora/schedulers/rf` `RFLOW.sample`, mask-free path, continuous
 * timesteps): the model predicts the velocity `v = x0 − noise` at time `t` (`x_t = (1 − t/T)·x0 + (t/T)·noise`),
 * and each step is one Euler update `z ← z + v̂·dt` in float32 (see {@link rflowDeltas}). Classifier-free
 * guidance is the ordinary `guide` on the velocity (first half of the channels of a learned-sigma output).
 */
export function createRflow(options: RflowOptions): Sampler {
  const numTimesteps = expectInteger('numTimesteps', options.numTimesteps ?? TRAIN_TIMESTEPS, 1, 1 << 24);
  const steps = expectInteger('steps', options.steps, 1, numTimesteps);
  const transform = options.timestepTransform === undefined ? undefined : checkTimestepTransform(options.timestepTransform);
  const timesteps = Object.freeze(rflowTimesteps(steps, numTimesteps, transform));
  const dts = rflowDeltas(timesteps, numTimesteps);
  let next = 0;
  return {
    name: rflowName(numTimesteps, transform),
    kind: 'rflow',
    steps,
    timesteps,
    initNoiseSigma: 1,
    prediction: 'velocity',
    wantsVariance: false,
    needsNoise: () => false,
    reset() {
      next = 0;
    },
    step(modelOutput: Tensor, i: number, x: Tensor): Tensor {
      checkSample('x', x);
      expectSameShape('modelOutput (velocity)', modelOutput, x);
      checkStepIndex(i, next, steps);
      const dt = dts[i]!;
      const v = modelOutput.data;
      const xs = x.data;
      const out = new Float32Array(xs.length);
      for (let k = 0; k < xs.length; k++) out[k] = f(xs[k]! + f(v[k]! * dt));
      next = i + 1;
      return tensor(out, x.shape);
    },
  };
}
