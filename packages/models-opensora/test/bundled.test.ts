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
