import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fromFloat32, readSafetensors, toFloat32, writeSafetensors } from '@ditfa/checkpoint';
import { type AttentionLayer, type PlanDocument, type Tensor, psnr, tensor, type WindowSpec } from '@ditfa/core';
import { decodePng } from '@ditfa/image';
import {
  type ModelBundle,
  type OpenSoraGenerateOptions,
  type Pipeline as OpenSoraPipeline,
  type PipelineEvent,
  bundleSampler,
  classCaptions,
  createPipeline,
  isOpenSoraJson,
  loadModel,
  maskValues,
  officialSampling,
  readModelBundle,
  videoAnimation,
  videoGrid,
} from '@ditfa/models-opensora';
import { resolveThreshold, type CalibrationTarget, type LossSpace } from '@ditfa/planner';
import { type SamplerFactory, samplerFactory } from '@ditfa/samplers';
import { calibrationLabels, searchAndWrite, searchChoices } from './calibrate.js';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import { InputFileError, UsageError } from '../errors.js';
import { readPlan } from '../io.js';
import type { Output } from '../output.js';
import type { Progress } from '../progress.js';
import { planWindows } from '../session.js';

/**
 * The commands on an Open-Sora model folder (`config.json` with `model_type` STDiT2/STDiT3 + weights):
 * caption embeddings from a safetensors file (`captions` [N, L, C] or [N, 1, L, C], optional `mask`
 * [N, L]), the pixel size from `--frames/--height/--width` (default: the version's official 240p size),
 * and the version's official sampling where `--steps`, `--guidance` and `--sampler` were not given
 * (v1.1: IDDPM 100 steps, CFG 7 on 3 channels; v1.2: rectified flow with the timestep transform, 30
 * steps, CFG 7). A model folder with a `ditfa` section in its `config.json` (the bundled
 * models/fashion-stdit3: see `readModelBundle`) brings its own clip size, fps, sampling and class
 * captions instead: `--class` picks the captions, and a pixel-space model needs no VAE decoder.
 */

/** What the Open-Sora paths of generate, calibrate and bench read from the command line. */
export interface OpenSoraCliOptions {
  readonly model: string;
  readonly captionEmbeddings?: string;
  readonly frames?: number;
  readonly height?: number;
  readonly width?: number;
  readonly fps?: number;
  readonly seed: number;
  readonly steps: number;
  readonly guidance: number;
  readonly sampler: string;
  readonly threads?: number;
  /** A bundle's class captions: class ids, repeated to fill `batch`. */
  readonly class?: readonly number[];
  readonly batch?: number;
  /** Options the user left at their (DiT) defaults: Open-Sora takes its official values for those. */
  readonly defaulted?: readonly string[];
}

/** True when `dir` holds an Open-Sora model (its `config.json` names STDiT2/STDiT3 or has their fields). */
export function isOpenSoraModel(dir: string): boolean {
  const file = path.join(dir, 'config.json');
  if (!existsSync(dir) || !statSync(dir).isDirectory() || !existsSync(file)) return false;
  try {
    const json = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return typeof json === 'object' && json !== null && isOpenSoraJson(json as Record<string, unknown>);
  } catch {
    return false;
  }
}

/** Opens an Open-Sora model folder as a pipeline with every built-in strategy. */
export async function openOpenSora(
  dir: string,
  options: { threads?: number; window?: (layer: AttentionLayer) => WindowSpec | null; decoder?: string; warn?: (text: string) => void; onEvent?: (e: PipelineEvent) => void } = {},
): Promise<OpenSoraPipeline> {
  const model = await loadModel(dir, options.threads === undefined ? {} : { threads: options.threads });
  const bundle = readModelBundle(dir);
  return createPipeline(model, {
    ...(bundle?.pixelSpace ? { pixelSpace: true } : {}),
    strategies: [...warsStrategies(), ...astStrategies(), ...ascStrategies()],
    ...(options.window ? { window: options.window } : {}),
    ...(options.decoder === undefined ? {} : { decoder: options.decoder }),
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    onEvent: (e) => {
      if (e.type === 'backend' && e.fallbackReason) options.warn?.(e.fallbackReason);
      options.onEvent?.(e);
    },
  });
}

/** Reads `captions` (or `y`) and the optional `mask` of a caption-embeddings file. */
export function readCaptionEmbeddings(file: string | undefined): { captions: Tensor; mask?: number[] } {
  if (!file) throw new UsageError('Expected --caption-embeddings <file.safetensors> (tensors "captions" [N, L, C] — the T5 states — and optional "mask" [N, L]) for an Open-Sora model');
  let tensors;
  try {
    tensors = readSafetensors(file).tensors;
  } catch (cause) {
    throw new InputFileError(`Cannot read the caption embeddings ${JSON.stringify(file)}: ${(cause as Error).message}`, { cause });
  }
  const y = tensors.get('captions') ?? tensors.get('y');
  if (!y) throw new InputFileError(`Expected a "captions" tensor in ${file} but it holds ${[...tensors.keys()].join(', ')}`);
  const mask = tensors.get('mask');
  const shape = y.shape.length === 4 && y.shape[1] === 1 ? [y.shape[0]!, y.shape[2]!, y.shape[3]!] : [...y.shape];
  return { captions: tensor(toFloat32(y), shape), ...(mask ? { mask: maskValues(mask) } : {}) };
}

/** The sampler of a name (`--sampler`, or a plan's fingerprint) for this version and pixel size. */
export function openSoraSampler(version: 'stdit2' | 'stdit3', name: string, size: { frames: number; height: number; width: number }): SamplerFactory {
  // the names the samplers themselves carry (plan fingerprints): `rflow` is plain, `rflow+transform(…)` Open-Sora 1.2's
  if (name.startsWith('rflow+transform')) return officialSampling({ version: 'stdit3' }, size).sampler;
  if (name === 'rflow' || name === 'rflow-plain') return samplerFactory({ kind: 'rflow' });
  if (name === 'iddpm' || name === 'iddpm-opensora') return samplerFactory({ kind: 'iddpm', iddpmVariant: 'opensora' });
  if (name === 'dpm++' || name === 'dpmpp-2m') return samplerFactory({ kind: 'dpmpp-2m' });
  if (name === 'ddim') return samplerFactory({ kind: 'ddim' });
  throw new UsageError(`Expected --sampler rflow, rflow+transform, iddpm, dpm++ or ddim for an Open-Sora ${version} model but received ${JSON.stringify(name)}`);
}

/** The class ids of a bundle request: `--class` repeated to fill `--batch`, else 0, 1, … up to the batch. */
function requestClasses(o: Pick<OpenSoraCliOptions, 'class' | 'batch'>, classes: number): number[] {
  const ids = o.class && o.class.length > 0 ? o.class : Array.from({ length: Math.min(classes, o.batch ?? 1) }, (_, i) => i);
  for (const c of ids) if (c >= classes) throw new UsageError(`Expected class ids in [0, ${classes - 1}] but received ${c}`);
  return Array.from({ length: Math.max(o.batch ?? 1, ids.length) }, (_, i) => ids[i % ids.length]!);
}

/**
 * The generate() request of a model bundle (a `ditfa` section in `config.json`): its clip size, fps and
 * sampling unless given, captions from `--caption-embeddings` or else the bundle's class captions.
 * Returns the class of each sample too (null with a caption file).
 */
export function bundleCliRequest(bundle: ModelBundle, o: Omit<OpenSoraCliOptions, 'model'>, plan?: PlanDocument): { request: OpenSoraGenerateOptions; labels: number[] | null } {
  const defaulted = new Set(o.defaulted ?? []);
  const v = bundle.video;
  const size = { frames: o.frames ?? v.frames, height: o.height ?? v.height, width: o.width ?? v.width };
  let labels: number[] | null = null;
  let cap: { captions: Tensor; mask?: readonly number[] };
  if (o.captionEmbeddings) cap = readCaptionEmbeddings(o.captionEmbeddings);
  else {
    if (!bundle.classCaptions) throw new UsageError(`Expected --caption-embeddings: ${bundle.dir} has no class captions`);
    labels = requestClasses(o, bundle.classCaptions.names.length);
    cap = classCaptions(bundle, labels);
  }
  return {
    labels,
    request: {
      captions: cap.captions,
      ...(cap.mask ? { mask: cap.mask } : {}),
      ...size,
      fps: o.fps ?? v.fps,
      ...(bundle.pixelSpace ? { latentSize: size } : {}),
      seed: o.seed,
      steps: defaulted.has('steps') ? bundle.sampling.steps : o.steps,
      guidanceScale: defaulted.has('guidance') ? bundle.sampling.guidance : o.guidance,
      guidanceChannels: 'all',
      sampler: defaulted.has('sampler') ? bundleSampler(bundle) : openSoraSampler('stdit3', o.sampler, size),
      ...(plan ? { plan } : {}),
    },
  };
}

/** The generate() request of an Open-Sora model (a bundle's when `bundle` is given). */
export function openSoraRequest(pipe: OpenSoraPipeline, o: Omit<OpenSoraCliOptions, 'model'>, plan?: PlanDocument, bundle?: ModelBundle | null): OpenSoraGenerateOptions {
  if (bundle) return bundleCliRequest(bundle, o, plan).request;
  const version = pipe.model.config.version;
  const size = pipe.model.videoSize({ ...(o.frames ? { frames: o.frames } : {}), ...(o.height ? { height: o.height } : {}), ...(o.width ? { width: o.width } : {}) });
  pipe.model.latent(size); // the size's own error (frames v1.2 cannot take, …) before the sampler's
  const official = officialSampling(pipe.model.config, size);
  const defaulted = new Set(o.defaulted ?? []);
  const { captions, mask } = readCaptionEmbeddings(o.captionEmbeddings);
  return {
    captions,
    ...(mask ? { mask } : {}),
    ...size,
    ...(o.fps === undefined ? {} : { fps: o.fps }),
    seed: o.seed,
    steps: defaulted.has('steps') ? official.steps : o.steps,
    guidanceScale: defaulted.has('guidance') ? official.guidanceScale : o.guidance,
    guidanceChannels: official.guidanceChannels,
    sampler: defaulted.has('sampler') ? official.sampler : openSoraSampler(version, o.sampler, size),
    ...(plan ? { plan } : {}),
  };
}

export interface OpenSoraGenerateCliOptions extends OpenSoraCliOptions {
  readonly plan?: string;
  readonly vaeDecoder?: string;
  readonly animation?: string;
  /** Given frames: safetensors with "latents" [N, C, T, H, W] and "frames" [N, T] (nonzero = given). */
  readonly reference?: string;
  /** A pixel-space bundle's first frame for every clip, as a PNG of the bundle's size (image-to-video). */
  readonly firstFrame?: string;
  readonly out: string;
}

/**
 * `--first-frame`: a PNG of a pixel-space bundle's frame size as the given first frame of each of `n` clips
 * (`[0, 255]` → `[-1, 1]`; one channel takes the luminance, three the RGB; alpha is ignored).
 */
export async function firstFrameReference(file: string, bundle: ModelBundle | null, latent: { channels: number; frames?: number; height: number; width: number }, n: number): Promise<{ latents: Tensor; frames: number[] }> {
  let png;
  try {
    png = decodePng(await readFile(file));
  } catch (cause) {
    throw new InputFileError(`Cannot read the first frame ${JSON.stringify(file)}: ${(cause as Error).message}`, { cause });
  }
  const { channels: C, height: H, width: W } = latent;
  const T = latent.frames ?? 1;
  if (png.width !== W || png.height !== H) {
    throw new InputFileError(`Expected a ${W}×${H} first frame (the model's frame size${bundle ? ` in ${bundle.dir}` : ''}) but ${file} is ${png.width}×${png.height}`);
  }
  if (C !== 1 && C !== 3) throw new UsageError(`Expected a model of 1 or 3 pixel channels for --first-frame but it has ${C}`);
  const latents = new Float32Array(n * C * T * H * W);
  const px = png.data, k = png.channels;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const o = (y * W + x) * k;
      const rgb = k >= 3 ? [px[o]!, px[o + 1]!, px[o + 2]!] : [px[o]!, px[o]!, px[o]!];
      const values = C === 1 ? [0.299 * rgb[0]! + 0.587 * rgb[1]! + 0.114 * rgb[2]!] : rgb;
      for (let b = 0; b < n; b++) {
        for (let c = 0; c < C; c++) latents[(((b * C + c) * T) * H + y) * W + x] = (values[c]! / 255) * 2 - 1;
      }
    }
  }
  return { latents: tensor(latents, [n, C, T, H, W]), frames: Array.from({ length: n * T }, (_, i) => (i % T === 0 ? 1 : 0)) };
}

/**
 * `--reference`: the given frames of a generation (Open-Sora's image-to-video / video extension) from a
 * safetensors file — "latents" `[N, C, T, H, W]` (for a pixel-space bundle, the frames in [-1, 1]) and
 * "frames" `[N, T]`, nonzero where the frame is given. Shapes are checked against the generation by the adapter.
 */
export function readReference(file: string): { latents: Tensor; frames: number[] } {
  let tensors;
  try {
    tensors = readSafetensors(file).tensors;
  } catch (cause) {
    throw new InputFileError(`Cannot read the reference ${JSON.stringify(file)}: ${(cause as Error).message}`, { cause });
  }
  const latents = tensors.get('latents');
  const frames = tensors.get('frames');
  if (!latents || !frames) {
    throw new InputFileError(`Expected "latents" [N, C, T, H, W] and "frames" [N, T] tensors in ${file} but it holds ${[...tensors.keys()].join(', ') || 'none'}`);
  }
  if (latents.shape.length !== 5) throw new InputFileError(`Expected "latents" of rank 5 [N, C, T, H, W] in ${file} but received [${latents.shape.join(', ')}]`);
  return { latents: tensor(toFloat32(latents), [...latents.shape]), frames: maskValues(frames) };
}

/** `ditfa generate` on an Open-Sora model: a frame grid (row per sample, column per frame), an APNG, or the latents. */
export async function generateOpenSora(o: OpenSoraGenerateCliOptions, out: Output, progress: Progress, signal?: AbortSignal): Promise<void> {
  const toLatents = o.out.endsWith('.safetensors');
  const bundle = readModelBundle(o.model);
  if (o.reference !== undefined && o.firstFrame !== undefined) throw new UsageError('Expected --reference or --first-frame, not both');
  if (o.firstFrame !== undefined && !bundle?.pixelSpace) {
    throw new UsageError('Expected a pixel-space model bundle (such as the bundled models/fashion-stdit3) for --first-frame; give latent-space models their frames with --reference');
  }
  if (!toLatents && !o.vaeDecoder && !bundle?.pixelSpace) {
    throw new UsageError('Expected --vae-decoder <file.onnx> (Open-Sora\'s VAE decode: latents [B, C, T, H, W] → frames) to write frames, or --out <file.safetensors> for the latents');
  }
  const plan = o.plan ? await readPlan(o.plan) : undefined;
  const pipe = await openOpenSora(o.model, { warn: out.warn, ...(o.threads ? { threads: o.threads } : {}), ...(plan ? { window: planWindows(plan) } : {}), ...(o.vaeDecoder ? { decoder: o.vaeDecoder } : {}) });
  try {
    const base = openSoraRequest(pipe, o, plan, bundle);
    const reference = o.reference ? readReference(o.reference) : o.firstFrame ? await firstFrameReference(o.firstFrame, bundle, pipe.model.latent(base), base.captions.shape[0]!) : null;
    const request = { ...base, ...(reference ? { reference } : {}) };
    progress.start(request.steps, plan ? 'generating (plan)' : 'generating (raw)');
    const result = await pipe.generate({ ...request, images: !toLatents, ...(signal ? { signal } : {}), onProgress: (e) => progress.update(e.step) });
    progress.stop();
    let image: { width: number; height: number } | null = null;
    if (toLatents) {
      await writeFile(o.out, writeSafetensors(new Map([['latents', fromFloat32(result.latents.data, result.latents.shape)]])));
    } else {
      const png = videoGrid(result.images!, bundle?.pixelSpace ? { scale: 2 } : {});
      await writeFile(o.out, png);
      image = { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
      const fps = bundle ? bundle.video.fps : pipe.model.config.version === 'stdit2' ? 8 : 24;
      if (o.animation) await writeFile(o.animation, videoAnimation(result.images!, { fps, ...(bundle?.pixelSpace ? { scale: 2 } : {}) }));
    }
    out.result(
      { out: o.out, animation: o.animation ?? null, image, latents: result.latents.shape, samples: result.latents.shape[0], sampler: result.sampler, steps: request.steps, timings: result.timings, attention: result.attention, cacheBytesPeak: result.cache.peakBytes, plan: o.plan ?? null },
      () =>
        `${result.latents.shape[0]} videos (latent ${result.latents.shape.slice(2).join('×')}) in ${((result.timings.attentionMs + result.timings.otherMs) / 1000).toFixed(2)} s ` +
        `(attention ${(result.timings.attentionMs / 1000).toFixed(2)} s, ${result.sampler}, ${request.steps} steps) → ${o.out}${o.animation ? ` and ${o.animation}` : ''}\n`,
    );
  } finally {
    progress.stop();
    await pipe.dispose();
  }
}

export interface OpenSoraCalibrateCliOptions extends OpenSoraCliOptions {
  readonly threshold: string;
  /** A bundle's calibration clips (classes drawn from the seed) when no caption file is given. */
  readonly calib?: number;
  readonly mode?: 'prefix' | 'naive';
  /** Candidate methods of the search (default: the planner's). */
  readonly candidates?: readonly string[];
  /** Where the search measures its loss (default: the planner's, `output`). */
  readonly lossOn?: LossSpace;
  /** Attention sites the search may compress (default: the planner's, the self-attention sites). */
  readonly sites?: readonly string[];
  readonly out: string;
}

/** `ditfa calibrate` on an Open-Sora model: the calibration batch is the caption file's captions. */
export async function calibrateOpenSora(o: OpenSoraCalibrateCliOptions, out: Output, progress: Progress, signal?: AbortSignal): Promise<PlanDocument> {
  resolveThreshold(o.threshold); // a bad threshold is a usage error before the model loads
  const pipe = await openOpenSora(o.model, { warn: out.warn, ...(o.threads ? { threads: o.threads } : {}) });
  try {
    const bundle = readModelBundle(o.model);
    const classes = bundle?.classCaptions && !o.captionEmbeddings ? calibrationLabels(o.calib ?? 8, bundle.classCaptions.names.length, o.seed) : undefined;
    const request = openSoraRequest(pipe, classes ? { ...o, class: classes, batch: classes.length } : o, undefined, bundle);
    return await searchAndWrite(pipe.calibrationTarget(request) as CalibrationTarget<unknown>, { threshold: o.threshold, mode: o.mode ?? 'prefix', steps: request.steps, out: o.out, ...searchChoices(o) }, out, progress, signal);
  } finally {
    progress.stop();
    await pipe.dispose();
  }
}

export interface OpenSoraBenchCliOptions extends Omit<OpenSoraCliOptions, 'steps' | 'guidance' | 'sampler'> {
  readonly plan: string;
}

/** `ditfa bench` on an Open-Sora model: the same captions and seed raw and under the plan (its steps, sampler and guidance). */
export async function benchOpenSora(o: OpenSoraBenchCliOptions, out: Output, progress: Progress): Promise<void> {
  const plan = await readPlan(o.plan);
  const pipe = await openOpenSora(o.model, { warn: out.warn, ...(o.threads ? { threads: o.threads } : {}), window: planWindows(plan) });
  try {
    const fp = plan.fingerprint;
    const request = openSoraRequest(pipe, { ...o, steps: fp.steps, guidance: fp.guidance ?? 1, sampler: fp.sampler }, undefined, readModelBundle(o.model));
    const run = async (label: string, withPlan: boolean) => {
      progress.start(request.steps, label);
      const t0 = performance.now();
      const r = await pipe.generate({ ...request, ...(withPlan ? { plan } : {}), images: false, onProgress: (e) => progress.update(e.step) });
      progress.stop();
      return { result: r, seconds: (performance.now() - t0) / 1000 };
    };
    // warm-up (sessions, kernels) so neither timed run pays it
    await pipe.generate({ ...request, steps: 1, images: false });
    const raw = await run('raw', false);
    const planned = await run('plan', true);
    const measure = (m: typeof raw, ref: typeof raw | null) => ({
      seconds: m.seconds,
      attentionSeconds: m.result.timings.attentionMs / 1000,
      otherSeconds: m.seconds - m.result.timings.attentionMs / 1000,
      cacheBytesPeak: m.result.cache.peakBytes,
      attentionFlopsFraction: m.result.attention.fraction,
      fallbacks: m.result.attention.fallbacks,
      psnrVsRaw: ref ? psnr(ref.result.latents.data, m.result.latents.data, { peak: 2 }) : null,
    });
    const r = measure(raw, null);
    const p = measure(planned, raw);
    out.result(
      { model: o.model, plan: o.plan, samples: raw.result.latents.shape[0], steps: fp.steps, raw: r, planned: p, speedup: r.seconds / p.seconds, attentionSpeedup: r.attentionSeconds / p.attentionSeconds },
      () =>
        `raw:  ${r.seconds.toFixed(2)} s (attention ${r.attentionSeconds.toFixed(2)} s)\n` +
        `plan: ${p.seconds.toFixed(2)} s (attention ${p.attentionSeconds.toFixed(2)} s), attention FLOPs ${(100 * p.attentionFlopsFraction).toFixed(1)} %, cache peak ${(p.cacheBytesPeak / 2 ** 20).toFixed(2)} MiB, ` +
        `PSNR of the latents vs raw ${Number.isFinite(p.psnrVsRaw!) ? p.psnrVsRaw!.toFixed(2) : '∞'} dB\nspeed-up ${(r.seconds / p.seconds).toFixed(2)}× end to end\n`,
    );
  } finally {
    progress.stop();
    await pipe.dispose();
  }
}
