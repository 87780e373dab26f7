import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { psnr, type PlanDocument } from '@ditfa/core';
import type { GenerateOptions, GenerateResult, Pipeline } from '@ditfa/models-dit';
import { Judge, type Scores } from '@ditfa/quality';
import { readPlan } from '../io.js';
import type { Output } from '../output.js';
import type { Progress } from '../progress.js';
import { bundledModelsRoot, openPipeline, planWindows } from '../session.js';
import { buildRequest } from './generate.js';

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
  readonly quality: Scores | null;
}

/** Classes 0, 1, … (at most 10 of them, and no more than the samples), repeated to fill the batch. */
export function defaultClasses(pipe: Pipeline, samples: number): number[] {
  const c = pipe.model.config;
  return c.family === 'dit' ? Array.from({ length: Math.min(c.numClasses, 10, samples) }, (_, i) => i) : [];
}

/** The classifier that judges samples of a model: `<model>/../fashion-classifier.onnx` or the bundled one. */
export function findJudgeFiles(modelDir: string): { classifier: string; stats: string } | null {
  const bundled = bundledModelsRoot();
  for (const dir of [path.dirname(path.resolve(modelDir)), ...(bundled === null ? [] : [bundled])]) {
    const classifier = path.join(dir, 'fashion-classifier.onnx');
    const stats = path.join(dir, 'fashion-classifier-stats.safetensors');
    if (existsSync(classifier) && existsSync(stats)) return { classifier, stats };
  }
  return null;
}

/** Whether a judge trained on the model's data applies: a pixel-space 1×32×32 model with 10 classes. */
export function judgeApplies(pipe: Pipeline): boolean {
  const c = pipe.model.config;
  return c.family === 'dit' && c.inChannels === 1 && c.inputSize === 32 && c.numClasses === 10;
}

/** Runs one generation and measures it against the raw one. */
export async function measure(pipe: Pipeline, request: GenerateOptions, plan: PlanDocument | null, raw: GenerateResult | null, judge: Judge | null, progress: Progress, label: string): Promise<{ result: GenerateResult; measure: RunMeasure }> {
  progress.start(request.steps, label);
  const t0 = performance.now();
  const result = await pipe.generate({ ...request, ...(plan ? { plan } : {}), onProgress: (e) => progress.update(e.step) });
  const seconds = (performance.now() - t0) / 1000;
  progress.stop();
  const labels = 'classLabels' in request ? request.classLabels : null;
  const quality = judge && labels && result.images ? await judge.score(result.images, labels) : null;
  const a = raw?.images ?? raw?.latents;
  const b = result.images ?? result.latents;
  return {
    result,
    measure: {
      seconds,
      attentionSeconds: result.timings.attentionMs / 1000,
      otherSeconds: seconds - result.timings.attentionMs / 1000,
      cacheBytesPeak: result.cache.peakBytes,
      attentionFlopsFraction: result.attention.fraction,
      fallbacks: result.attention.fallbacks,
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
}

const fmt = (m: RunMeasure): string =>
  `${m.seconds.toFixed(2)} s (attention ${m.attentionSeconds.toFixed(2)} s, other ${m.otherSeconds.toFixed(2)} s), attention FLOPs ${(100 * m.attentionFlopsFraction).toFixed(1)} %, ` +
  `cache peak ${(m.cacheBytesPeak / 2 ** 20).toFixed(2)} MiB` +
  (m.fallbacks > 0 ? `, ${m.fallbacks} fallbacks from the plan` : '') +
  (m.psnrVsRaw !== null ? `, PSNR vs raw ${Number.isFinite(m.psnrVsRaw) ? m.psnrVsRaw.toFixed(2) : '∞'} dB` : '') +
  (m.quality ? `, accuracy ${(100 * m.quality.accuracy).toFixed(1)} %, Fréchet ${m.quality.frechet.toFixed(3)}` : '');

/** `ditfa bench`: the same seeds raw and under a plan, measured in one run. */
export async function bench(o: BenchOptions, out: Output, progress: Progress): Promise<void> {
  const plan = await readPlan(o.plan);
  const pipe = await openPipeline(o.model, { ...(o.threads ? { threads: o.threads } : {}), window: planWindows(plan) });
  const judgeFiles = judgeApplies(pipe) ? findJudgeFiles(o.model) : null;
  const judge = judgeFiles ? await Judge.create(judgeFiles) : null;
  try {
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
    const raw = await measure(pipe, request, null, null, judge, progress, 'raw');
    const planned = await measure(pipe, request, plan, raw.result, judge, progress, 'plan');
    const speedup = raw.measure.seconds / planned.measure.seconds;
    out.result(
      { model: o.model, plan: o.plan, samples: raw.result.latents.shape[0], steps: fp.steps, raw: raw.measure, planned: planned.measure, speedup, attentionSpeedup: raw.measure.attentionSeconds / planned.measure.attentionSeconds },
      () => `raw:  ${fmt(raw.measure)}\nplan: ${fmt(planned.measure)}\nspeed-up ${speedup.toFixed(2)}× end to end, ${(raw.measure.attentionSeconds / planned.measure.attentionSeconds).toFixed(2)}× in attention\n`,
    );
  } finally {
    progress.stop();
    await judge?.dispose();
    await pipe.dispose();
  }
}
