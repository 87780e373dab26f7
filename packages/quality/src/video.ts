import { InvalidArgumentError, ShapeMismatchError, expectShape, tensor, type Tensor } from '@ditfa/core';
import type { Judge, Scores } from './judge.js';

/**
 * Judging short clips of one item moving over a dark canvas (Moving Fashion-MNIST,
 * `tools/ditfa_tools/moving_fashion.py`): the image judges see each frame's item cropped around its
 * centroid and scaled back to the size they were trained on, and the item's centroid track is compared
 * with the motion the data has (a constant velocity, bouncing off the canvas edges).
 */
export interface ClipGeometry {
  /** The item's size on the canvas in pixels (Moving Fashion-MNIST: 18). */
  readonly item?: number;
  /** The item's size in the judge's input (Fashion-MNIST: 28) … */
  readonly size?: number;
  /** … and the background border around it (2: 28 + 2·2 = 32, the judges' input). */
  readonly pad?: number;
  /** Background value (the data space's −1). */
  readonly background?: number;
  /**
   * A pixel weighs `max(x − background − threshold, 0)` in the centroid and the item box (default 0.1,
   * in data units): faint noise in a generated background does not pull them toward the canvas centre.
   */
  readonly threshold?: number;
  /**
   * The item box spans the `quantile … 1 − quantile` range of the weight along each axis (default
   * 0.005): a stray speck does not stretch it.
   */
  readonly quantile?: number;
}

export interface TrackOptions extends ClipGeometry {
  /** The fitted path's largest speed per axis, px/frame (default 4; the data has at most 3). */
  readonly maxSpeed?: number;
}

const geometry = (o: ClipGeometry) => ({
  item: o.item ?? 18,
  size: o.size ?? 28,
  pad: o.pad ?? 2,
  background: o.background ?? -1,
  threshold: o.threshold ?? 0.1,
  quantile: o.quantile ?? 0.005,
});

export interface Centroids {
  /** Column and row of each frame's centroid in pixel indices (pixel centres are integers). */
  readonly x: Float64Array;
  readonly y: Float64Array;
  /** Total weight; 0 for a frame with nothing above the background (its centroid is the canvas centre). */
  readonly mass: Float64Array;
}

/** Intensity centroids of frames `[M, 1, H, W]`, weighted by how far each pixel exceeds the background. */
export function centroids(frames: Tensor, options: ClipGeometry = {}): Centroids {
  expectShape('frames', frames, [-1, 1, -1, -1]);
  const [m, , h, w] = frames.shape as [number, number, number, number];
  const { background, threshold } = geometry(options);
  const x = new Float64Array(m);
  const y = new Float64Array(m);
  const mass = new Float64Array(m);
  for (let f = 0; f < m; f++) {
    let s = 0;
    let sx = 0;
    let sy = 0;
    const base = f * h * w;
    for (let r = 0; r < h; r++)
      for (let c = 0; c < w; c++) {
        const v = frames.data[base + r * w + c]! - background - threshold;
        if (v <= 0) continue;
        s += v;
        sx += v * c;
        sy += v * r;
      }
    mass[f] = s;
    x[f] = s > 0 ? sx / s : (w - 1) / 2;
    y[f] = s > 0 ? sy / s : (h - 1) / 2;
  }
  return { x, y, mass };
}

/**
 * Centres of the frames' item boxes `[M, 1, H, W]`: per axis, the midpoint of the positions where the
 * cumulative weight (as in {@link centroids}; pixel `i` spreads its weight over `[i − ½, i + ½]`) reaches
 * `quantile` and `1 − quantile` of the total. Fashion-MNIST items are centred by their bounding box, not
 * their centroid (boots, sandals and bags sit up to 4 px off), so crops are centred here.
 */
export function itemCentres(frames: Tensor, options: ClipGeometry = {}): Centroids {
  expectShape('frames', frames, [-1, 1, -1, -1]);
  const [m, , h, w] = frames.shape as [number, number, number, number];
  const { background, threshold, quantile } = geometry(options);
  const x = new Float64Array(m);
  const y = new Float64Array(m);
  const mass = new Float64Array(m);
  const cols = new Float64Array(w);
  const rows = new Float64Array(h);
  const middle = (marginal: Float64Array, total: number): number => {
    const at = (target: number): number => {
      let cum = 0;
      for (let i = 0; i < marginal.length; i++) {
        const next = cum + marginal[i]!;
        if (next >= target && marginal[i]! > 0) return i - 0.5 + (target - cum) / marginal[i]!;
        cum = next;
      }
      return marginal.length - 0.5;
    };
    return (at(quantile * total) + at((1 - quantile) * total)) / 2;
  };
  for (let f = 0; f < m; f++) {
    cols.fill(0);
    rows.fill(0);
    const base = f * h * w;
    for (let r = 0; r < h; r++)
      for (let c = 0; c < w; c++) {
        const v = frames.data[base + r * w + c]! - background - threshold;
        if (v <= 0) continue;
        cols[c]! += v;
        rows[r]! += v;
      }
    let s = 0;
    for (let c = 0; c < w; c++) s += cols[c]!;
    mass[f] = s;
    x[f] = s > 0 ? middle(cols, s) : (w - 1) / 2;
    y[f] = s > 0 ? middle(rows, s) : (h - 1) / 2;
  }
  return { x, y, mass };
}

/** Keys' cubic convolution kernel with a = −0.75 (what PyTorch's and OpenCV's bicubic use). */
export function cubicWeight(d: number, a = -0.75): number {
  const x = Math.abs(d);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/**
 * The judges' view of each frame: a window of `item × item` pixels centred on the frame's item box
 * ({@link itemCentres}; or the given centres), resampled to `size × size` with bicubic interpolation
 * ({@link cubicWeight}; outside the canvas counts as background; the result clamped to `[−1, 1]`) and
 * padded with `pad` pixels of background. Output pixel `(u, v)` samples the frame at row
 * `cy + (u + ½ − size/2)·item/size`, column `cx + (v + ½ − size/2)·item/size`. Bicubic rather than bilinear
 * because J1 reads blurred items badly (real clips: 77 % against 71 % bilinear; J2 91 % either way).
 * `tools/ditfa_tools/video_judge.py` is the same in NumPy.
 */
export function cropItems(frames: Tensor, options: ClipGeometry = {}, at: Centroids = itemCentres(frames, options)): Tensor {
  expectShape('frames', frames, [-1, 1, -1, -1]);
  const [m, , h, w] = frames.shape as [number, number, number, number];
  const { item, size, pad, background } = geometry(options);
  const side = size + 2 * pad;
  const out = new Float32Array(m * side * side).fill(background);
  const scale = item / size;
  const taps = (centre: number): { first: number; weights: [number, number, number, number] } => {
    const i0 = Math.floor(centre);
    const f = centre - i0;
    return { first: i0 - 1, weights: [cubicWeight(1 + f), cubicWeight(f), cubicWeight(1 - f), cubicWeight(2 - f)] };
  };
  for (let f = 0; f < m; f++) {
    const base = f * h * w;
    const rowTaps = Array.from({ length: size }, (_, u) => taps(at.y[f]! + (u + 0.5 - size / 2) * scale));
    const colTaps = Array.from({ length: size }, (_, v) => taps(at.x[f]! + (v + 0.5 - size / 2) * scale));
    for (let u = 0; u < size; u++) {
      const ry = rowTaps[u]!;
      for (let v = 0; v < size; v++) {
        const cx = colTaps[v]!;
        let acc = 0;
        for (let i = 0; i < 4; i++) {
          const r = ry.first + i;
          let line = 0;
          for (let j = 0; j < 4; j++) {
            const c = cx.first + j;
            line += cx.weights[j]! * (r < 0 || r >= h || c < 0 || c >= w ? background : frames.data[base + r * w + c]!);
          }
          acc += ry.weights[i]! * line;
        }
        out[f * side * side + (u + pad) * side + v + pad] = Math.min(Math.max(acc, -1), 1);
      }
    }
  }
  return tensor(out, [m, 1, side, side]);
}

/** Mirror reflection into `[0, span]` (a triangle wave of period `2·span`), as the data's bounces. */
export function reflect(z: number, span: number): number {
  if (span <= 0) return 0;
  const p = 2 * span;
  const m = ((z % p) + p) % p;
  return m <= span ? m : p - m;
}

export interface PathFit {
  /** Unfolded start position `a` and velocity `v`: the path is `low + reflect(a + v·t, span)`. */
  readonly start: number;
  readonly velocity: number;
  /** The lower wall (the centroid's offset inside the item). */
  readonly low: number;
  /** Root mean square of the residuals, px. */
  readonly rms: number;
  readonly residualSumOfSquares: number;
}

/**
 * Least-squares fit of one axis of a track to a constant velocity bouncing between two walls `span`
 * apart (`low + reflect(a + v·t, span)`, `|v| ≤ maxSpeed`, `low ∈ [lowMin, lowMax]`): a grid over
 * `(a, v)` (steps ½ px and 1/10 px/frame, so integer starts and speeds are on it), the wall in closed
 * form for each, then a pattern search from each of the best 4 down to 10⁻⁴ px.
 */
export function fitBouncingPath(track: ArrayLike<number>, span: number, options: { maxSpeed?: number; lowMin?: number; lowMax?: number } = {}): PathFit {
  const n = track.length;
  const maxSpeed = options.maxSpeed ?? 4;
  const lowMin = options.lowMin ?? -Infinity;
  const lowMax = options.lowMax ?? Infinity;
  if (!(span > 0)) throw new InvalidArgumentError(`Expected a positive span but received ${span}`);
  const model = new Float64Array(n);
  const evaluate = (a: number, v: number): { low: number; rss: number } => {
    let mean = 0;
    for (let t = 0; t < n; t++) {
      model[t] = reflect(a + v * t, span);
      mean += track[t]! - model[t]!;
    }
    const low = Math.min(Math.max(mean / n, lowMin), lowMax);
    let rss = 0;
    for (let t = 0; t < n; t++) rss += (track[t]! - low - model[t]!) ** 2;
    return { low, rss };
  };
  // the grid's best few points (least-squares surfaces of bouncing paths have several basins)
  const keep = 4;
  const seeds: Array<{ a: number; v: number; low: number; rss: number }> = [];
  const aSteps = Math.round(4 * span); // a ∈ [0, 2·span) in half pixels
  const vSteps = Math.round(10 * maxSpeed);
  for (let i = 0; i < aSteps; i++) {
    const a = i / 2;
    for (let k = -vSteps; k <= vSteps; k++) {
      const v = k / 10;
      const e = evaluate(a, v);
      if (seeds.length === keep && e.rss >= seeds[keep - 1]!.rss) continue;
      seeds.push({ a, v, ...e });
      seeds.sort((p, q) => p.rss - q.rss);
      if (seeds.length > keep) seeds.pop();
    }
  }
  let best = seeds[0]!;
  for (const seed of seeds) {
    let cur = seed;
    let da = 0.25;
    let dv = 0.05;
    for (let it = 0; it < 200 && cur.rss > 0; it++) {
      let moved = false;
      for (const [ea, ev] of [[da, 0], [-da, 0], [0, dv], [0, -dv], [da, dv], [-da, -dv], [da, -dv], [-da, dv]] as const) {
        const v = cur.v + ev;
        if (Math.abs(v) > maxSpeed) continue;
        const e = evaluate(cur.a + ea, v);
        if (e.rss < cur.rss) {
          cur = { a: cur.a + ea, v, ...e };
          moved = true;
        }
      }
      if (!moved) {
        da /= 2;
        dv /= 2;
        if (da < 1e-4) break;
      }
    }
    if (cur.rss < best.rss) best = cur;
  }
  return { start: best.a, velocity: best.v, low: best.low, rms: Math.sqrt(best.rss / Math.max(n, 1)), residualSumOfSquares: best.rss };
}

export interface TrackScores {
  /** Mean `|c(t+1) − 2·c(t) + c(t−1)|` (Euclidean) over the interior frames, px/frame². 0 for a straight path. */
  readonly secondDifference: number;
  /** RMS distance of the centroids from the best constant-velocity path with bounces, px. 0 for the data's motion. */
  readonly pathError: number;
  readonly fitX: PathFit;
  readonly fitY: PathFit;
}

/**
 * Temporal consistency of one centroid track on a `canvas`-wide canvas: the item's top-left corner moves
 * in `[0, canvas − item]`, so the centroid bounces between walls `canvas − item` apart, somewhere in the canvas.
 */
export function trackScores(x: ArrayLike<number>, y: ArrayLike<number>, canvas: number, options: TrackOptions = {}): TrackScores {
  if (x.length !== y.length) throw new ShapeMismatchError(`Expected tracks of the same length but received ${x.length} and ${y.length}`);
  const { item } = geometry(options);
  const span = canvas - item;
  const n = x.length;
  let second = 0;
  for (let t = 1; t + 1 < n; t++) second += Math.hypot(x[t + 1]! - 2 * x[t]! + x[t - 1]!, y[t + 1]! - 2 * y[t]! + y[t - 1]!);
  const fit = { ...(options.maxSpeed === undefined ? {} : { maxSpeed: options.maxSpeed }), lowMin: 0, lowMax: canvas - 1 - span };
  const fitX = fitBouncingPath(x, span, fit);
  const fitY = fitBouncingPath(y, span, fit);
  return {
    secondDifference: n > 2 ? second / (n - 2) : 0,
    pathError: Math.sqrt((fitX.residualSumOfSquares + fitY.residualSumOfSquares) / Math.max(n, 1)),
    fitX,
    fitY,
  };
}

const clipShape = (clips: Tensor): [number, number, number, number] => {
  expectShape('clips', clips, [-1, 1, -1, -1, -1]);
  const [n, , t, h, w] = clips.shape as [number, number, number, number, number];
  return [n, t, h, w];
};

/** Frames of clips `[N, 1, T, H, W]` in clip-major order: `[N·T, 1, H, W]` (a copy). */
export function clipFrames(clips: Tensor): Tensor {
  const [n, t, h, w] = clipShape(clips);
  return tensor(Float32Array.from(clips.data), [n * t, 1, h, w]);
}

/**
 * PSNR (dB, peak 2 for data in `[-1, 1]`) between consecutive frames, from the mean squared error over
 * all pairs of all clips. With `aligned`, frame t is first shifted by its rounded centroid displacement to
 * frame t + 1 (what comes in from outside is background): the item's appearance changing, not its
 * motion. Infinity when nothing changes.
 */
export function framePsnr(clips: Tensor, options: ClipGeometry & { readonly aligned?: boolean } = {}): number {
  const [n, t, h, w] = clipShape(clips);
  if (t < 2) return Infinity;
  const { background } = geometry(options);
  const at = options.aligned ? centroids(clipFrames(clips), options) : null;
  let sum = 0;
  let count = 0;
  for (let c = 0; c < n; c++)
    for (let f = 0; f + 1 < t; f++) {
      const a = (c * t + f) * h * w;
      const b = a + h * w;
      const dx = at ? Math.round(at.x[c * t + f + 1]! - at.x[c * t + f]!) : 0;
      const dy = at ? Math.round(at.y[c * t + f + 1]! - at.y[c * t + f]!) : 0;
      for (let r = 0; r < h; r++)
        for (let col = 0; col < w; col++) {
          const rs = r - dy;
          const cs = col - dx;
          const prev = rs < 0 || rs >= h || cs < 0 || cs >= w ? background : clips.data[a + rs * w + cs]!;
          sum += (clips.data[b + r * w + col]! - prev) ** 2;
          count++;
        }
    }
  const mse = sum / count;
  return mse === 0 ? Infinity : 10 * Math.log10(4 / mse);
}

/** One judge's view of clips: per-frame scores plus how the frames of a clip agree. */
export interface FrameScores extends Scores {
  /** Fraction of clips whose most frequent frame class (ties: the lowest class) is the requested one. */
  readonly clipAccuracy: number;
  /** Mean over clips of the fraction of frames judged as the clip's most frequent class (1: never changes). */
  readonly labelAgreement: number;
}

export interface VideoScores {
  readonly clips: number;
  readonly frames: number;
  /** One entry per judge, in the judges' order; `accuracy` is per frame, the Fréchet distance is over frames. */
  readonly judges: readonly FrameScores[];
  /** Means over clips of {@link TrackScores}. */
  readonly secondDifference: number;
  readonly pathError: number;
  /** Per clip, in order. */
  readonly tracks: ReadonlyArray<{ readonly secondDifference: number; readonly pathError: number }>;
  /** Consecutive-frame PSNR, plain and motion-compensated ({@link framePsnr}). */
  readonly framePsnr: number;
  readonly alignedFramePsnr: number;
  /** Frames with nothing above the background (their crops are empty). */
  readonly emptyFrames: number;
}

/**
 * Judges clips `[N, 1, T, H, W]` of classes `labels` (one per clip): every frame's item crop is classified
 * by each judge (per-frame accuracy, clip accuracy, label agreement) and the crops' features are compared
 * with the judge's `frames` reference statistics (real clips' crops, written by `tools/`) when it has them,
 * else with `test`; the centroid tracks give the temporal consistency.
 */
export async function scoreClips(judges: readonly Judge[], clips: Tensor, labels: readonly number[], options: TrackOptions = {}): Promise<VideoScores> {
  const [n, t, h, w] = clipShape(clips);
  if (labels.length !== n) throw new ShapeMismatchError(`Expected one label per clip (${n}) but received ${labels.length}`);
  if (h !== w) throw new ShapeMismatchError(`Expected square frames but received ${h}×${w}`);
  const frames = clipFrames(clips);
  const at = centroids(frames, options);
  const crops = cropItems(frames, options);
  const frameLabels = labels.flatMap((l) => new Array<number>(t).fill(l));
  const byJudge: FrameScores[] = [];
  for (const judge of judges) {
    const reference = judge.references.includes('frames') ? 'frames' : 'test';
    const { scores, predicted } = await judge.scoreWithPredictions(crops, frameLabels, { reference });
    let clipHits = 0;
    let agreement = 0;
    for (let c = 0; c < n; c++) {
      const counts = new Map<number, number>();
      for (let f = 0; f < t; f++) counts.set(predicted[c * t + f]!, (counts.get(predicted[c * t + f]!) ?? 0) + 1);
      let mode = -1;
      let most = 0;
      for (const [k, v] of [...counts].sort((p, q) => p[0] - q[0])) if (v > most) [mode, most] = [k, v];
      if (mode === labels[c]) clipHits++;
      agreement += most / t;
    }
    byJudge.push({ ...scores, clipAccuracy: clipHits / n, labelAgreement: agreement / n });
  }
  const tracks: Array<{ secondDifference: number; pathError: number }> = [];
  for (let c = 0; c < n; c++) {
    const s = trackScores(at.x.subarray(c * t, (c + 1) * t), at.y.subarray(c * t, (c + 1) * t), w, options);
    tracks.push({ secondDifference: s.secondDifference, pathError: s.pathError });
  }
  const mean = (k: 'secondDifference' | 'pathError'): number => tracks.reduce((s, r) => s + r[k], 0) / Math.max(n, 1);
  return {
    clips: n,
    frames: n * t,
    judges: byJudge,
    secondDifference: mean('secondDifference'),
    pathError: mean('pathError'),
    tracks,
    framePsnr: framePsnr(clips, options),
    alignedFramePsnr: framePsnr(clips, { ...options, aligned: true }),
    emptyFrames: at.mass.reduce((s, v) => s + (v > 0 ? 0 : 1), 0),
  };
}
