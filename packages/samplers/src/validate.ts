import { InvalidArgumentError, describeValue } from '@ditfa/core';
import type { PredictionType, Sampler, SamplerFactory } from './sampler.js';

const PREDICTIONS: readonly PredictionType[] = ['eps', 'v', 'velocity'];

function fail(field: string, expected: string, value: unknown): never {
  throw new InvalidArgumentError(`Expected the sampler's ${field} to be ${expected} but received ${describeValue(value)}`);
}

/**
 * Checks that an object supplied by a plugin has the shape of a {@link Sampler} and returns it
 * unchanged. Throws an `InvalidArgumentError` (`ERR_DITFA_INVALID_ARGUMENT`) naming the first missing or
 * invalid field. It checks the fields, not the behaviour of `step`.
 */
export function validateSampler(s: unknown): Sampler {
  if (typeof s !== 'object' || s === null) {
    throw new InvalidArgumentError(`Expected a sampler object but received ${describeValue(s)}`);
  }
  const o = s as Record<string, unknown>;
  if (typeof o.name !== 'string' || o.name.length === 0) fail('name', 'a non-empty string', o.name);
  if (typeof o.kind !== 'string' || o.kind.length === 0) fail('kind', 'a non-empty string', o.kind);
  const steps = o.steps;
  if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 1) fail('steps', 'a positive integer', steps);
  const ts = o.timesteps;
  if (!Array.isArray(ts) || ts.length !== steps) fail('timesteps', `an array of ${steps} numbers (one per step)`, ts);
  const bad = (ts as unknown[]).findIndex((t) => typeof t !== 'number' || !Number.isFinite(t));
  if (bad >= 0) fail(`timesteps[${bad}]`, 'a finite number', (ts as unknown[])[bad]);
  const sigma = o.initNoiseSigma;
  if (typeof sigma !== 'number' || !Number.isFinite(sigma) || sigma <= 0) fail('initNoiseSigma', 'a positive finite number', sigma);
  if (!PREDICTIONS.includes(o.prediction as PredictionType)) fail('prediction', `one of ${PREDICTIONS.map((p) => `"${p}"`).join(', ')}`, o.prediction);
  if (typeof o.wantsVariance !== 'boolean') fail('wantsVariance', 'a boolean', o.wantsVariance);
  for (const method of ['needsNoise', 'step', 'reset'] as const) {
    if (typeof o[method] !== 'function') fail(method, 'a function', o[method]);
  }
  return s as Sampler;
}

/**
 * Checks that an object supplied by a plugin has the shape of a {@link SamplerFactory} (a `create`
 * function) and returns it unchanged; throws an `InvalidArgumentError` otherwise.
 */
export function validateSamplerFactory(factory: unknown): SamplerFactory {
  if (typeof factory !== 'object' || factory === null) {
    throw new InvalidArgumentError(`Expected a sampler factory object but received ${describeValue(factory)}`);
  }
  const create = (factory as Record<string, unknown>).create;
  if (typeof create !== 'function') {
    throw new InvalidArgumentError(`Expected the sampler factory's create to be a function but received ${describeValue(create)}`);
  }
  return factory as SamplerFactory;
}
