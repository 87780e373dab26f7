import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { type CheckpointTensor, readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { InvalidArgumentError, type Tensor, describeValue, expectInteger, tensor } from '@ditfa/core';
import { ModelConfigError } from '@ditfa/models-dit';
import { type SamplerFactory, samplerFactory } from '@ditfa/samplers';
import type { OpenSoraGenerateOptions, VideoSize } from './adapter.js';

/**
 * A model folder that says how to run it: `config.json`'s `ditfa` section (written by
 * `tools/export_video_model.py` for the bundled Moving Fashion-MNIST model). It carries what the
 * official Open-Sora releases leave to their inference configs and text encoder:
 *
 * ```json
 * "ditfa": {
 *   "pixel_space": true,                       // no VAE: the latents are the frames
 *   "video": { "frames": 8, "height": 32, "width": 32, "fps": 8 },
 *   "sampling": { "sampler": "rflow", "steps": 30, "guidance": 4, "timestep_transform": false },
 *   "captions": "captions.safetensors",        // class "captions" [classes, L, C] (+ "mask" [classes, L])
 *   "class_names": ["T-shirt/top", …]
 * }
 * ```
 */
export interface ModelBundle {
  readonly dir: string;
  /** The latents are the frames (no VAE): generations return them, clipped to `[-1, 1]`, as the frames. */
  readonly pixelSpace: boolean;
  /** The pixel clip the model was trained on, and its fps micro-condition. */
  readonly video: VideoSize & { readonly fps: number };
  readonly sampling: { readonly sampler: 'rflow'; readonly steps: number; readonly guidance: number; readonly timestepTransform: boolean };
  /** Class captions `[classes, L, C]` and their mask `[classes·L]`, when the folder has them. */
  readonly classCaptions?: { readonly captions: Tensor; readonly mask: readonly number[]; readonly names: readonly string[] };
}

const section = (json: Record<string, unknown>, key: string, file: string): Record<string, unknown> => {
  const v = json[key];
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ModelConfigError(`Expected an object "${key}" in the "ditfa" section of ${file} but received ${describeValue(v)}`);
  return v as Record<string, unknown>;
};

function positiveNumber(name: string, v: unknown, file: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ModelConfigError(`Expected ditfa.${name} in ${file} to be a positive number but received ${describeValue(v)}`);
  return v;
}

function integer(name: string, v: unknown, file: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ModelConfigError(`Expected ditfa.${name} in ${file} to be a positive integer but received ${describeValue(v)}`);
  return v;
}

/** A mask tensor of any integer or float dtype as 0/1 numbers. */
export function maskValues(mask: CheckpointTensor): number[] {
  const { dtype, bytes } = mask;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32':
    case 'F16':
    case 'BF16':
    case 'F64':
      return Array.from(toFloat32(mask), (v) => (v !== 0 ? 1 : 0));
    case 'I64':
      return Array.from({ length: bytes.length / 8 }, (_, i) => (view.getBigInt64(8 * i, true) !== 0n ? 1 : 0));
    case 'I32':
      return Array.from({ length: bytes.length / 4 }, (_, i) => (view.getInt32(4 * i, true) !== 0 ? 1 : 0));
    case 'U8':
    case 'BOOL':
    case 'I8':
      return Array.from(bytes, (v) => (v !== 0 ? 1 : 0));
    default:
      throw new InvalidArgumentError(`Expected a caption mask of an integer or float dtype but received ${dtype}`);
  }
}

/**
 * Reads the `ditfa` section of `<dir>/config.json` (and its captions file); `null` when the folder has
 * no such section (an official release: the caller supplies captions, size and sampling). A malformed
 * section is a `ModelConfigError` (`ERR_DITFA_MODEL_CONFIG`) naming the field.
 */
export function readModelBundle(dir: string): ModelBundle | null {
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) return null;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (cause) {
    throw new ModelConfigError(`Expected a JSON model config at ${file} but it could not be read: ${(cause as Error).message}`);
  }
  const d = json?.ditfa;
  if (d === undefined) return null;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) throw new ModelConfigError(`Expected "ditfa" in ${file} to be an object but received ${describeValue(d)}`);
  const s = d as Record<string, unknown>;
  const v = section(s, 'video', file);
  const sm = section(s, 'sampling', file);
  if (sm.sampler !== 'rflow') throw new ModelConfigError(`Expected ditfa.sampling.sampler "rflow" in ${file} (the only sampler a bundle names) but received ${describeValue(sm.sampler)}`);
  const bundle: ModelBundle = {
    dir,
    pixelSpace: s.pixel_space === true,
    video: { frames: integer('video.frames', v.frames, file), height: integer('video.height', v.height, file), width: integer('video.width', v.width, file), fps: positiveNumber('video.fps', v.fps, file) },
    sampling: { sampler: 'rflow', steps: integer('sampling.steps', sm.steps, file), guidance: positiveNumber('sampling.guidance', sm.guidance, file), timestepTransform: sm.timestep_transform === true },
  };
  if (s.captions === undefined) return bundle;
  if (typeof s.captions !== 'string') throw new ModelConfigError(`Expected ditfa.captions in ${file} to be a file name but received ${describeValue(s.captions)}`);
  const capFile = path.join(dir, s.captions);
  let tensors: ReadonlyMap<string, CheckpointTensor>;
  try {
    tensors = readSafetensors(capFile).tensors;
  } catch (cause) {
    throw new ModelConfigError(`Expected the class captions ${capFile} (named by ${file}) but it could not be read: ${(cause as Error).message}`);
  }
  const y = tensors.get('captions');
  if (!y || y.shape.length !== 3) throw new ModelConfigError(`Expected a "captions" tensor [classes, L, C] in ${capFile} but received ${describeValue(y?.shape ?? [...tensors.keys()])}`);
  const [classes, L] = y.shape as [number, number, number];
  const m = tensors.get('mask');
  const mask = m ? maskValues(m) : new Array<number>(classes * L).fill(1);
  if (mask.length !== classes * L) throw new ModelConfigError(`Expected a "mask" of ${classes}×${L} values in ${capFile} but received ${mask.length}`);
  const names = Array.isArray(s.class_names) ? (s.class_names as unknown[]).map(String) : Array.from({ length: classes }, (_, i) => `class ${i}`);
  if (names.length !== classes) throw new ModelConfigError(`Expected ${classes} ditfa.class_names in ${file} (one per caption) but received ${names.length}`);
  return { ...bundle, classCaptions: { captions: tensor(toFloat32(y), [...y.shape]), mask, names } };
}

/** The bundle's sampler: rectified flow, with Open-Sora's timestep transform at the bundle's size if it says so. */
export function bundleSampler(bundle: ModelBundle): SamplerFactory {
  const { frames, height, width } = bundle.video;
  return bundle.sampling.timestepTransform ? samplerFactory({ kind: 'rflow', timestepTransform: { frames, height, width } }) : samplerFactory({ kind: 'rflow' });
}

/** The captions (and mask) of these classes, from the bundle's class captions. */
export function classCaptions(bundle: ModelBundle, classes: readonly number[]): { captions: Tensor; mask: number[] } {
  const cc = bundle.classCaptions;
  if (!cc) throw new InvalidArgumentError(`Expected class captions in ${bundle.dir} (ditfa.captions in its config.json) but it has none; pass caption embeddings instead`);
  const [n, L, C] = cc.captions.shape as [number, number, number];
  if (!Array.isArray(classes) || classes.length === 0) throw new InvalidArgumentError(`Expected at least one class but received ${describeValue(classes)}`);
  const captions = new Float32Array(classes.length * L * C);
  const mask: number[] = [];
  classes.forEach((k, i) => {
    expectInteger('class', k, 0, n - 1);
    captions.set(cc.captions.data.subarray(k * L * C, (k + 1) * L * C), i * L * C);
    mask.push(...cc.mask.slice(k * L, (k + 1) * L));
  });
  return { captions: tensor(captions, [classes.length, L, C]), mask };
}

/**
 * A generate() request for these classes as the bundle says: its clip size, fps and sampling; in pixel
 * space the latent is the clip. `steps` / `guidance` override the bundle's.
 */
export function bundleRequest(bundle: ModelBundle, o: { readonly classes: readonly number[]; readonly seed: number; readonly steps?: number; readonly guidance?: number }): OpenSoraGenerateOptions {
  const { frames, height, width, fps } = bundle.video;
  return {
    ...classCaptions(bundle, o.classes),
    frames,
    height,
    width,
    fps,
    ...(bundle.pixelSpace ? { latentSize: { frames, height, width } } : {}),
    seed: o.seed,
    steps: o.steps ?? bundle.sampling.steps,
    guidanceScale: o.guidance ?? bundle.sampling.guidance,
    guidanceChannels: 'all',
    sampler: bundleSampler(bundle),
  };
}
