import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { ErrorCode, tensor, type Tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import {
  BUNDLED_JUDGES,
  centroids,
  clipFrames,
  createJudges,
  cropItems,
  findJudges,
  fitBouncingPath,
  framePsnr,
  itemCentres,
  reflect,
  scoreClips,
  trackScores,
} from '../src/index.js';

const models = fileURLToPath(new URL('../../../models/', import.meta.url));
const haveBoth = BUNDLED_JUDGES.every((j) => existsSync(join(models, j.classifier)) && existsSync(join(models, j.stats)));
const T = 8;
const CANVAS = 32;
const ITEM = 18;
const SPAN = CANVAS - ITEM;

const i64 = (t: { bytes: Uint8Array }): number[] => [...new BigInt64Array(t.bytes.slice().buffer)].map(Number);
const f64 = (t: { bytes: Uint8Array }): Float64Array => new Float64Array(t.bytes.slice().buffer);

/** Real clips written by tools/export_video_judge_fixture.py (uint8 frames) and what Python computed on them. */
function realClips() {
  const file = readSafetensors(fileURLToPath(new URL('./fixtures/moving-fashion-20.safetensors', import.meta.url)));
  const raw = file.tensors.get('clips')!;
  const n = raw.shape[0]!;
  const clips = tensor(Float32Array.from(raw.bytes, (v) => v / 127.5 - 1), [n, 1, T, CANVAS, CANVAS]);
  return {
    n,
    clips,
    labels: i64(file.tensors.get('labels')!),
    centroids: f64(file.tensors.get('centroids')!),
    itemCentres: f64(file.tensors.get('item_centres')!),
    crops: toFloat32(file.tensors.get('crops')!),
    topLeft: i64(file.tensors.get('top_left')!), // [n, T, 2] (x, y)
  };
}

/** Draws items `[s, s]` (data space) at the given top-left corners: clips `[N, 1, T, canvas, canvas]`. */
function render(items: Float32Array[], size: number, paths: Array<Array<[number, number]>>): Tensor {
  const n = items.length;
  const out = new Float32Array(n * T * CANVAS * CANVAS).fill(-1);
  for (let c = 0; c < n; c++)
    for (let t = 0; t < T; t++) {
      const [x, y] = paths[c]![t]!;
      for (let r = 0; r < size; r++)
        for (let q = 0; q < size; q++) out[((c * T + t) * CANVAS + y + r) * CANVAS + x + q] = items[c]![r * size + q]!;
    }
  return tensor(out, [n, 1, T, CANVAS, CANVAS]);
}

/** 28×28 → s×s with PIL/torch's antialiased bilinear (triangle filter widened by the scale), separable. */
function downscale(img: Float32Array, from: number, to: number): Float32Array {
  const scale = from / to;
  const weights = (i: number): Array<[number, number]> => {
    const centre = (i + 0.5) * scale;
    const w: Array<[number, number]> = [];
    let sum = 0;
    for (let j = Math.max(0, Math.floor(centre - scale)); j < Math.min(from, Math.ceil(centre + scale)); j++) {
      const v = Math.max(0, 1 - Math.abs(j + 0.5 - centre) / scale);
      if (v > 0) w.push([j, v]);
      sum += v;
    }
    return w.map(([j, v]) => [j, v / sum]);
  };
  const rows = new Float32Array(to * from);
  for (let i = 0; i < to; i++) for (const [j, v] of weights(i)) for (let c = 0; c < from; c++) rows[i * from + c]! += v * img[j * from + c]!;
  const out = new Float32Array(to * to);
  for (let i = 0; i < to; i++) for (const [j, v] of weights(i)) for (let r = 0; r < to; r++) out[r * to + i]! += v * rows[r * from + j]!;
  return out;
}

/** The data's motion (moving_fashion.py): top-left `reflect(p0 + v·t)` per axis. */
const bouncing = (x0: number, y0: number, vx: number, vy: number): Array<[number, number]> =>
  Array.from({ length: T }, (_, t) => [reflect(x0 + vx * t, SPAN), reflect(y0 + vy * t, SPAN)]);

const secondDifferenceOf = (path: Array<[number, number]>): number => {
  let s = 0;
  for (let t = 1; t + 1 < T; t++) s += Math.hypot(path[t + 1]![0] - 2 * path[t]![0] + path[t - 1]![0], path[t + 1]![1] - 2 * path[t]![1] + path[t - 1]![1]);
  return s / (T - 2);
};

describe('clip geometry against the Python side (tools/ditfa_tools/video_judge.py)', () => {
  it('centroids, item-box centres and crops match on 20 real clips, and a real clip crops the same in every frame', () => {
    const r = realClips();
    const frames = clipFrames(r.clips);
    const c = centroids(frames);
    const b = itemCentres(frames);
    let worstC = 0;
    for (let f = 0; f < r.n * T; f++) {
      worstC = Math.max(worstC, Math.abs(c.x[f]! - r.centroids[2 * f]!), Math.abs(c.y[f]! - r.centroids[2 * f + 1]!));
      worstC = Math.max(worstC, Math.abs(b.x[f]! - r.itemCentres[2 * f]!), Math.abs(b.y[f]! - r.itemCentres[2 * f + 1]!));
    }
    expect(worstC).toBeLessThan(1e-6); // float32 frames here, float64 in NumPy
    const crops = cropItems(frames);
    expect(crops.shape).toEqual([r.n * T, 1, 32, 32]);
    let worst = 0;
    for (let f = 0; f < r.n * T; f++) {
      const clip = Math.floor(f / T);
      for (let i = 0; i < 1024; i++) worst = Math.max(worst, Math.abs(crops.data[f * 1024 + i]! - r.crops[clip * 1024 + i]!));
    }
    expect(worst).toBeLessThan(1e-5);
  });

  it('the centroid moves exactly with the item', () => {
    const r = realClips();
    const c = centroids(clipFrames(r.clips));
    for (let k = 0; k < r.n; k++)
      for (let t = 0; t < T; t++) {
        const f = k * T + t;
        expect(c.x[f]! - c.x[k * T]!).toBeCloseTo(r.topLeft[2 * f]! - r.topLeft[2 * k * T]!, 9);
        expect(c.y[f]! - c.y[k * T]!).toBeCloseTo(r.topLeft[2 * f + 1]! - r.topLeft[2 * k * T + 1]!, 9);
      }
  });
});

describe('temporal consistency', () => {
  it('the data\'s motion (straight or bouncing) has zero path error and the second difference of its positions', () => {
    const r = realClips();
    const c = centroids(clipFrames(r.clips));
    let bounced = 0;
    for (let k = 0; k < r.n; k++) {
      const path = Array.from({ length: T }, (_, t) => [r.topLeft[2 * (k * T + t)]!, r.topLeft[2 * (k * T + t) + 1]!] as [number, number]);
      const s = trackScores(c.x.subarray(k * T, (k + 1) * T), c.y.subarray(k * T, (k + 1) * T), CANVAS);
      expect(s.pathError).toBeLessThan(1e-6);
      expect(s.secondDifference).toBeCloseTo(secondDifferenceOf(path), 9);
      if (s.secondDifference > 0) bounced++;
    }
    expect(bounced).toBeGreaterThan(0); // the fixture has bounces, where the second difference is not 0
  });

  it('a jump: the second difference is 2J/(T−2), the path error lies between closed-form bounds', () => {
    const J = 6;
    const path: Array<[number, number]> = Array.from({ length: T }, (_, t) => [1 + t + (t >= 4 ? J : 0), 7]);
    const item = new Float32Array(ITEM * ITEM).fill(0.5);
    const clip = render([item], ITEM, [path]);
    const c = centroids(clipFrames(clip));
    const s = trackScores(c.x, c.y, CANVAS);
    expect(s.secondDifference).toBeCloseTo((2 * J) / (T - 2), 9);
    // frames 3 → 4 move 1 + J px but a path moves at most maxSpeed (4): residuals there differ by ≥ J + 1 − 4,
    // so their squares sum to ≥ (J − 3)²/2; the path without the jump leaves J at 4 frames
    expect(s.pathError).toBeGreaterThanOrEqual(Math.sqrt(((J - 3) ** 2 / 2) / T) - 1e-9);
    expect(s.pathError).toBeLessThanOrEqual(Math.sqrt((4 * J * J) / T) + 1e-9);
    // the reported error is the fitted path's
    const fit = s.fitX;
    let rss = 0;
    for (let t = 0; t < T; t++) rss += (c.x[t]! - fit.low - reflect(fit.start + fit.velocity * t, SPAN)) ** 2;
    expect(fit.residualSumOfSquares).toBeCloseTo(rss, 9);
    expect(s.fitY.rms).toBeLessThan(1e-9);
  });

  it('fits integer starts and speeds exactly, bounces included', () => {
    const track = Array.from({ length: T }, (_, t) => 5 + reflect(10 + 3 * t, SPAN)); // 10, 13, 12 (bounce), 9, …
    const fit = fitBouncingPath(track, SPAN, { lowMin: 0, lowMax: 17 });
    expect(fit.rms).toBeLessThan(1e-12);
    expect(fit.low).toBeCloseTo(5, 12);
    expect(() => fitBouncingPath(track, 0)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
  });

  it('frame-to-frame PSNR: ∞ for a still clip, 10·log10(4/δ²) for a uniform change δ, ∞ after motion compensation', () => {
    const still = render([new Float32Array(ITEM * ITEM).fill(0.3)], ITEM, [Array.from({ length: T }, () => [5, 6] as [number, number])]);
    expect(framePsnr(still)).toBe(Infinity);
    const delta = 0.05;
    const ramp = tensor(Float32Array.from({ length: T * 16 }, (_, i) => -0.5 + delta * Math.floor(i / 16)), [1, 1, T, 4, 4]);
    expect(framePsnr(ramp)).toBeCloseTo(10 * Math.log10(4 / delta ** 2), 6);
    const r = realClips();
    expect(framePsnr(r.clips, { aligned: true })).toBe(Infinity);
    expect(framePsnr(r.clips)).toBeLessThan(30);
  });
});

describe.skipIf(!haveBoth)('judging clips with both judges', () => {
  it('real clips: every frame judged alike, accuracies as on still crops, zero track error', { timeout: 60_000 }, async () => {
    const judges = await createJudges(findJudges([models]), { threads: 1 });
    try {
      const r = realClips();
      const s = await scoreClips(judges, r.clips, r.labels);
      expect(s.judges.map((j) => j.judge)).toEqual(['J1', 'J2']);
      expect(s.frames).toBe(r.n * T);
      for (const j of s.judges) {
        expect(j.reference).toBe('frames');
        expect(j.labelAgreement).toBe(1); // the crops are the same in every frame
        expect(j.accuracy).toBeCloseTo(j.clipAccuracy, 12);
      }
      expect(s.pathError).toBeLessThan(1e-6);
      expect(s.alignedFramePsnr).toBe(Infinity);
      expect(s.emptyFrames).toBe(0);
      await expect(scoreClips(judges, r.clips, r.labels.slice(1))).rejects.toMatchObject({ code: ErrorCode.ShapeMismatch });
    } finally {
      await Promise.all(judges.map((j) => j.dispose()));
    }
  });

  it('500 real test images moved along the data\'s paths: per-frame accuracy = accuracy on their first frames, near the real-clip reference', { timeout: 120_000 }, async () => {
    const file = readSafetensors(fileURLToPath(new URL('./fixtures/fashion-test-500.safetensors', import.meta.url)));
    const raw = file.tensors.get('images')!; // [500, 32, 32] uint8, 28×28 padded
    const labels = i64(file.tensors.get('labels')!);
    const items: Float32Array[] = [];
    const paths: Array<Array<[number, number]>> = [];
    let seed = 12345;
    const rand = (k: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % k;
    };
    for (let i = 0; i < labels.length; i++) {
      const img = new Float32Array(28 * 28);
      for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) img[r * 28 + c] = raw.bytes[i * 1024 + (r + 2) * 32 + c + 2]! / 127.5 - 1;
      items.push(downscale(img, 28, ITEM));
      let vx = 0;
      let vy = 0;
      while (vx === 0 && vy === 0) [vx, vy] = [rand(7) - 3, rand(7) - 3];
      paths.push(bouncing(rand(SPAN + 1), rand(SPAN + 1), vx, vy));
    }
    const clips = render(items, ITEM, paths);
    const first = render(items, ITEM, paths.map((p) => p.map(() => p[0]!)));
    const judges = await createJudges(findJudges([models]), { threads: 1 });
    try {
      const s = await scoreClips(judges, clips, labels);
      const still = await scoreClips(judges, first, labels);
      for (const [k, j] of s.judges.entries()) {
        expect(j.labelAgreement).toBe(1);
        expect(j.accuracy).toBeCloseTo(still.judges[k]!.accuracy, 12);
        const reference = (judges[k]!.info.frames as { accuracy: number }).accuracy; // Python, 10 000 real test clips
        expect(Math.abs(j.accuracy - reference)).toBeLessThan(0.06);
        expect(j.accuracy).toBeGreaterThanOrEqual(0.75);
      }
      expect(s.pathError).toBeLessThan(1e-6);
      const expected = paths.reduce((sum, p) => sum + secondDifferenceOf(p), 0) / paths.length;
      expect(s.secondDifference).toBeCloseTo(expected, 9);
    } finally {
      await Promise.all(judges.map((j) => j.dispose()));
    }
  });
});
