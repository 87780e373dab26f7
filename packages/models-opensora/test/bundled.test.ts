import { existsSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { ErrorCode, type Tensor, concatBatch, tensor } from '@ditfa/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelBundle, type OpenSoraModel, type Pipeline, bundleRequest, classCaptions, createPipeline, loadModel, readModelBundle } from '../src/index.js';
import { maxRelError } from './fixtures.js';

/**
 * The bundled video model (models/fashion-stdit3, tools/export_video_model.py) against its own PyTorch
 * run: `golden.safetensors` holds a forward of the exported weights and a 3-step guided rectified-flow
 * sample from given noise, both made by tools/ditfa_tools/stdit3_model.py (itself checked against the
 * official golden fixture).
 */
const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../models/fashion-stdit3');
const present = existsSync(path.join(DIR, 'golden.safetensors'));

describe.skipIf(!present)('bundled video model (models/fashion-stdit3)', () => {
  let model: OpenSoraModel;
  let bundle: ModelBundle;
  let pipe: Pipeline;
  let golden: Map<string, Tensor>;
  const ints = (k: string): number[] => Array.from(golden.get(k)!.data);
  beforeAll(async () => {
    // int64 tensors (classes, steps) are small integers: read them through their float32 value
    const g = readSafetensors(path.join(DIR, 'golden.safetensors')).tensors;
    golden = new Map([...g].map(([k, v]) => [k, tensor(v.dtype === 'I64' ? Float32Array.from(v.shape.length ? new BigInt64Array(v.bytes.slice().buffer) : [], Number) : toFloat32(v), [...v.shape])]));
    bundle = readModelBundle(DIR)!;
    model = await loadModel(DIR, { threads: 1 });
    pipe = createPipeline(model, { pixelSpace: bundle.pixelSpace, ownsModel: false });
  });
  afterAll(async () => {
    await pipe?.dispose();
    await model?.dispose();
  });

  it('reads the bundle: pixel space, 8 frames of 32×32, rflow 30 steps, ten class captions', () => {
    expect(bundle.pixelSpace).toBe(true);
    expect(bundle.video).toEqual({ frames: 8, height: 32, width: 32, fps: 8 });
    expect(bundle.sampling).toMatchObject({ sampler: 'rflow', steps: 30, timestepTransform: false });
    expect(bundle.classCaptions!.captions.shape).toEqual([10, model.config.modelMaxLength, model.config.captionChannels]);
    expect(bundle.classCaptions!.names[5]).toBe('Sandal');
  });

  it('the forward matches PyTorch on the exported weights (batch [cond | null], two timesteps)', async () => {
    const classes = ints('forward.classes');
    const B = classes.length / 2;
    const { captions } = classCaptions(bundle, classes.slice(0, B));
    const L = model.config.modelMaxLength;
    const nul = tensor(model.nullCaption!.data, [1, L, model.config.captionChannels]);
    const y = concatBatch([captions, ...new Array<Tensor>(B).fill(nul)]);
    const n = 2 * B;
    const { output } = await model.forward(golden.get('forward.x')!, Array.from(golden.get('forward.t')!.data), {
      captions: y,
      mask: new Array<number>(n * L).fill(1),
      height: new Array<number>(n).fill(32),
      width: new Array<number>(n).fill(32),
      fps: new Array<number>(n).fill(8),
    });
    expect(output.shape).toEqual(golden.get('forward.out')!.shape);
    expect(maxRelError(output.data, golden.get('forward.out')!.data)).toBeLessThan(1e-4);
  });

  it('a 3-step guided rectified-flow sample from the same noise matches PyTorch (bundleRequest, pipeline)', async () => {
    const request = bundleRequest(bundle, { classes: ints('sample.classes'), seed: 0, steps: ints('sample.steps')[0]!, guidance: golden.get('sample.guidance')!.data[0]! });
    const r = await pipe.generate({ ...request, noise: golden.get('sample.noise')! });
    expect(r.sampler).toBe('rflow');
    const want = golden.get('sample.out')!;
    expect(r.latents.shape).toEqual(want.shape);
    expect(maxRelError(r.latents.data, want.data)).toBeLessThan(1e-3);
    // pixel space: the frames are the latents, clipped
    expect(r.images!.shape).toEqual(want.shape);
    expect(r.images!.data.every((v, i) => v === Math.min(1, Math.max(-1, r.latents.data[i]!)))).toBe(true);
  });

  it('frame conditioning (reference): given frames stay as given, the rest follows the official masked rflow loop', async () => {
    const steps = 4, guidance = 4, classes = [0, 7];
    const request = bundleRequest(bundle, { classes, seed: 3, steps, guidance });
    const N = classes.length, C = model.config.inChannels, T = 8, H = 32, W = 32;
    const shape = [N, C, T, H, W];
    const numel = N * C * T * H * W;
    // a reference clip (any values in range), given: clip 0 its first frame, clip 1 its first two
    const ref = tensor(Float32Array.from({ length: numel }, (_, i) => Math.sin(i * 0.37) * 0.9), shape);
    const flags = Array.from({ length: N * T }, (_, i) => (i === 0 || i === T || i === T + 1 ? 1 : 0));
    const noise = tensor(Float32Array.from({ length: numel }, (_, i) => Math.cos(i * 1.3) * 1.1), shape);
    const r = await pipe.generate({ ...request, noise, reference: { latents: ref, frames: flags } });

    // independently: RFLOW.sample with a 0/1 mask (Open-Sora v1.2): z starts as the noise with the given
    // frames put in; every step the model sees x_mask = 1 on generated frames (both CFG halves), z moves by
    // the guided velocity · dt, and the given frames are put back
    const given = (i: number): boolean => flags[Math.floor(i / (H * W)) % T + Math.floor(i / (C * T * H * W)) * T] === 1;
    let z = Float32Array.from(noise.data, (v, i) => (given(i) ? ref.data[i]! : v));
    const ts = Array.from({ length: steps }, (_, i) => (1 - i / steps) * 1000);
    const xMask = flags.map((f) => 1 - f);
    const base = pipe.model.condition({ ...request, reference: undefined }, true).cond;
    const half = numel;
    for (let i = 0; i < steps; i++) {
      const x = tensor(Float32Array.from([...z, ...z]), [2 * N, C, T, H, W]);
      const { output } = await model.forward(x, ts[i]!, { ...base, xMask: [...xMask, ...xMask] });
      const outC = output.shape[1]!;
      const v = (row: number, j: number): number => {
        const per = C * T * H * W;
        return output.data[row * outC * T * H * W + Math.floor((j % per) / (T * H * W)) * T * H * W + (j % (T * H * W))]!;
      };
      const dt = (i < steps - 1 ? ts[i]! - ts[i + 1]! : ts[i]!) / 1000;
      z = Float32Array.from(z, (zv, j) => {
        if (given(j)) return ref.data[j]!;
        const b = Math.floor(j / (C * T * H * W));
        const vc = v(b, j), vu = v(b + N, j);
        return zv + (vu + guidance * (vc - vu)) * dt;
      });
    }
    expect(r.latents.shape).toEqual(shape);
    expect(maxRelError(r.latents.data, z)).toBeLessThan(1e-5);
    // the given frames are exactly the reference; the others moved away from their starting noise
    for (let i = 0; i < numel; i++) if (given(i)) expect(r.latents.data[i]).toBe(ref.data[i]);
    expect(maxRelError(r.latents.data.subarray(H * W, H * W * 2), noise.data.subarray(H * W, H * W * 2))).toBeGreaterThan(1e-2);
    // without the reference the same noise gives another clip: the conditioning reached the model
    const plain = await pipe.generate({ ...request, noise });
    expect(maxRelError(plain.latents.data.subarray(H * W, T * H * W), r.latents.data.subarray(H * W, T * H * W))).toBeGreaterThan(1e-3);
  });

  it('refuses a bad reference with coded errors before anything runs', async () => {
    const request = bundleRequest(bundle, { classes: [1], seed: 0, steps: 2 });
    const latents = tensor(new Float32Array(8 * 32 * 32), [1, 1, 8, 32, 32]);
    const frames = [1, 0, 0, 0, 0, 0, 0, 0];
    await expect(pipe.generate({ ...request, reference: { latents, frames: frames.slice(1) } })).rejects.toMatchObject({ code: ErrorCode.ShapeMismatch, message: expect.stringContaining('1×8 = 8 flags') });
    await expect(pipe.generate({ ...request, reference: { latents, frames: [2, ...frames.slice(1)] } })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(pipe.generate({ ...request, reference: { latents: tensor(new Float32Array(4), [1, 1, 1, 2, 2]), frames } })).rejects.toMatchObject({ code: ErrorCode.ShapeMismatch, message: expect.stringContaining('[1, 1, 8, 32, 32]') });
    await expect(pipe.generate({ ...request, sampler: 'ddim', reference: { latents, frames } })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
  });

  it('refuses classes outside the captions and bad bundle sections with coded errors', () => {
    expect(() => classCaptions(bundle, [10])).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ditfa-bundle-'));
    try {
      copyFileSync(path.join(DIR, 'captions.safetensors'), path.join(dir, 'captions.safetensors'));
      const write = (ditfa: unknown) => writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'STDiT3', ditfa }));
      write({ video: { frames: 8, height: 32, width: 32, fps: 8 }, sampling: { sampler: 'ddim', steps: 30, guidance: 4 } });
      expect(() => readModelBundle(dir)).toThrow(/sampling\.sampler "rflow"/);
      write({ video: { frames: 0, height: 32, width: 32, fps: 8 }, sampling: { sampler: 'rflow', steps: 30, guidance: 4 } });
      expect(() => readModelBundle(dir)).toThrow(expect.objectContaining({ code: 'ERR_DITFA_MODEL_CONFIG', message: expect.stringMatching(/video\.frames/) }));
      write({ video: { frames: 8, height: 32, width: 32, fps: 8 }, sampling: { sampler: 'rflow', steps: 30, guidance: 4 }, captions: 'missing.safetensors' });
      expect(() => readModelBundle(dir)).toThrow(/missing\.safetensors/);
      write({ video: { frames: 8, height: 32, width: 32, fps: 8 }, sampling: { sampler: 'rflow', steps: 30, guidance: 4 }, captions: 'captions.safetensors', class_names: ['a'] });
      expect(() => readModelBundle(dir)).toThrow(/10 ditfa\.class_names/);
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'STDiT3' }));
      expect(readModelBundle(dir)).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
