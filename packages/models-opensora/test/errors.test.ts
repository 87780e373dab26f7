import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, tensor, zeros } from '@ditfa/core';
import { ModelErrorCode } from '@ditfa/models-dit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OpenSoraModel, configFromJson, createPipeline, latentSize, loadModel, openSoraConfig, randomCheckpoint } from '../src/index.js';
import { captions, rejection, tiny } from './helpers.js';

const v12 = tiny('stdit3');
const v11 = tiny('stdit2');
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

describe('checkpoints that do not fit the config', () => {
  it('one of the other version: a coded error naming the version, with every expected key and shape', async () => {
    const e = await rejection(loadModel(randomCheckpoint(v11), { config: v12 }));
    expect(e.code).toBe(ModelErrorCode.Keys);
    expect(e.message).toContain('Expected a checkpoint of STDiT3 (Open-Sora v1.2) with depth 2, hidden 48, heads 2');
    expect(e.message).toContain("its keys are those of an STDiT2 (Open-Sora v1.1) checkpoint");
    expect(e.message).toContain('Expected keys:');
    expect(e.message).toContain('spatial_blocks.{i}.attn.qkv.weight [144, 48]');
    expect(e.message).toContain('temporal_blocks.{i}.cross_attn.kv_linear.weight [96, 48]');
    expect(e.message).toContain('x_embedder.proj.weight [48, 4, 1, 2, 2]');
    expect(e.missing).toContain('spatial_blocks.0.attn.qkv.weight');
    expect(e.unexpected).toContain('blocks.0.attn_temp.qkv.weight');
    const back = await rejection(loadModel(randomCheckpoint(v12), { config: v11 }));
    expect(back.code).toBe(ModelErrorCode.Keys);
    expect(back.message).toContain('its keys are those of an STDiT3 (Open-Sora v1.2) checkpoint');
    expect(back.message).toContain('blocks.{i}.scale_shift_table_temporal [3, 48]');
    expect(back.message).toContain('csize_embedder.mlp.0.weight [16, 256]');
  });

  it('another depth: missing or unexpected blocks; another width: every wrong shape', async () => {
    const deeper = await rejection(loadModel(randomCheckpoint(v12), { config: tiny('stdit3', { depth: 3 }) }));
    expect(deeper.code).toBe(ModelErrorCode.Keys);
    expect(deeper.message).toMatch(/missing \d+ key\(s\): spatial_blocks\.2\./);
    const shallower = await rejection(loadModel(randomCheckpoint(v12), { config: tiny('stdit3', { depth: 1 }) }));
    expect(shallower.message).toMatch(/unexpected \d+ key\(s\): spatial_blocks\.1\./);
    const wide = await rejection(loadModel(randomCheckpoint(v12), { config: tiny('stdit3', { hiddenSize: 96 }) }));
    expect(wide.code).toBe(ErrorCode.ShapeMismatch);
    expect(wide.message).toContain('x_embedder.proj.weight: expected [96, 4, 1, 2, 2] but received [48, 4, 1, 2, 2]');
    const cap = await rejection(loadModel(randomCheckpoint(v12), { config: tiny('stdit3', { modelMaxLength: 300 }) }));
    expect(cap.message).toContain('y_embedder.y_embedding: expected [300, 16] but received [6, 16]');
  });

  it('an Open-Sora v1.0 checkpoint, non-float tensors and unreadable configs', async () => {
    const v10 = randomCheckpoint(v11);
    v10.delete('t_block_temp.1.weight');
    const e = await rejection(loadModel(v10, { config: v11 }));
    expect(e.code).toBe(ModelErrorCode.Keys);
    expect(e.message).toContain('STDiT (v1.0)');
    const ints = randomCheckpoint(v12);
    ints.set('t_block.1.bias', { ...ints.get('t_block.1.bias')!, dtype: 'I32' });
    expect((await rejection(loadModel(ints, { config: v12 }))).code).toBe(ModelErrorCode.Dtype);
    expect(() => configFromJson({ hidden_size: 48 })).toThrow(expect.objectContaining({ code: ModelErrorCode.Config }));
    expect(() => openSoraConfig({ ...v11, hiddenSize: 40, numHeads: 2 })).toThrow(/divisible by 3/);
  });

  it('loads the official .pt layout through @ditfa/checkpoint exactly like its safetensors', async () => {
    const config = openSoraConfig({ ...v12, hiddenSize: 24, depth: 1, captionChannels: 8, modelMaxLength: 4, mlpRatio: 4 });
    const dir = mkdtempSync(path.join(tmpdir(), 'ditfa-opensora-'));
    try {
      copyFileSync(path.join(fixtures, 'tiny-stdit3.pt'), path.join(dir, 'model.pt'));
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'STDiT3', hidden_size: 24, depth: 1, num_heads: 2, caption_channels: 8, model_max_length: 4, patch_size: [1, 2, 2], in_channels: 4, input_sq_size: 512, qk_norm: true, pred_sigma: true }));
      const pt = await loadModel(dir, { threads: 1 });
      const st = await loadModel(path.join(fixtures, 'tiny-stdit3.safetensors'), { config, threads: 1 });
      try {
        expect(pt.config).toEqual(config);
        expect(pt.weightsHash).toBe(st.weightsHash);
        const x = tensor(Float32Array.from({ length: 2 * 4 * 2 * 4 * 6 }, (_, i) => Math.cos(i)), [2, 4, 2, 4, 6]);
        const cond = { captions: captions(2, 4, 8), mask: [1, 1, 0, 0, 1, 1, 1, 1], height: 32, width: 48, fps: 24 };
        const a = await pt.forward(x, [500, 20], cond);
        const b = await st.forward(x, [500, 20], cond);
        expect(Array.from(a.output.data)).toEqual(Array.from(b.output.data));
      } finally {
        await pt.dispose();
        await st.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('inputs the model cannot take', () => {
  let model: OpenSoraModel;
  beforeAll(async () => {
    model = await loadModel(randomCheckpoint(v12, { seed: 2 }), { config: v12, threads: 1 });
  });
  afterAll(() => model?.dispose());

  it('frame counts and sizes: clear coded errors', async () => {
    expect(() => latentSize('stdit3', { frames: 9, height: 240, width: 426 })).toThrow(/Expected 1 frame \(an image\) or at least 17 frames for Open-Sora v1.2.*received 9/);
    expect(latentSize('stdit3', { frames: 51, height: 240, width: 426 })).toEqual({ frames: 15, height: 30, width: 53 });
    expect(latentSize('stdit3', { frames: 20, height: 240, width: 426 })).toEqual({ frames: 6, height: 30, width: 53 });
    expect(latentSize('stdit3', { frames: 1, height: 480, width: 854 })).toEqual({ frames: 1, height: 60, width: 106 });
    expect(latentSize('stdit2', { frames: 16, height: 240, width: 426 })).toEqual({ frames: 16, height: 30, width: 53 });
    expect(() => latentSize('stdit2', { frames: 16, height: 4, width: 426 })).toThrow(/at least 8 pixels/);
    expect(() => latentSize('stdit2', { frames: 0, height: 240, width: 426 })).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    const pipe = createPipeline(model, { ownsModel: false });
    const request = { captions: captions(1), seed: 0, steps: 2, guidanceScale: 7, sampler: 'rflow' as const, height: 48, width: 64 };
    expect((await rejection(pipe.generate({ ...request, frames: 5 }))).message).toContain('at least 17 frames');
    expect((await rejection(pipe.generate({ ...request, frames: 17, captions: captions(1, 5) }))).code).toBe(ErrorCode.ShapeMismatch);
    expect((await rejection(pipe.generate({ ...request, frames: 17, mask: [0, 0, 0, 0, 0, 0] }))).message).toContain('at least one valid caption token');
    expect((await rejection(pipe.generate({ ...request, frames: 17, sampler: 'dpmpp-2m' }))).message).toContain('velocity');
  });

  it('latents and masks of the wrong shape', async () => {
    const cond = { captions: captions(1), height: 48, width: 64, fps: 24 };
    expect((await rejection(model.forward(zeros([1, 4, 6, 8]), 1, cond))).code).toBe(ErrorCode.ShapeMismatch);
    expect((await rejection(model.forward(zeros([1, 3, 2, 6, 8]), 1, cond))).message).toContain('[B, 4, T, H, W]');
    expect((await rejection(model.forward(zeros([1, 4, 2, 6, 8]), 1, { ...cond, xMask: [1, 0, 1] }))).message).toContain('x_mask of 1×2');
    expect((await rejection(model.forward(zeros([1, 4, 2, 6, 8]), 1, { ...cond, mask: [1, 2, 1, 1, 1, 1] }))).code).toBe(ErrorCode.InvalidArgument);
    expect((await rejection(model.forward(zeros([2, 4, 2, 6, 8]), [1, 2, 3], { ...cond, captions: captions(2) }))).code).toBe(ErrorCode.ShapeMismatch);
  });
});
