import { ShapeMismatchError, type Tensor, expectInteger, tensor } from '@ditfa/core';
import { type Canvas, encodeApng, encodePng, imageGrid, tensorToImages } from '@ditfa/image';

/**
 * Frames `[N, C, T, H, W]` (C = 3, or 1) in `[-1, 1]` as pictures: a grid with a row per sample and a
 * column per frame, and an animation (APNG) whose frames show every sample side by side.
 */

export interface VideoGridOptions {
  /** Pixels between frames (default 2). */
  readonly padding?: number;
  /** Integer upscaling (default 1). */
  readonly scale?: number;
}

function dims(frames: Tensor): [number, number, number, number, number] {
  if (frames.shape.length !== 5) throw new ShapeMismatchError(`Expected video frames [N, C, T, H, W] but received [${frames.shape.join(', ')}]`);
  return frames.shape as [number, number, number, number, number];
}

/** Frame `t` of every sample as `[N, C, H, W]` (a copy). */
export function frameAt(frames: Tensor, t: number): Tensor {
  const [N, C, T, H, W] = dims(frames);
  expectInteger('frame', t, 0, T - 1);
  const out = new Float32Array(N * C * H * W);
  for (let nc = 0; nc < N * C; nc++) out.set(frames.data.subarray((nc * T + t) * H * W, (nc * T + t + 1) * H * W), nc * H * W);
  return tensor(out, [N, C, H, W]);
}

/** The grid canvas: row `n` holds sample `n`'s frames in order. */
export function videoGridCanvas(frames: Tensor, options: VideoGridOptions = {}): Canvas {
  const [N, , T] = dims(frames);
  const perFrame = Array.from({ length: T }, (_, t) => tensorToImages(frameAt(frames, t)));
  const images = Array.from({ length: N * T }, (_, i) => perFrame[i % T]![Math.floor(i / T)]!);
  return imageGrid(images, { columns: T, padding: options.padding ?? 2, scale: options.scale ?? 1 });
}

/** PNG bytes of {@link videoGridCanvas}. */
export function videoGrid(frames: Tensor, options: VideoGridOptions = {}): Buffer {
  return encodePng(videoGridCanvas(frames, options));
}

export interface VideoAnimationOptions extends VideoGridOptions {
  /** Frames per second (default 8: Open-Sora v1.1 saves at 24 / frame interval 3; v1.2 at 24). */
  readonly fps?: number;
  /** Samples per row of each animation frame (default: all in one row). */
  readonly columns?: number;
}

/** Animated PNG bytes: animation frame `t` shows frame `t` of every sample, in a row. */
export function videoAnimation(frames: Tensor, options: VideoAnimationOptions = {}): Buffer {
  const [N, , T] = dims(frames);
  const columns = options.columns ?? N;
  const canvases = Array.from({ length: T }, (_, t) => imageGrid(tensorToImages(frameAt(frames, t)), { columns, padding: options.padding ?? 2, scale: options.scale ?? 1 }));
  return encodeApng(canvases, { fps: options.fps ?? 8 });
}
