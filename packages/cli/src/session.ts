import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
// Registers the native CPU kernels (and the reference fallback) with core's backend registry.
import '@ditfa/kernels-cpu';
import { createPipeline, loadModel, type Pipeline, type PipelineEvent } from '@ditfa/models-dit';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import type { SamplerKind } from '@ditfa/samplers';
import { InputFileError, UsageError } from './errors.js';

/** The model bundled with the repository (`models/fashion-dit`), found from the package's location. */
export function bundledModelDir(): string {
  return fileFromRepo('models/fashion-dit');
}

export function fileFromRepo(relative: string): string {
  return path.resolve(new URL('../../../', import.meta.url).pathname, relative);
}

export const SAMPLERS: Readonly<Record<string, SamplerKind>> = { 'dpm++': 'dpmpp-2m', 'dpmpp-2m': 'dpmpp-2m', ddim: 'ddim', iddpm: 'iddpm' };

export function samplerKind(name: string): SamplerKind {
  const kind = SAMPLERS[name];
  if (!kind) throw new UsageError(`Expected --sampler dpm++, ddim or iddpm but received ${JSON.stringify(name)}`);
  return kind;
}

/** Opens a model directory (weights + config.json) as a pipeline with every built-in strategy. */
export async function openPipeline(dir: string, options: { threads?: number; window?: number; vae?: string; onEvent?: (e: PipelineEvent) => void } = {}): Promise<Pipeline> {
  if (!existsSync(dir)) throw new InputFileError(`Cannot open the model ${JSON.stringify(dir)}: it does not exist`);
  if (!statSync(dir).isDirectory()) throw new InputFileError(`Cannot open the model ${JSON.stringify(dir)}: expected a directory with weights.safetensors and config.json`);
  const model = await loadModel(dir, options.threads === undefined ? {} : { threads: options.threads });
  return createPipeline(model, {
    strategies: [...warsStrategies(), ...astStrategies(), ...ascStrategies()],
    ...(options.window === undefined ? {} : { window: { kind: '1d', size: options.window } }),
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    ...(options.vae === undefined ? {} : { vae: options.vae }),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
  });
}
