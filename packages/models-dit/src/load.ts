import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { type CheckpointTensor, loadCheckpoint, weightsHash } from '@ditfa/checkpoint';
import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { type ModelConfig, configFromJson } from './config.js';
import { ModelConfigError, ModelKeysError } from './errors.js';
import { type LoadOptions, TransformerModel } from './model.js';
import { canonicalWeights, detectFamily } from './weights.js';

export interface LoadModelOptions extends LoadOptions {
  /** The model configuration; default: `config.json` in the checkpoint's folder. */
  readonly config?: ModelConfig;
}

function readConfig(file: string): ModelConfig {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new ModelConfigError(`Expected a JSON model config at ${file} but it could not be read: ${(cause as Error).message}`);
  }
  if (typeof json !== 'object' || json === null) throw new ModelConfigError(`Expected a JSON object in ${file} but received ${describeValue(json)}`);
  return configFromJson(json as Record<string, unknown>);
}

/**
 * Loads a DiT or PixArt-Σ model: a safetensors or PyTorch (`.bin`/`.pt`) file, a folder holding
 * `weights.safetensors` (or diffusers' `diffusion_pytorch_model.{safetensors,bin}`) and `config.json` (the Fashion-MNIST DiT's `models/fashion-dit/`
 * layout), or tensors already in memory. The key layout (original or diffusers) is detected from the keys.
 */
export async function loadModel(source: string | ReadonlyMap<string, CheckpointTensor>, options: LoadModelOptions = {}): Promise<TransformerModel> {
  let tensors: ReadonlyMap<string, CheckpointTensor>;
  let config = options.config;
  if (typeof source === 'string') {
    let file = source;
    if (existsSync(source) && statSync(source).isDirectory()) {
      const candidates = ['weights.safetensors', 'diffusion_pytorch_model.safetensors', 'model.safetensors', 'diffusion_pytorch_model.bin'].map((f) => path.join(source, f));
      const found = candidates.find((f) => existsSync(f));
      if (!found) throw new InvalidArgumentError(`Expected one of ${candidates.join(', ')} but none exists`);
      file = found;
    }
    if (!config) {
      const cfgFile = path.join(path.dirname(file), 'config.json');
      if (!existsSync(cfgFile)) throw new ModelConfigError(`Expected a config (options.config or ${cfgFile}) for ${file} but received neither`);
      config = readConfig(cfgFile);
    }
    tensors = loadCheckpoint(file).tensors;
  } else if (source instanceof Map) {
    tensors = source;
  } else {
    throw new InvalidArgumentError(`Expected a checkpoint path or a Map of tensors but received ${describeValue(source)}`);
  }
  if (!config) throw new ModelConfigError('Expected options.config for in-memory tensors but received none');
  const family = detectFamily(tensors);
  if (family !== undefined && family !== config.family) {
    throw new ModelKeysError(`Expected a ${config.family} checkpoint for the ${config.family} config but the keys are those of a ${family} checkpoint`);
  }
  const weights = canonicalWeights(config, tensors);
  return TransformerModel.create(config, weights, { ...options, weightsHash: options.weightsHash ?? weightsHash(tensors) });
}
