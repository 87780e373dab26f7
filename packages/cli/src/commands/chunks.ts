import { type PlanDocument, type Tensor, concatBatch } from '@ditfa/core';
import type { GenerateResult } from '@ditfa/models-dit';
import { UsageError } from '../errors.js';
import type { Progress } from '../progress.js';

/**
 * `items` cut into consecutive runs of at most `size` (the last one may be shorter): the demo generates a
 * large request a chunk at a time so that memory stays bounded. `what` names the items in the error
 * for a size that is not a positive whole number.
 */
export function chunk<T>(items: readonly T[], size: number, what: string): T[][] {
  if (!Number.isInteger(size) || size < 1) throw new UsageError(`Expected a positive whole number of ${what} per chunk but received ${size}`);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** What {@link generateChunks} returns: every chunk's samples joined in order, and their work summed. */
export interface ChunkedGeneration {
  readonly latents: Tensor;
  /** Decoded samples, when every chunk decoded. */
  readonly images: Tensor | null;
  /** Wall time of all the chunks. */
  readonly seconds: number;
  readonly attentionMs: number;
  /** Attention FLOPs of what ran ÷ full attention, over every chunk. */
  readonly attentionFlopsFraction: number;
  readonly fallbacks: number;
  /** The largest cache peak of a chunk. */
  readonly cacheBytesPeak: number;
}

/**
 * Runs `requests` (the chunks of one run, see {@link chunk}) one after the other, raw or under `plan`, with
 * one progress bar over all of their steps.
 */
export async function generateChunks<O extends { readonly steps: number }>(
  pipe: { generate(options: O & { readonly plan?: PlanDocument; readonly onProgress?: (e: { readonly step: number }) => void }): Promise<GenerateResult> },
  requests: readonly O[],
  plan: PlanDocument | null,
  progress: Progress,
  label: string,
): Promise<ChunkedGeneration> {
  if (requests.length === 0) throw new UsageError('Expected at least one generation to run');
  const steps = requests[0]!.steps;
  progress.start(steps * requests.length, label);
  const t0 = performance.now();
  const results: GenerateResult[] = [];
  for (const [k, request] of requests.entries()) {
    results.push(await pipe.generate({ ...request, ...(plan ? { plan } : {}), onProgress: (e) => progress.update(k * steps + e.step) }));
  }
  const seconds = (performance.now() - t0) / 1000;
  progress.stop();
  const join = (parts: Tensor[]): Tensor => (parts.length === 1 ? parts[0]! : concatBatch(parts));
  const sum = (f: (r: GenerateResult) => number): number => results.reduce((t, r) => t + f(r), 0);
  const rawFlops = sum((r) => r.attention.rawFlops);
  return {
    latents: join(results.map((r) => r.latents)),
    images: results.every((r) => r.images) ? join(results.map((r) => r.images!)) : null,
    seconds,
    attentionMs: sum((r) => r.timings.attentionMs),
    attentionFlopsFraction: rawFlops === 0 ? 0 : sum((r) => r.attention.flops) / rawFlops,
    fallbacks: sum((r) => r.attention.fallbacks),
    cacheBytesPeak: Math.max(...results.map((r) => r.cache.peakBytes)),
  };
}
