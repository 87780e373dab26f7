import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { type CheckpointTensor, loadCheckpoint, weightsHash } from '@ditfa/checkpoint';
import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { ModelConfigError, ModelKeysError } from '@ditfa/models-dit';
import { type OpenSoraConfig, configFromJson } from './config.js';
import { type LoadOptions, OpenSoraModel } from './model.js';
import { canonicalWeights, detectVersion } from './weights.js';

export interface LoadModelOptions extends LoadOptions {
  /** The model configuration; default: `config.json` beside the weights. */
  readonly config?: OpenSoraConfig;
}

/** Weight file names looked for in a model folder, in order (the Hub's `model.safetensors` first). */
export const WEIGHT_FILES = Object.freeze(['model.safetensors', 'weights.safetensors', 'pytorch_model.bin', 'model.pt', 'model.bin']);

/** Reads a folder's or file's `config.json` (the version from `model_type`, else from `version`). */
export function readOpenSoraConfig(file: string, version?: OpenSoraConfig['version']): OpenSoraConfig {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new ModelConfigError(`Expected a JSON model config at ${file} but it could not be read: ${(cause as Error).message}`);
  }
  if (typeof json !== 'object' || json === null) throw new ModelConfigError(`Expected a JSON object in ${file} but received ${describeValue(json)}`);
  return configFromJson(json as Record<string, unknown>, version);
}

/**
 * Loads an STDiT2 or STDiT3 model: a folder with `config.json` and `model.safetensors` (the Hub
 * layout; also `weights.safetensors` or a PyTorch `.bin`/`.pt` through `@ditfa/checkpoint`), a weight
 * file with `config.json` beside it, or tensors already in memory with `options.config`. Keys are
 * checked in full against the config (`ModelKeysError` lists every expected key and shape).
 */
export async function loadModel(source: string | ReadonlyMap<string, CheckpointTensor>, options: LoadModelOptions = {}): Promise<OpenSoraModel> {
  let tensors: ReadonlyMap<string, CheckpointTensor>;
  let config = options.config;
  let configFile: string | undefined;
  if (typeof source === 'string') {
    let file = source;
    if (existsSync(source) && statSync(source).isDirectory()) {
      const found = WEIGHT_FILES.map((f) => path.join(source, f)).find((f) => existsSync(f));
      if (!found) throw new InvalidArgumentError(`Expected one of ${WEIGHT_FILES.join(', ')} in ${source} but none exists`);
      file = found;
    }
    if (!config) {
      configFile = path.join(path.dirname(file), 'config.json');
      if (!existsSync(configFile)) throw new ModelConfigError(`Expected a config (options.config or ${configFile}) for ${file} but received neither`);
    }
    tensors = loadCheckpoint(file).tensors;
  } else if (source instanceof Map) {
    tensors = source;
  } else {
    throw new InvalidArgumentError(`Expected a checkpoint path or a Map of tensors but received ${describeValue(source)}`);
  }
  const found = detectVersion(tensors);
  if (found === 'stdit') throw new ModelKeysError('Expected an STDiT2 (Open-Sora v1.1) or STDiT3 (v1.2) checkpoint but the keys are those of an STDiT (v1.0) checkpoint, which this package does not run');
  if (configFile) config = readOpenSoraConfig(configFile, found);
  if (!config) throw new ModelConfigError('Expected options.config for in-memory tensors but received none');
  const weights = canonicalWeights(config, tensors);
  return OpenSoraModel.create(config, weights, { ...options, weightsHash: options.weightsHash ?? weightsHash(tensors) });
}
