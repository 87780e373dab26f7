import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
// Registers the native CPU kernels (and the reference fallback) with core's backend registry.
import '@ditfa/kernels-cpu';
import { createPipeline, loadModel, type Pipeline, type PipelineEvent } from '@ditfa/models-dit';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import type { SamplerKind } from '@ditfa/samplers';
import type { AttentionLayer, PlanDocument, WindowSpec } from '@ditfa/core';
import { InputFileError, UsageError } from './errors.js';

/**
 * Where the bundled models live: `<repository>/models` inside the monorepo (so a re-exported model is
 * never shadowed by a stale packed copy), else `<package>/models` in an installed package (filled by the
 * `prepack` script). The first folder that holds `fashion-dit/config.json` wins; null when none does.
 */
export function bundledModelsRoot(candidates: readonly string[] = defaultModelRoots()): string | null {
  for (const dir of candidates) if (existsSync(path.join(dir, 'fashion-dit', 'config.json'))) return dir;
  return null;
}

function defaultModelRoots(): string[] {
  const pkg = fileURLToPath(new URL('../', import.meta.url)); // src/ or dist/ → the package folder
  const repo = path.resolve(pkg, '../..');
  const inMonorepo = existsSync(path.join(repo, 'pnpm-workspace.yaml'));
  return inMonorepo ? [path.join(repo, 'models'), path.join(pkg, 'models')] : [path.join(pkg, 'models')];
}

/** The bundled model directory (`models/fashion-dit`); where it would be first looked for when absent. */
export function bundledModelDir(): string {
  return path.join(bundledModelsRoot() ?? defaultModelRoots()[0]!, 'fashion-dit');
}

export const SAMPLERS: Readonly<Record<string, SamplerKind>> = { 'dpm++': 'dpmpp-2m', 'dpmpp-2m': 'dpmpp-2m', ddim: 'ddim', iddpm: 'iddpm', rflow: 'rflow' };

export function samplerKind(name: string): SamplerKind {
  const kind = SAMPLERS[name];
  if (!kind) throw new UsageError(`Expected --sampler dpm++, ddim, iddpm or rflow but received ${JSON.stringify(name)}`);
  return kind;
}

/** The windows a plan was made with, by layer id (so a generation under the plan uses the same windows). */
export function planWindows(plan: PlanDocument): (layer: AttentionLayer) => WindowSpec | null {
  const byId = new Map(plan.fingerprint.layers.map((l) => [l.id, l.window]));
  return (layer) => (byId.has(layer.id) ? byId.get(layer.id)! : layer.window);
}

/** Opens a model directory (weights + config.json) as a pipeline with every built-in strategy. */
export async function openPipeline(
  dir: string,
  options: { threads?: number; window?: number | ((layer: AttentionLayer) => WindowSpec | null); vae?: string; onEvent?: (e: PipelineEvent) => void; warn?: (text: string) => void } = {},
): Promise<Pipeline> {
  if (!existsSync(dir)) {
    if (path.resolve(dir) === bundledModelDir() && bundledModelsRoot() === null) {
      throw new InputFileError(`This installation has no bundled model (looked in ${defaultModelRoots().map((d) => JSON.stringify(d)).join(' and ')}): pass --model DIR`);
    }
    throw new InputFileError(`Cannot open the model ${JSON.stringify(dir)}: it does not exist`);
  }
  if (!statSync(dir).isDirectory()) throw new InputFileError(`Cannot open the model ${JSON.stringify(dir)}: expected a directory with weights.safetensors and config.json`);
  const model = await loadModel(dir, options.threads === undefined ? {} : { threads: options.threads });
  return createPipeline(model, {
    strategies: [...warsStrategies(), ...astStrategies(), ...ascStrategies()],
    ...(options.window === undefined ? {} : { window: typeof options.window === 'number' ? { kind: '1d' as const, size: options.window } : options.window }),
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    ...(options.vae === undefined ? {} : { vae: options.vae }),
    onEvent: (e) => {
      // a native backend that did not build (or no backend at all) is said, not passed over in silence
      if (e.type === 'backend' && e.fallbackReason) options.warn?.(e.fallbackReason);
      options.onEvent?.(e);
    },
  });
}
