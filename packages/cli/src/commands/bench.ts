import * as path from 'node:path';
import { psnr, type PlanDocument, type Tensor } from '@ditfa/core';
import type { GenerateOptions, Pipeline } from '@ditfa/models-dit';
import { createJudges, findJudges, scoreAll, type Judge, type JudgeFiles, type Scores } from '@ditfa/quality';
import { readPlan } from '../io.js';
import type { Output } from '../output.js';
import type { Progress } from '../progress.js';
import { bundledModelsRoot, openPipeline, planWindows } from '../session.js';
import { generateChunks } from './chunks.js';
import { buildRequest } from './generate.js';
import { benchOpenSora, isOpenSoraModel } from './opensora.js';

export interface RunMeasure {
  readonly seconds: number;
  readonly attentionSeconds: number;
  readonly otherSeconds: number;
  readonly cacheBytesPeak: number;
  /** Attention FLOPs of what ran ÷ full attention (the plan's prediction unless strategies fell back). */
  readonly attentionFlopsFraction: number;
  /** (step, layer) calls that fell back from the planned method (a cache budget refused, say). */
  readonly fallbacks: number;
  readonly psnrVsRaw: number | null;
  /** One entry per judge (J1, J2 for the bundled model), empty when no judge applies. */
  readonly quality: readonly Scores[];
}

/** Classes 0, 1, … (at most 10 of them, and no more than the samples), repeated to fill the batch. */
export function defaultClasses(pipe: Pipeline, samples: number): number[] {
  const c = pipe.model.config;
  return c.family === 'dit' ? Array.from({ length: Math.min(c.numClasses, 10, samples) }, (_, i) => i) : [];
}

/**
 * The classifiers that judge samples of a model (J1, J2): each from the folder above the model
 * (`<model>/../fashion-classifier.onnx`, `<model>/../fashion-judge2.onnx`) or else the bundled models folder.
 */
export function findJudgeFiles(modelDir: string): JudgeFiles[] {
  const bundled = bundledModelsRoot();
  return findJudges([path.dirname(path.resolve(modelDir)), ...(bundled === null ? [] : [bundled])]);
}

/** The judges that apply to a pipeline's samples, opened (none when no judge applies). */
export async function openJudges(pipe: Pipeline, modelDir: string): Promise<Judge[]> {
  return judgeApplies(pipe) ? createJudges(findJudgeFiles(modelDir)) : [];
}

/** Whether a judge trained on the model's data applies: a pixel-space 1×32×32 model with 10 classes. */
export function judgeApplies(pipe: Pipeline): boolean {
  const c = pipe.model.config;
  return c.family === 'dit' && c.inChannels === 1 && c.inputSize === 32 && c.numClasses === 10;
}

/** What {@link measure} returns: the samples of every request, joined in order, and their measures. */
export interface MeasuredRun {
  /** Decoded samples `[N, …]` when the model decodes, else null. */
  readonly images: Tensor | null;
  readonly latents: Tensor;
  readonly measure: RunMeasure;
}

/**
 * Runs the generations `requests` (one batch, or the chunks of a larger one) one after the other and
 * measures them together against the raw run `raw`: times and FLOPs summed, the cache peak the largest,
 * the judges and PSNR over every sample.
 */
export async function measure(
  pipe: Pipeline,
  requests: readonly GenerateOptions[],
  plan: PlanDocument | null,
  raw: MeasuredRun | null,
  judges: readonly Judge[],
  progress: Progress,
  label: string,
): Promise<MeasuredRun> {
  const run = await generateChunks(pipe, requests, plan, progress, label);
  const labels = requests.every((r) => 'classLabels' in r) ? requests.flatMap((r) => ('classLabels' in r ? [...r.classLabels] : [])) : null;
  const quality = labels && run.images ? await scoreAll(judges, run.images, labels) : [];
  const attentionSeconds = run.attentionMs / 1000;
  const a = raw?.images ?? raw?.latents;
  const b = run.images ?? run.latents;
  return {
    images: run.images,
    latents: run.latents,
    measure: {
      seconds: run.seconds,
      attentionSeconds,
      otherSeconds: run.seconds - attentionSeconds,
      cacheBytesPeak: run.cacheBytesPeak,
      attentionFlopsFraction: run.attentionFlopsFraction,
      fallbacks: run.fallbacks,
      psnrVsRaw: a && raw ? psnr(a.data, b.data, { peak: 2 }) : null,
      quality,
    },
  };
}

export interface BenchOptions {
  readonly model: string;
  readonly plan: string;
  readonly class?: number[];
  readonly seed: number;
  readonly batch: number;
  readonly threads?: number;
  /** Open-Sora: the captions and the pixel size. */
  readonly captionEmbeddings?: string;
  readonly frames?: number;
  readonly height?: number;
  readonly width?: number;
  readonly fps?: number;
}

const fmt = (m: RunMeasure): string =>
  `${m.seconds.toFixed(2)} s (attention ${m.attentionSeconds.toFixed(2)} s, other ${m.otherSeconds.toFixed(2)} s), attention FLOPs ${(100 * m.attentionFlopsFraction).toFixed(1)} %, ` +
  `cache peak ${(m.cacheBytesPeak / 2 ** 20).toFixed(2)} MiB` +
  (m.fallbacks > 0 ? `, ${m.fallbacks} fallbacks from the plan` : '') +
  (m.psnrVsRaw !== null ? `, PSNR vs raw ${Number.isFinite(m.psnrVsRaw) ? m.psnrVsRaw.toFixed(2) : '∞'} dB` : '') +
  (m.quality.length > 0
    ? `, accuracy ${m.quality.map((q) => `${q.judge} ${(100 * q.accuracy).toFixed(1)} %`).join(' / ')}, Fréchet ${m.quality.map((q) => `${q.judge} ${q.frechet.toFixed(3)}`).join(' / ')}`
    : '');

/** `ditfa bench`: the same seeds raw and under a plan, measured in one run. */
export async function bench(o: BenchOptions, out: Output, progress: Progress): Promise<void> {
  if (isOpenSoraModel(o.model)) return benchOpenSora(o, out, progress);
  const plan = await readPlan(o.plan);
  const pipe = await openPipeline(o.model, { ...(o.threads ? { threads: o.threads } : {}), window: planWindows(plan), warn: out.warn });
  let judges: Judge[] = [];
  try {
    judges = await openJudges(pipe, o.model);
    const fp = plan.fingerprint;
    const request = buildRequest(pipe, {
      class: o.class ?? defaultClasses(pipe, o.batch),
      seed: o.seed,
      steps: fp.steps,
      guidance: fp.guidance ?? 1,
      batch: o.batch,
      sampler: fp.sampler,
    });
    // warm-up (sessions, kernels) so neither timed run pays it
    await pipe.generate({ ...request, steps: 2 });
    const raw = await measure(pipe, [request], null, null, judges, progress, 'raw');
    const planned = await measure(pipe, [request], plan, raw, judges, progress, 'plan');
    const speedup = raw.measure.seconds / planned.measure.seconds;
    out.result(
      { model: o.model, plan: o.plan, samples: raw.latents.shape[0], steps: fp.steps, raw: raw.measure, planned: planned.measure, speedup, attentionSpeedup: raw.measure.attentionSeconds / planned.measure.attentionSeconds },
      () => `raw:  ${fmt(raw.measure)}\nplan: ${fmt(planned.measure)}\nspeed-up ${speedup.toFixed(2)}× end to end, ${(raw.measure.attentionSeconds / planned.measure.attentionSeconds).toFixed(2)}× in attention\n`,
    );
  } finally {
    progress.stop();
    await Promise.all(judges.map((j) => j.dispose()));
    await pipe.dispose();
  }
}
