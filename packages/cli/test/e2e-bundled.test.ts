import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fromFloat32, readSafetensors, toFloat32, writeSafetensors } from '@ditfa/checkpoint';
import { concatBatch, parsePlan, tensor } from '@ditfa/core';
import { bundleRequest, readModelBundle, videoGrid } from '@ditfa/models-opensora';
import { THRESHOLDS } from '@ditfa/planner';
import { apngFrameCount, decodePng, encodePng } from '@ditfa/image';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../src/index.js';
import { demo } from '../src/commands/demo.js';
import { videoDemo } from '../src/commands/demo-video.js';
import { writeGrid } from '../src/commands/generate.js';
import { openOpenSora } from '../src/commands/opensora.js';
import { openPipeline } from '../src/session.js';
import type { Output } from '../src/output.js';
import type { Progress } from '../src/progress.js';
import { cli } from './cli-helper.js';

/**
 * The CLI on the model bundled with the repository (models/fashion-dit), with few samples: what a new
 * user's `ditfa demo` does, and a check that the plans shipped beside the model still belong to its
 * weights (a re-exported model without `pnpm plans:ship` fails here rather than silently recalibrating).
 */
const bundled = resolve(__dirname, '../../../models/fashion-dit');
const present = existsSync(join(bundled, 'weights.safetensors')) && existsSync(join(bundled, 'plans', 'D1.json'));
const bundledVideo = resolve(__dirname, '../../../models/fashion-stdit3');
const videoPresent = existsSync(join(bundledVideo, 'model.safetensors')) && existsSync(join(bundledVideo, 'plans', 'D1.json'));
const LEVELS = ['D1', 'D2', 'D3', 'D4', 'D5', 'D6'] as const;

describe.skipIf(!present)('ditfa end to end on the bundled model', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ditfa-e2e-bundled-'));

  it('demo: uses the shipped plans, and its report has every level with FLOPs falling as δ grows', async () => {
    const out = join(dir, 'demo');
    const r = await cli('--json', 'demo', '--samples', '2', '--no-video', '--out', out);
    expect(r.code, r.err).toBe(ExitCode.Ok);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(report.rows.map((row: { level: string }) => row.level)).toEqual(['raw', ...LEVELS]);
    // the demo's defaults (20 steps, CFG 4, DPM++) are what the shipped plans were made for
    expect(report.rows.slice(1).map((row: { planSource: string }) => row.planSource)).toEqual(LEVELS.map(() => 'shipped'));
    const fractions = report.rows.map((row: { measure: { attentionFlopsFraction: number } }) => row.measure.attentionFlopsFraction);
    expect(fractions[0]).toBe(1);
    for (let i = 1; i < fractions.length; i++) expect(fractions[i]).toBeLessThanOrEqual(fractions[i - 1]);
    expect(fractions[6]).toBeLessThan(fractions[1]);
    // what ran is what the planner predicted: no strategy fell back, and the counts agree exactly
    for (const [i, level] of LEVELS.entries()) {
      const shipped = parsePlan(readFileSync(join(bundled, 'plans', `${level}.json`), 'utf8'));
      expect(report.rows[i + 1].measure.fallbacks).toBe(0);
      expect(fractions[i + 1]).toBe(shipped.totals.attentionFlopsFraction);
    }
    for (const [i, row] of report.rows.entries()) {
      const m = row.measure;
      expect(m.seconds).toBeGreaterThan(0);
      // both bundled judges score the bundled model's samples
      expect(m.quality.map((q: { judge: string }) => q.judge)).toEqual(['J1', 'J2']);
      for (const q of m.quality) {
        expect(q.samples).toBe(2);
        expect(q.accuracy).toBeGreaterThanOrEqual(0);
        expect(q.accuracy).toBeLessThanOrEqual(1);
        expect(Number.isFinite(q.frechet)).toBe(true);
      }
      if (i === 0) expect(m.psnrVsRaw).toBeNull();
      else expect(m.psnrVsRaw).toBeGreaterThan(0);
      // 2 samples of 32×32, upscaled 2×, one row, 2 px padding
      const grid = decodePng(readFileSync(join(out, row.grid)));
      expect([grid.width, grid.height]).toEqual([2 * 64 + 3 * 2, 64 + 2 * 2]);
      if (i > 0) expect(decodePng(readFileSync(join(out, row.heatmap))).width).toBeGreaterThan(0);
    }
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain('| raw |');
    expect(md).toContain('| accuracy (J1 / J2) | Fréchet (J1 / J2) |');
    expect(report.judges).toEqual(['J1', 'J2']);
    expect(report.video).toBeNull();
  });

  it('demo image half in chunks: samples generated a chunk at a time (seed + k), joined in order; a bad chunk size is a usage error', async () => {
    const out = join(dir, 'image-chunks');
    const silent = { json: true, result() {}, note() {}, warn() {} } as unknown as Output;
    const none = { start() {}, update() {}, stop() {} } as unknown as Progress;
    const options = { out, steps: 20, samples: 3, seed: 5, guidance: 4, calib: 8, recalibrate: false, video: false, threads: 2 } as const;
    await demo({ ...options, levels: ['D6'], chunk: 2 }, silent, none);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(report.rows.map((r: { level: string }) => r.level)).toEqual(['raw', 'D6']);
    for (const row of report.rows) expect(row.measure.quality.map((q: { samples: number }) => q.samples)).toEqual([3, 3]);
    // the D6 plan's prediction, over both chunks
    const d6 = parsePlan(readFileSync(join(bundled, 'plans', 'D6.json'), 'utf8'));
    expect(report.rows[1].measure.attentionFlopsFraction).toBeCloseTo(d6.totals.attentionFlopsFraction, 12);
    // independently: the pipeline on classes [0, 1] with seed 5 and [2] with seed 6, samples joined
    const pipe = await openPipeline(bundled, { threads: 2 });
    try {
      const request = { steps: 20, guidanceScale: 4, sampler: 'dpmpp-2m' } as const;
      const a = await pipe.generate({ ...request, classLabels: [0, 1], seed: 5 });
      const b = await pipe.generate({ ...request, classLabels: [2], seed: 6 });
      const file = join(dir, 'image-chunks-expected.png');
      await writeGrid({ images: concatBatch([a.images!, b.images!]) }, file);
      expect(readFileSync(join(out, 'raw.png')).equals(readFileSync(file))).toBe(true);
    } finally {
      await pipe.dispose();
    }
    await expect(demo({ ...options, out: join(dir, 'never'), levels: [], chunk: 0 }, silent, none)).rejects.toMatchObject({ code: 'ERR_DITFA_USAGE' });
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it('every shipped plan is valid, says its level and is a version-2 plan for the 6 self-attention layers', () => {
    for (const level of LEVELS) {
      const text = readFileSync(join(bundled, 'plans', `${level}.json`), 'utf8');
      expect(JSON.parse(text).version).toBe(2);
      const plan = parsePlan(text);
      expect(plan.threshold.delta).toBe(THRESHOLDS[level]);
      expect(plan.fingerprint.layers.map((l) => l.id)).toEqual(['0.self', '1.self', '2.self', '3.self', '4.self', '5.self']);
    }
  });

  it('calibrate, generate and bench run on it with few steps', async () => {
    const plan = join(dir, 'plan.json');
    const cal = await cli('--json', 'calibrate', '--threshold', 'D4', '--steps', '4', '--calib', '1', '--out', plan);
    expect(cal.code, cal.err).toBe(ExitCode.Ok);
    expect(parsePlan(readFileSync(plan, 'utf8')).steps).toHaveLength(4);
    const grid = join(dir, 'grid.png');
    const gen = await cli('--json', 'generate', '--plan', plan, '--class', '7', '--steps', '4', '--out', grid);
    expect(gen.code, gen.err).toBe(ExitCode.Ok);
    expect(decodePng(readFileSync(grid)).width).toBe(64 + 2 * 2); // one 32×32 sample upscaled 2×, 2 px padding
    const b = await cli('--json', 'bench', '--plan', plan, '--batch', '2');
    expect(b.code, b.err).toBe(ExitCode.Ok);
    const m = JSON.parse(b.out);
    expect(m.planned.attentionFlopsFraction).toBeLessThanOrEqual(1);
    expect(m.raw.quality.map((q: { samples: number }) => q.samples)).toEqual([2, 2]);
  });
});

describe.skipIf(!videoPresent)('ditfa end to end on the bundled video model', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ditfa-e2e-bundled-video-'));

  it('demo video half: the shipped plans, FLOPs per site, both judges on every frame, grids and animations', async () => {
    const out = join(dir, 'demo');
    const r = await cli('--json', 'demo', '--samples', '2', '--levels', 'D1', 'D6', '--video-clips', '1', '--out', out);
    expect(r.code, r.err).toBe(ExitCode.Ok);
    const v = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).video;
    expect(v.rows.map((row: { level: string }) => row.level)).toEqual(['raw', 'D1', 'D6']);
    expect(v.rows.slice(1).map((row: { planSource: string }) => row.planSource)).toEqual(['shipped', 'shipped']);
    expect(v.sites).toEqual(['spatial', 'spatial-cross', 'temporal', 'temporal-cross']);
    expect(v.steps).toBe(30);
    for (const [i, level] of ['D1', 'D6'].entries()) {
      const shipped = parsePlan(readFileSync(join(bundledVideo, 'plans', `${level}.json`), 'utf8'));
      const m = v.rows[i + 1].measure;
      expect(m.fallbacks).toBe(0);
      expect(m.attentionFlopsFraction).toBeCloseTo(shipped.totals.attentionFlopsFraction, 12);
      // the per-site fractions weight to the total by each site's raw FLOPs: all ≤ 1 and one of them ≤ the total
      const sites = Object.values(m.siteFlopsFraction) as number[];
      expect(sites.every((f) => f >= 0 && f <= 1)).toBe(true);
      expect(Math.min(...sites)).toBeLessThanOrEqual(m.attentionFlopsFraction + 1e-12);
      expect(Math.max(...sites)).toBeGreaterThanOrEqual(m.attentionFlopsFraction - 1e-12);
    }
    expect(v.rows[2].measure.attentionFlopsFraction).toBeLessThan(v.rows[1].measure.attentionFlopsFraction);
    for (const row of v.rows) {
      const s = row.measure.scores;
      expect(s.judges.map((j: { judge: string }) => j.judge)).toEqual(['J1', 'J2']);
      expect(s.frames).toBe(8);
      // one clip of 8 frames of 32×32, upscaled 2×, 2 px padding: a row of 8 frames; the animation has 8 frames
      const grid = decodePng(readFileSync(join(out, row.grid)));
      expect([grid.width, grid.height]).toEqual([8 * 64 + 9 * 2, 64 + 2 * 2]);
      expect(apngFrameCount(readFileSync(join(out, row.animation)))).toBe(8);
    }
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain('| FLOPs spatial | FLOPs spatial-cross | FLOPs temporal | FLOPs temporal-cross |');
  });

  it('demo video half in chunks: clips generated a chunk at a time (seed + k), frames joined in order', async () => {
    const out = join(dir, 'chunks');
    mkdirSync(out);
    const silent = { json: true, result() {}, note() {}, warn() {} } as unknown as Output;
    const none = { start() {}, update() {}, stop() {} } as unknown as Progress;
    const report = await videoDemo({ model: bundledVideo, out, clips: 3, seed: 5, calib: 4, levels: ['D6'], recalibrate: false, chunk: 2, threads: 2 }, silent, none);
    expect(report.rows.map((r) => r.level)).toEqual(['raw', 'D6']);
    // independently: the pipeline on clips [0, 1] with seed 5 and [2] with seed 6, frames joined
    const bundle = readModelBundle(bundledVideo)!;
    const pipe = await openOpenSora(bundledVideo, { threads: 2 });
    try {
      const a = await pipe.generate(bundleRequest(bundle, { classes: [0, 1], seed: 5 }));
      const b = await pipe.generate(bundleRequest(bundle, { classes: [2], seed: 6 }));
      const frames = concatBatch([a.images!, b.images!]);
      expect(Buffer.from(readFileSync(join(out, 'video-raw.png'))).equals(Buffer.from(videoGrid(frames, { scale: 2 })))).toBe(true);
    } finally {
      await pipe.dispose();
    }
    expect(report.rows[1]!.measure.scores!.judges.map((j) => j.judge)).toEqual(['J1', 'J2']);
    await expect(videoDemo({ model: bundledVideo, out, clips: 3, seed: 5, calib: 4, levels: [], recalibrate: false, chunk: 0 }, silent, none)).rejects.toMatchObject({ code: 'ERR_DITFA_USAGE' });
  });

  it('every shipped video plan is valid, says its level and covers the four sites of the four blocks', () => {
    for (const level of LEVELS) {
      const plan = parsePlan(readFileSync(join(bundledVideo, 'plans', `${level}.json`), 'utf8'));
      expect(plan.threshold.delta).toBe(THRESHOLDS[level]);
      expect(plan.fingerprint.layers).toHaveLength(16);
      expect(plan.steps).toHaveLength(30);
      // searched as the demo would: the self-attention sites only, cross-attention always full
      expect(plan.sites).toEqual(['spatial', 'temporal']);
      const cross = plan.fingerprint.layers.map((l, i) => (l.id.endsWith('-cross') ? i : -1)).filter((i) => i >= 0);
      expect(cross).toHaveLength(8);
      expect(plan.steps.every((row) => cross.every((i) => row[i]!.method === 'full'))).toBe(true);
    }
  });

  it('generate: class captions from --class, frames without a VAE, an animation; bad classes are usage errors', async () => {
    const grid = join(dir, 'clip.png');
    const anim = join(dir, 'clip.apng');
    const gen = await cli('--json', 'generate', '--model', bundledVideo, '--class', '5', '--steps', '3', '--out', grid, '--animation', anim);
    expect(gen.code, gen.err).toBe(ExitCode.Ok);
    expect(decodePng(readFileSync(grid)).width).toBe(8 * 64 + 9 * 2);
    expect(apngFrameCount(readFileSync(anim))).toBe(8);
    const bad = await cli('generate', '--model', bundledVideo, '--class', '10', '--steps', '3', '--out', join(dir, 'bad.png'));
    expect(bad.code).toBe(ExitCode.Usage);
    expect(bad.err).toContain('class ids in [0, 9]');
    expect(existsSync(join(dir, 'bad.png'))).toBe(false);
  });

  it('generate --reference: the given frames stay as given (image-to-video), the same clip as the library call', async () => {
    const T = 8, H = 32, W = 32;
    // the reference clip: frame 0 a bright square on black, the rest anything (not given)
    const ref = Float32Array.from({ length: T * H * W }, (_, i) => (i < H * W ? (Math.abs((i % W) - 16) < 6 && Math.abs(Math.floor(i / W) - 16) < 6 ? 0.9 : -1) : 0.3));
    const file = join(dir, 'reference.safetensors');
    writeFileSync(file, writeSafetensors(new Map([
      ['latents', fromFloat32(ref, [1, 1, T, H, W])],
      ['frames', fromFloat32(Float32Array.from({ length: T }, (_, t) => (t === 0 ? 1 : 0)), [1, T])],
    ])));
    const out = join(dir, 'conditioned.safetensors');
    const gen = await cli('--json', 'generate', '--model', bundledVideo, '--class', '8', '--steps', '4', '--seed', '2', '--reference', file, '--out', out);
    expect(gen.code, gen.err).toBe(ExitCode.Ok);
    const got = toFloat32(readSafetensors(out).tensors.get('latents')!);
    expect(Array.from(got.subarray(0, H * W))).toEqual(Array.from(ref.subarray(0, H * W)));
    const bundle = readModelBundle(bundledVideo)!;
    const pipe = await openOpenSora(bundledVideo, { threads: 2 });
    try {
      const lib = await pipe.generate({ ...bundleRequest(bundle, { classes: [8], seed: 2, steps: 4 }), reference: { latents: tensor(ref, [1, 1, T, H, W]), frames: [1, 0, 0, 0, 0, 0, 0, 0] } });
      expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(lib.latents.data.buffer, lib.latents.data.byteOffset, lib.latents.data.byteLength))).toBe(true);
    } finally {
      await pipe.dispose();
    }
    // a file without the tensors is an input error, a DiT model a usage error; nothing is written
    writeFileSync(join(dir, 'empty.safetensors'), writeSafetensors(new Map([['other', fromFloat32(new Float32Array(1), [1])]])));
    const missing = await cli('generate', '--model', bundledVideo, '--class', '8', '--steps', '2', '--reference', join(dir, 'empty.safetensors'), '--out', join(dir, 'never.safetensors'));
    expect(missing.code).toBe(ExitCode.Input);
    expect(missing.err).toContain('"latents"');
    const dit = await cli('generate', '--class', '1', '--steps', '2', '--reference', file, '--out', join(dir, 'never.png'));
    expect(dit.code).toBe(ExitCode.Usage);
    expect(existsSync(join(dir, 'never.safetensors')) || existsSync(join(dir, 'never.png'))).toBe(false);
  });

  it('generate --first-frame: a PNG as every clip\'s first frame, the same as the --reference it stands for', async () => {
    const T = 8, H = 32, W = 32;
    // a grey-level PNG (RGB, equal channels): a diagonal ramp
    const rgb = new Uint8Array(H * W * 3);
    for (let i = 0; i < H * W; i++) rgb.fill(Math.round(((i % W) + Math.floor(i / W)) * (255 / 62)), 3 * i, 3 * i + 3);
    const png = join(dir, 'first.png');
    writeFileSync(png, encodePng({ width: W, height: H, channels: 3, data: rgb }));
    const out = join(dir, 'first.safetensors');
    const gen = await cli('--json', 'generate', '--model', bundledVideo, '--class', '2', '4', '--batch', '2', '--steps', '3', '--seed', '4', '--first-frame', png, '--out', out);
    expect(gen.code, gen.err).toBe(ExitCode.Ok);
    const got = readSafetensors(out).tensors.get('latents')!;
    // the reference written out: [0, 255] → [-1, 1] in frame 0 of both clips, frames [1, 0, …] each
    const ref = new Float32Array(2 * T * H * W);
    for (const b of [0, 1]) for (let i = 0; i < H * W; i++) ref[b * T * H * W + i] = (rgb[3 * i]! / 255) * 2 - 1;
    const file = join(dir, 'first-as-reference.safetensors');
    writeFileSync(file, writeSafetensors(new Map([['latents', fromFloat32(ref, [2, 1, T, H, W])], ['frames', fromFloat32(Float32Array.from({ length: 2 * T }, (_, i) => (i % T === 0 ? 1 : 0)), [2, T])]])));
    const viaRef = join(dir, 'first-via-reference.safetensors');
    expect((await cli('--json', 'generate', '--model', bundledVideo, '--class', '2', '4', '--batch', '2', '--steps', '3', '--seed', '4', '--reference', file, '--out', viaRef)).code).toBe(ExitCode.Ok);
    expect(Buffer.from(readSafetensors(viaRef).tensors.get('latents')!.bytes).equals(Buffer.from(got.bytes))).toBe(true);
    const latents = toFloat32(got);
    for (const b of [0, 1]) for (let i = 0; i < H * W; i++) expect(latents[b * T * H * W + i]).toBeCloseTo(ref[b * T * H * W + i]!, 6);
    // a PNG of another size is an input error; with --reference too, a usage error
    writeFileSync(join(dir, 'small.png'), encodePng({ width: 8, height: 8, channels: 3, data: new Uint8Array(8 * 8 * 3) }));
    const small = await cli('generate', '--model', bundledVideo, '--class', '2', '--steps', '2', '--first-frame', join(dir, 'small.png'), '--out', join(dir, 'never2.png'));
    expect(small.code).toBe(ExitCode.Input);
    expect(small.err).toContain('32×32');
    const both = await cli('generate', '--model', bundledVideo, '--class', '2', '--steps', '2', '--first-frame', png, '--reference', file, '--out', join(dir, 'never2.png'));
    expect(both.code).toBe(ExitCode.Usage);
    expect(existsSync(join(dir, 'never2.png'))).toBe(false);
  });
});
