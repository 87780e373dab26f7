import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { type AttentionLayer, type PlanDocument, type PlanFingerprint, type Tensor, layerShape, psnr, rawAttentionFlops } from '@ditfa/core';
import { type ModelBundle, type OpenSoraGenerateOptions, type Pipeline as OpenSoraPipeline, bundleRequest, readModelBundle, videoAnimation, videoGrid } from '@ditfa/models-opensora';
import { planHeatmapPng, searchedSites, type ThresholdName } from '@ditfa/planner';
import { type Judge, type VideoScores, createJudges, scoreClips } from '@ditfa/quality';
import { InputFileError } from '../errors.js';
import { chunk, generateChunks } from './chunks.js';
import type { Output } from '../output.js';
import type { Progress } from '../progress.js';
import { bundledModelsRoot } from '../session.js';
import { findJudgeFiles } from './bench.js';
import { matchingPlan } from './demo.js';
import { calibrateOpenSora, openOpenSora } from './opensora.js';

/** The bundled video model folder (`models/fashion-stdit3`), or null when this installation has none. */
export function bundledVideoModelDir(): string | null {
  const root = bundledModelsRoot();
  const dir = root === null ? null : path.join(root, 'fashion-stdit3');
  return dir !== null && existsSync(path.join(dir, 'config.json')) ? dir : null;
}

export interface VideoDemoOptions {
  readonly model: string;
  readonly out: string;
  readonly clips: number;
  readonly seed: number;
  readonly calib: number;
  readonly levels: readonly ThresholdName[];
  readonly recalibrate: boolean;
  readonly threads?: number;
  /** Clips per generate call (default {@link VIDEO_CHUNK}); chunk `k` uses seed `seed + k`. */
  readonly chunk?: number;
}

export interface VideoRunMeasure {
  readonly seconds: number;
  readonly attentionSeconds: number;
  /** Attention FLOPs of what ran ÷ full attention, over every layer. */
  readonly attentionFlopsFraction: number;
  /** The plan's attention FLOPs per site (spatial, temporal, spatial-cross, …) ÷ that site's full attention. */
  readonly siteFlopsFraction: Readonly<Record<string, number>>;
  readonly fallbacks: number;
  /** PSNR of the frames against the raw run's (dB, peak 2). */
  readonly psnrVsRaw: number | null;
  readonly scores: VideoScores | null;
}

export interface VideoRow {
  readonly level: string;
  readonly delta: number | null;
  readonly planSource: 'shipped' | 'cached' | 'calibrated' | null;
  readonly measure: VideoRunMeasure;
  readonly grid: string;
  readonly animation: string;
  readonly heatmap: string | null;
}

export interface VideoReport {
  readonly model: string;
  readonly clips: number;
  readonly classes: readonly number[];
  readonly steps: number;
  readonly guidance: number;
  readonly sampler: string;
  readonly judges: readonly string[];
  readonly sites: readonly string[];
  readonly seconds: number;
  readonly rows: readonly VideoRow[];
}

/** Per site, the plan's attention FLOPs ÷ full attention (a raw run: 1 everywhere). */
export function siteFractions(layers: readonly AttentionLayer[], plan: PlanDocument | null): Record<string, number> {
  const num = new Map<string, number>();
  const den = new Map<string, number>();
  const steps = plan ? plan.steps.length : 1;
  for (let s = 0; s < steps; s++) {
    layers.forEach((l, i) => {
      const f = rawAttentionFlops(layerShape(l));
      num.set(l.site, (num.get(l.site) ?? 0) + f * (plan ? plan.steps[s]![i]!.flopsFraction : 1));
      den.set(l.site, (den.get(l.site) ?? 0) + f);
    });
  }
  return Object.fromEntries([...den].map(([site, d]) => [site, d === 0 ? 0 : num.get(site)! / d]));
}

/**
 * The demo's video half: the bundled STDiT3 video model, raw and under each plan D1..D6 (shipped beside
 * the model when their fingerprint matches this run, else calibrated and cached under the output
 * folder), the same seeds and classes; per-frame accuracy under both judges, temporal consistency, PSNR
 * against raw, frame grids, animations and plan heatmaps.
 */
export async function videoDemo(o: VideoDemoOptions, out: Output, progress: Progress): Promise<VideoReport> {
  const started = performance.now();
  const bundle = readModelBundle(o.model);
  if (!bundle?.classCaptions) throw new InputFileError(`Expected a video model bundle (config.json with a "ditfa" section and class captions) in ${o.model}`);
  const classes = Array.from({ length: o.clips }, (_, i) => i % bundle.classCaptions!.names.length);
  // Generated in chunks of at most VIDEO_CHUNK clips (chunk k with seed + k), so that memory stays bounded
  // whatever --video-clips asks for (a 200-clip batch needs over 24 GB); up to VIDEO_CHUNK clips it is one batch.
  const requests = chunk(classes, o.chunk ?? VIDEO_CHUNK, 'clips').map((c, k) => bundleRequest(bundle, { classes: c, seed: o.seed + k }));
  const request = requests[0]!;
  const pipe = await openOpenSora(o.model, { warn: out.warn, ...(o.threads ? { threads: o.threads } : {}) });
  const rows: VideoRow[] = [];
  let judges: Judge[] = [];
  try {
    judges = judgesApply(bundle) ? await createJudges(findJudgeFiles(o.model)) : [];
    const layers = pipe.layers(request);
    const sites = [...new Set(layers.map((l) => l.site))];
    const expected = pipe.fingerprint(request);
    const searched = searchedSites(layers);
    await pipe.generate({ ...request, steps: 1 }); // warm-up (sessions, kernels)

    const raw = await run(pipe, requests, null, null, judges, classes, layers, progress, 'video raw');
    await writeVideo(o.out, 'video-raw', raw.frames, bundle);
    rows.push({ level: 'raw', delta: null, planSource: null, measure: raw.measure, grid: 'video-raw.png', animation: 'video-raw.apng', heatmap: null });
    for (const level of o.levels) {
      const { plan, source } = await videoPlanFor(level, o, expected, searched, out, progress);
      const r = await run(pipe, requests, plan, raw.frames, judges, classes, layers, progress, `video ${level}`);
      await writeVideo(o.out, `video-${level}`, r.frames, bundle);
      const heatmap = `video-${level}-plan.png`;
      await writeFile(path.join(o.out, heatmap), planHeatmapPng(plan));
      rows.push({ level, delta: plan.threshold.delta, planSource: source, measure: r.measure, grid: `video-${level}.png`, animation: `video-${level}.apng`, heatmap });
    }
    return {
      model: o.model,
      clips: o.clips,
      classes,
      steps: request.steps,
      guidance: request.guidanceScale ?? 1,
      sampler: expected.sampler,
      judges: judges.map((j) => j.name),
      sites,
      seconds: (performance.now() - started) / 1000,
      rows,
    };
  } finally {
    progress.stop();
    await Promise.all(judges.map((j) => j.dispose()));
    await pipe.dispose();
  }
}

/** The bundled judges read 1×32×32 Fashion-MNIST frames of ten classes. */
function judgesApply(bundle: ModelBundle): boolean {
  return bundle.pixelSpace && bundle.video.height === 32 && bundle.video.width === 32 && bundle.classCaptions?.names.length === 10;
}

/** Clips per generate call in the video demo. */
export const VIDEO_CHUNK = 50;

async function run(
  pipe: OpenSoraPipeline,
  requests: readonly OpenSoraGenerateOptions[],
  plan: PlanDocument | null,
  raw: Tensor | null,
  judges: readonly Judge[],
  classes: readonly number[],
  layers: readonly AttentionLayer[],
  progress: Progress,
  label: string,
): Promise<{ frames: Tensor; measure: VideoRunMeasure }> {
  const run = await generateChunks(pipe, requests, plan, progress, label);
  const frames = run.images!;
  return {
    frames,
    measure: {
      seconds: run.seconds,
      attentionSeconds: run.attentionMs / 1000,
      attentionFlopsFraction: run.attentionFlopsFraction,
      siteFlopsFraction: siteFractions(layers, plan),
      fallbacks: run.fallbacks,
      psnrVsRaw: raw ? psnr(raw.data, frames.data, { peak: 2 }) : null,
      scores: judges.length > 0 ? await scoreClips(judges, frames, classes) : null,
    },
  };
}

async function writeVideo(dir: string, name: string, frames: Tensor, bundle: ModelBundle): Promise<void> {
  const scale = bundle.video.height <= 64 ? 2 : 1;
  await writeFile(path.join(dir, `${name}.png`), videoGrid(frames, { scale }));
  await writeFile(path.join(dir, `${name}.apng`), videoAnimation(frames, { scale, fps: bundle.video.fps, columns: Math.min(10, frames.shape[0]!) }));
}

async function videoPlanFor(
  level: ThresholdName,
  o: VideoDemoOptions,
  expected: PlanFingerprint,
  sites: readonly string[] | null,
  out: Output,
  progress: Progress,
): Promise<{ plan: PlanDocument; source: 'shipped' | 'cached' | 'calibrated' }> {
  const candidates: Array<[string, 'shipped' | 'cached']> = [
    [path.join(o.out, 'plans', `video-${level}.json`), 'cached'],
    [path.join(o.model, 'plans', `${level}.json`), 'shipped'],
  ];
  const found = o.recalibrate ? null : await matchingPlan(level, candidates, expected, sites, out);
  if (found) return found;
  const file = candidates[0]![0];
  const plan = await calibrateOpenSora(
    {
      model: o.model,
      threshold: level,
      calib: o.calib,
      seed: 3,
      steps: 0,
      guidance: 0,
      sampler: 'rflow',
      defaulted: ['steps', 'guidance', 'sampler'],
      out: file,
      ...(o.threads ? { threads: o.threads } : {}),
    },
    { json: true, result() {}, note: (l) => out.note(l), warn: (t) => out.warn(t) },
    progress,
  );
  return { plan, source: 'calibrated' };
}

const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;

/** The video half of the demo report (Markdown). */
export function videoMarkdown(r: VideoReport): string {
  const raw = r.rows[0]!.measure;
  const names = r.judges.join(' / ');
  const judged = r.judges.length > 0;
  const head = [
    'level',
    'δ',
    ...r.sites.map((s) => `FLOPs ${s}`),
    'attention FLOPs',
    'latency (s)',
    'attention (s)',
    'speed-up',
    ...(judged ? [`per-frame accuracy (${names})`, 'path error (px)', 'frame PSNR (dB)'] : []),
    'PSNR vs raw (dB)',
    'plan',
  ];
  const lines = r.rows.map((row) => {
    const m = row.measure;
    const s = m.scores;
    return `| ${[
      row.level,
      row.delta === null ? '—' : String(row.delta),
      ...r.sites.map((site) => pct(m.siteFlopsFraction[site] ?? 0)),
      pct(m.attentionFlopsFraction),
      m.seconds.toFixed(2),
      m.attentionSeconds.toFixed(2),
      `${(raw.seconds / m.seconds).toFixed(2)}×`,
      ...(judged && s ? [s.judges.map((j) => pct(j.accuracy)).join(' / '), s.pathError.toFixed(2), s.framePsnr.toFixed(2)] : judged ? ['—', '—', '—'] : []),
      m.psnrVsRaw === null ? '—' : Number.isFinite(m.psnrVsRaw) ? m.psnrVsRaw.toFixed(2) : '∞',
      row.planSource ?? '—',
    ].join(' | ')} |`;
  });
  return [
    `## Video: ${r.model}`,
    '',
    `${r.clips} clips (classes ${r.classes.join(', ')}), ${r.steps} ${r.sampler} steps, guidance ${r.guidance}. ${r.seconds.toFixed(0)} s.`,
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...lines,
    '',
    'FLOPs per site: the plan\'s attention FLOPs at that site (every block, every step) ÷ full attention there; attention FLOPs: what ran, all sites.' +
      (r.rows.some((x) => x.measure.fallbacks > 0) ? ` Fallbacks: ${r.rows.filter((x) => x.measure.fallbacks > 0).map((x) => `${x.level} ${x.measure.fallbacks}`).join(', ')}.` : ' No strategy fell back.'),
    judged
      ? `Per-frame accuracy: each frame's item, cropped around its centre, judged by ${names} (on real clips J1 reads 77 % of the frames, J2 91 %). ` +
        'Path error: RMS distance of the item\'s centroid track from the best straight-or-bouncing path (0 for the data\'s motion). Frame PSNR: between consecutive frames.'
      : '',
    'Frame grids (a row per clip): video-raw.png, video-D*.png; animations: video-*.apng; plan heatmaps (rows: spatial, spatial-cross, temporal, temporal-cross per block): video-D*-plan.png.',
    '',
  ].join('\n');
}
