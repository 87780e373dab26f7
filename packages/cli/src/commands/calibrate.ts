import { writeFile } from 'node:fs/promises';
import { serializePlan, type PlanDocument } from '@ditfa/core';
import { explain, resolveThreshold, searchPlan, type CalibrationTarget, type LossSpace } from '@ditfa/planner';
import { createRng } from '@ditfa/samplers';
import { UsageError } from '../errors.js';
import type { Output } from '../output.js';
import type { Progress } from '../progress.js';
import { openPipeline, samplerKind } from '../session.js';
import { calibrateOpenSora, isOpenSoraModel } from './opensora.js';

export interface CalibrateOptions {
  readonly model: string;
  readonly threshold: string;
  readonly steps: number;
  readonly sampler: string;
  readonly guidance: number;
  readonly calib: number;
  readonly seed: number;
  readonly window?: number;
  readonly threads?: number;
  readonly out: string;
  readonly mode?: 'prefix' | 'naive';
  /** Candidate methods of the search (default: the planner's, the paper's four). */
  readonly candidates?: readonly string[];
  /** Where the search measures its loss (default: the planner's, `output`). */
  readonly lossOn?: LossSpace;
  /** Attention sites the search may compress (default: the planner's, the self-attention sites). */
  readonly sites?: readonly string[];
  /** Open-Sora: the calibration captions (the file's batch) and the pixel size. */
  readonly captionEmbeddings?: string;
  readonly frames?: number;
  readonly height?: number;
  readonly width?: number;
  readonly fps?: number;
  /** Options left at their defaults (an Open-Sora model then samples as its official inference). */
  readonly defaulted?: readonly string[];
}

/** Class labels of the calibration batch: drawn from the seed, like the reference code's random labels. */
export function calibrationLabels(n: number, classes: number, seed: number): number[] {
  const rng = createRng(seed);
  return Array.from({ length: n }, () => Math.min(classes - 1, Math.floor(rng.uniform() * classes)));
}

/** The search options a command may pass on: candidates, loss space, sites (each absent: the planner's default). */
interface SearchChoices {
  readonly candidates?: readonly string[];
  readonly lossOn?: LossSpace;
  readonly sites?: readonly string[];
}

/**
 * The plan search on a calibration target with a progress bar (a tick per decided (step, layer)), the plan
 * written to `o.out` and reported (`explain()`, or JSON). Shared by every model family's `calibrate`.
 */
export async function searchAndWrite(
  target: CalibrationTarget<unknown>,
  o: { readonly threshold: string; readonly mode: 'prefix' | 'naive'; readonly steps: number; readonly out: string } & SearchChoices,
  out: Output,
  progress: Progress,
  signal?: AbortSignal,
): Promise<PlanDocument> {
  const threshold = resolveThreshold(o.threshold);
  const unknown = (o.candidates ?? []).filter((c) => c !== 'full' && !target.strategies.get(c));
  if (unknown.length > 0) {
    throw new UsageError(`Unknown candidate method${unknown.length > 1 ? 's' : ''} ${unknown.map((c) => `"${c}"`).join(', ')}: this model's pipeline has ${target.strategies.names().filter((n) => n !== 'full').join(', ')}`);
  }
  const layers = target.layers;
  progress.start(o.steps * layers.length, `calibrating ${threshold.name ?? `δ=${threshold.delta}`}`);
  const plan = await searchPlan(target, {
    threshold: o.threshold,
    mode: o.mode,
    ...searchChoices(o),
    generator: 'ditfa calibrate',
    ...(signal ? { signal } : {}),
    onProgress: (e) => {
      if (e.type === 'layer-decided') progress.update(e.step * layers.length + e.layer + 1, `step ${e.step} layer ${layers[e.layer]!.id}: ${e.method}`);
      if (e.type === 'step-done' && e.step === 0) progress.update(layers.length, 'step 0: full');
    },
  });
  progress.stop();
  await writeFile(o.out, serializePlan(plan));
  out.result({ out: o.out, threshold: plan.threshold, totals: plan.totals, fingerprint: plan.fingerprint }, () => `${explain(plan)}plan written to ${o.out}\n`);
  return plan;
}

/** The search options a command passes on when given: candidates, loss space, sites. */
export function searchChoices(o: SearchChoices): SearchChoices {
  return { ...(o.candidates ? { candidates: o.candidates } : {}), ...(o.lossOn ? { lossOn: o.lossOn } : {}), ...(o.sites ? { sites: o.sites } : {}) };
}

/** Runs the plan search on a model directory and returns the plan (also written to `options.out`). */
export async function calibrate(options: CalibrateOptions, out: Output, progress: Progress, signal?: AbortSignal): Promise<PlanDocument> {
  if (isOpenSoraModel(options.model)) return calibrateOpenSora(options, out, progress, signal);
  resolveThreshold(options.threshold); // a bad threshold is a usage error before the model loads
  const pipe = await openPipeline(options.model, { ...(options.threads ? { threads: options.threads } : {}), ...(options.window === undefined ? {} : { window: options.window }), warn: out.warn });
  try {
    const config = pipe.model.config;
    if (config.family !== 'dit') {
      throw new UsageError('Calibration from the command line supports class-conditional DiT models; for PixArt-Σ call the planner with caption embeddings from code');
    }
    const classLabels = calibrationLabels(options.calib, config.numClasses, options.seed);
    const target = pipe.calibrationTarget({ classLabels, seed: options.seed, steps: options.steps, guidanceScale: options.guidance, sampler: samplerKind(options.sampler) });
    return await searchAndWrite(
      target as CalibrationTarget<unknown>,
      { threshold: options.threshold, mode: options.mode ?? 'prefix', steps: options.steps, out: options.out, ...searchChoices(options) },
      out,
      progress,
      signal,
    );
  } finally {
    progress.stop();
    await pipe.dispose();
  }
}
