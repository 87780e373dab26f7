import { writeFile } from 'node:fs/promises';
import { readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { tensor, type PlanDocument, type Tensor } from '@ditfa/core';
import { encodePng, imageGrid, tensorToImages } from '@ditfa/image';
import type { GenerateOptions, Pipeline } from '@ditfa/models-dit';
import { InputFileError, UsageError } from '../errors.js';
import { readPlan } from '../io.js';
import type { Output } from '../output.js';
import type { Progress } from '../progress.js';
import { openPipeline, planWindows, samplerKind } from '../session.js';
import { generateOpenSora, isOpenSoraModel } from './opensora.js';

export interface GenerateCliOptions {
  readonly model: string;
  readonly plan?: string;
  readonly class?: number[];
  readonly captionEmbeddings?: string;
  readonly vaeDecoder?: string;
  readonly seed: number;
  readonly steps: number;
  readonly guidance: number;
  readonly batch: number;
  readonly sampler: string;
  readonly threads?: number;
  readonly out: string;
  /** Open-Sora: pixel frames, height, width, fps, and an animated PNG of the frames. */
  readonly frames?: number;
  readonly height?: number;
  readonly width?: number;
  readonly fps?: number;
  readonly animation?: string;
  /** Open-Sora: given frames (safetensors with "latents" [N, C, T, H, W] and "frames" [N, T], nonzero = given). */
  readonly reference?: string;
  /** Open-Sora pixel-space bundle: a PNG as every clip's given first frame. */
  readonly firstFrame?: string;
  /** Options left at their defaults (an Open-Sora model then samples as its official inference). */
  readonly defaulted?: readonly string[];
}

/** Builds the generate() request of a DiT (class labels) or PixArt (caption embeddings file) model. */
export function buildRequest(pipe: Pipeline, o: Omit<GenerateCliOptions, 'model' | 'out' | 'plan'>, plan?: PlanDocument): GenerateOptions {
  const common = { seed: o.seed, steps: o.steps, guidanceScale: o.guidance, sampler: samplerKind(o.sampler), ...(plan ? { plan } : {}) };
  const config = pipe.model.config;
  if (config.family === 'dit') {
    if (o.captionEmbeddings) throw new UsageError('Expected --class for a class-conditional DiT model but received --caption-embeddings');
    const classes = o.class ?? [];
    if (classes.length === 0) throw new UsageError('Expected --class <id...> for a class-conditional DiT model');
    for (const c of classes) if (c >= config.numClasses) throw new UsageError(`Expected class ids in [0, ${config.numClasses - 1}] but received ${c}`);
    // --batch samples: the classes repeated in order
    const classLabels = Array.from({ length: Math.max(o.batch, classes.length) }, (_, i) => classes[i % classes.length]!);
    return { ...common, classLabels };
  }
  if (!o.captionEmbeddings) throw new UsageError('Expected --caption-embeddings <file.safetensors> (tensors "captions" [N, Lt, C] and optional "mask" [N, Lt]) for a PixArt-Σ model');
  let file;
  try {
    file = readSafetensors(o.captionEmbeddings);
  } catch (cause) {
    throw new InputFileError(`Cannot read the caption embeddings ${JSON.stringify(o.captionEmbeddings)}: ${(cause as Error).message}`, { cause });
  }
  const captions = file.tensors.get('captions');
  if (!captions) throw new InputFileError(`Expected a "captions" tensor in ${o.captionEmbeddings} but it holds ${[...file.tensors.keys()].join(', ')}`);
  const mask = file.tensors.get('mask');
  return { ...common, captions: tensor(toFloat32(captions), captions.shape), ...(mask ? { mask: Array.from(toFloat32(mask)) } : {}) };
}

/** Writes one PNG grid of the generated samples. */
export async function writeGrid(result: { readonly images?: Tensor | null }, file: string, columns?: number): Promise<{ width: number; height: number }> {
  if (!result.images) throw new UsageError('Expected decodable samples: pass --vae-decoder for a latent-space model');
  const images = tensorToImages(result.images);
  const grid = imageGrid(images, { columns: columns ?? Math.min(images.length, 10), scale: images[0]!.width < 64 ? 2 : 1 });
  await writeFile(file, encodePng(grid));
  return { width: grid.width, height: grid.height };
}

export async function generate(o: GenerateCliOptions, out: Output, progress: Progress, signal?: AbortSignal): Promise<void> {
  if (isOpenSoraModel(o.model)) return generateOpenSora(o, out, progress, signal);
  if (o.reference !== undefined || o.firstFrame !== undefined) {
    throw new UsageError(`Expected an Open-Sora model for ${o.reference !== undefined ? '--reference' : '--first-frame'} (frame conditioning); DiT and PixArt-Σ generate every latent`);
  }
  const plan = o.plan ? await readPlan(o.plan) : undefined;
  const pipe = await openPipeline(o.model, {
    warn: out.warn,
    ...(o.threads ? { threads: o.threads } : {}),
    ...(plan ? { window: planWindows(plan) } : {}),
    ...(o.vaeDecoder ? { vae: o.vaeDecoder } : {}),
  });
  try {
    const request = buildRequest(pipe, o, plan);
    progress.start(o.steps, plan ? 'generating (plan)' : 'generating (raw)');
    const result = await pipe.generate({ ...request, ...(signal ? { signal } : {}), onProgress: (e) => progress.update(e.step) });
    progress.stop();
    const size = await writeGrid(result, o.out);
    out.result(
      { out: o.out, image: size, samples: result.latents.shape[0], timings: result.timings, cacheBytesPeak: result.cache.peakBytes, plan: o.plan ?? null },
      () =>
        `${result.latents.shape[0]} samples in ${((result.timings.attentionMs + result.timings.otherMs) / 1000).toFixed(2)} s ` +
        `(attention ${(result.timings.attentionMs / 1000).toFixed(2)} s) → ${o.out}\n`,
    );
  } finally {
    progress.stop();
    await pipe.dispose();
  }
}
