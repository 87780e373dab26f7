import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '@ditfa/checkpoint';
import { parsePlan } from '@ditfa/core';
import { apngFrameCount, decodePng } from '@ditfa/image';
import { openSoraConfig, randomCheckpoint } from '@ditfa/models-opensora';
import { GraphBuilder } from '@ditfa/ort-graph';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../src/index.js';
import { cli } from './cli-helper.js';

/**
 * A tiny random STDiT3 (Open-Sora v1.2) folder in the Hub layout (config.json with model_type STDiT3 +
 * model.safetensors), caption embeddings with a mask, and a stand-in ONNX decoder of `[B, C, T, H, W]`.
 */
const dir = mkdtempSync(join(tmpdir(), 'ditfa-e2e-opensora-'));
const modelDir = join(dir, 'stdit3');
const caps = join(dir, 'captions.safetensors');
const decoder = join(dir, 'decoder.onnx');
const video = ['--caption-embeddings', caps, '--frames', '17', '--height', '48', '--width', '64'];
beforeAll(() => {
  const config = openSoraConfig({ version: 'stdit3', inChannels: 4, patchSize: [1, 2, 2], hiddenSize: 48, depth: 2, numHeads: 2, mlpRatio: 2, captionChannels: 16, modelMaxLength: 6, inputSqSize: 512, qkNorm: true, predSigma: true });
  mkdirSync(modelDir, { recursive: true });
  writeFileSync(join(modelDir, 'model.safetensors'), writeSafetensors(randomCheckpoint(config, { seed: 5 })));
  writeFileSync(
    join(modelDir, 'config.json'),
    JSON.stringify({ architectures: ['STDiT3'], model_type: 'STDiT3', hidden_size: 48, depth: 2, num_heads: 2, mlp_ratio: 2, caption_channels: 16, model_max_length: 6, patch_size: [1, 2, 2], in_channels: 4, input_sq_size: 512, qk_norm: true, pred_sigma: true }),
  );
  const y = Float32Array.from({ length: 2 * 6 * 16 }, (_, i) => Math.sin(0.37 * i));
  const mask = BigInt64Array.from([1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0].map(BigInt));
  writeFileSync(caps, writeSafetensors(new Map([
    ['captions', { dtype: 'F32' as const, shape: [2, 6, 16], bytes: new Uint8Array(y.buffer) }],
    ['mask', { dtype: 'I64' as const, shape: [2, 6], bytes: new Uint8Array(mask.buffer) }],
  ])));
  const g = new GraphBuilder('decoder');
  const z = g.input('z', 'float32', ['B', 4, 'T', 'h', 'w']);
  const rgb = g.op('Slice', [z, g.constI64([0]), g.constI64([3]), g.constI64([1])]);
  g.output(g.op('Resize', [rgb, '', g.constF([1, 1, 1, 2, 2], [5])], { mode: 'nearest' }), 'frames');
  writeFileSync(decoder, g.toModel());
});

describe('ditfa on an Open-Sora model folder', { timeout: 180_000 }, () => {
  const plan = join(dir, 'plan.json');

  it('calibrates every site with the official sampler, generates frames and an animation under the plan, and benchmarks it', async () => {
    const cal = await cli('--json', 'calibrate', '--model', modelDir, ...video, '--threshold', 'D6', '--steps', '3', '--out', plan);
    expect(cal.code, cal.err).toBe(ExitCode.Ok);
    const doc = parsePlan(readFileSync(plan, 'utf8'));
    expect(doc.fingerprint.layers.map((l) => l.id).slice(0, 4)).toEqual(['0.spatial', '0.spatial-cross', '0.temporal', '0.temporal-cross']);
    // the official v1.2 sampling where --sampler and --guidance were not given
    expect(doc.fingerprint).toMatchObject({ sampler: 'rflow+transform(h=48,w=64,frames=17)', guidance: 7, cfgOrder: 'cond-first', latent: { channels: 4, frames: 5, height: 6, width: 8 } });

    const grid = join(dir, 'frames.png');
    const anim = join(dir, 'video.png');
    const gen = await cli('--json', 'generate', '--model', modelDir, ...video, '--plan', plan, '--steps', '3', '--vae-decoder', decoder, '--out', grid, '--animation', anim);
    expect(gen.code, gen.err).toBe(ExitCode.Ok);
    const r = JSON.parse(gen.out);
    expect(r.latents).toEqual([2, 4, 5, 6, 8]);
    expect(r.attention.fallbacks).toBe(0);
    expect(r.attention.fraction).toBe(doc.totals.attentionFlopsFraction);
    // a row per video, a column per frame (12×16 decoded frames, 2 px padding)
    const img = decodePng(readFileSync(grid));
    expect([img.width, img.height]).toEqual([5 * 16 + 6 * 2, 2 * 12 + 3 * 2]);
    expect(apngFrameCount(readFileSync(anim))).toBe(5);

    const latents = join(dir, 'latents.safetensors');
    expect((await cli('generate', '--model', modelDir, ...video, '--steps', '2', '--out', latents)).code).toBe(ExitCode.Ok);
    expect(readSafetensors(latents).tensors.get('latents')!.shape).toEqual([2, 4, 5, 6, 8]);

    const b = await cli('--json', 'bench', '--model', modelDir, ...video, '--plan', plan);
    expect(b.code, b.err).toBe(ExitCode.Ok);
    const m = JSON.parse(b.out);
    expect(m.raw.attentionFlopsFraction).toBe(1);
    expect(m.planned.attentionFlopsFraction).toBe(doc.totals.attentionFlopsFraction);
    expect(m.planned.fallbacks).toBe(0);
  });

  it('fails clearly without captions, without a decoder for frames, on frame counts v1.2 cannot take and on a plan made for another size', async () => {
    const noCaps = await cli('generate', '--model', modelDir, '--steps', '2', '--out', join(dir, 'l.safetensors'));
    expect(noCaps.code).toBe(ExitCode.Usage);
    expect(noCaps.err).toContain('--caption-embeddings');
    const noDecoder = await cli('generate', '--model', modelDir, ...video, '--steps', '2', '--out', join(dir, 'x.png'));
    expect(noDecoder.code).toBe(ExitCode.Usage);
    expect(noDecoder.err).toContain('--vae-decoder');
    const frames = await cli('generate', '--model', modelDir, '--caption-embeddings', caps, '--frames', '9', '--height', '48', '--width', '64', '--steps', '2', '--out', join(dir, 'l.safetensors'));
    expect(frames.code).toBe(ExitCode.Usage);
    expect(frames.err).toContain('at least 17 frames');
    const other = await cli('generate', '--model', modelDir, '--caption-embeddings', caps, '--frames', '17', '--height', '64', '--width', '64', '--plan', plan, '--steps', '3', '--out', join(dir, 'l.safetensors'));
    expect(other.code).toBe(ExitCode.PlanMismatch);
    expect(existsSync(join(dir, 'x.png'))).toBe(false);
  });
});
