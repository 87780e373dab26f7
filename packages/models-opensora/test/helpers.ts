import { type PlanDocument, type Tensor, buildPlan, tensor } from '@ditfa/core';
import type { FingerprintOptions } from '@ditfa/pipeline';
import { type OpenSoraConfig, type OpenSoraGenerateOptions, type Pipeline, openSoraConfig } from '../src/index.js';

/** A tiny STDiT3 (v1.2) and STDiT2 (v1.1): hidden 48, 2 heads, depth 2, 16 caption channels, 6 caption tokens. */
export function tiny(version: OpenSoraConfig['version'], overrides: Partial<OpenSoraConfig> = {}): OpenSoraConfig {
  return openSoraConfig({ version, inChannels: 4, patchSize: [1, 2, 2], hiddenSize: 48, depth: 2, numHeads: 2, mlpRatio: 2, captionChannels: 16, modelMaxLength: 6, inputSqSize: 512, qkNorm: true, predSigma: true, ...overrides });
}

/** Deterministic caption embeddings `[n, L, C]`. */
export function captions(n: number, L = 6, C = 16, seed = 1): Tensor {
  return tensor(Float32Array.from({ length: n * L * C }, (_, i) => Math.sin(seed * 7.3 + i * 0.37)), [n, L, C]);
}

/**
 * A version-2 plan for a generation with `options` on `pipe` deciding `method(step, layer)`, its FLOPs
 * filled in the way the planner fills them (core's `layerAttentionFlops`).
 */
export function planOf(pipe: Pipeline, options: FingerprintOptions & Partial<OpenSoraGenerateOptions>, rows: number, method: (step: number, layer: number) => string): PlanDocument {
  return buildPlan({ fingerprint: pipe.fingerprint(options), layers: pipe.layers(options, rows), strategies: pipe.strategies, method: (step, layer) => method(step, layer.index), threshold: 0.05 });
}

/** Rejection of a promise (or a throwing function), for asserting on coded errors. */
export async function rejection(p: Promise<unknown> | (() => unknown)): Promise<Error & Record<string, any>> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e as Error & Record<string, any>;
  }
  throw new Error('expected an error');
}
