import { ErrorCode, type PlanDocument, attentionFlops, tensor, windowFlops } from '@ditfa/core';
import { GraphBuilder } from '@ditfa/ort-graph';
import { asc } from '@ditfa/strategy-asc';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ditConfig, pixartConfig } from '../src/config.js';
import { loadModel } from '../src/load.js';
import { type PipelineEvent, createPipeline } from '../src/pipeline.js';
import { randomCheckpoint } from '../src/random.js';
import { maxRelError } from './fixtures.js';

const dit = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });
const pixel = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 1, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });
const pixart = pixartConfig({ sampleSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 2, captionChannels: 16, interpolationScale: 1, learnSigma: true });

function planFor(fingerprint: PlanDocument['fingerprint'], blocks: number, methods: (step: number) => string): PlanDocument {
  return {
    format: 'ditfa-plan',
    version: 1,
    fingerprint,
    threshold: { delta: 0.05 },
    candidates: ['ast', 'wars+asc', 'wars', 'full+asc'],
    numBlocks: blocks,
    steps: Array.from({ length: fingerprint.steps }, (_, s) => Array.from({ length: blocks }, () => ({ method: methods(s), loss: null, flopsFraction: 1 }))),
    totals: { attentionFlopsFraction: 1 },
  };
}

/** A stand-in VAE decoder: `sample = latent_sample[:, :3]` upsampled ×2 (nearest), the ONNX interface of diffusers' export. */
function toyVae(): Uint8Array {
  const g = new GraphBuilder('vae');
  const z = g.input('latent_sample', 'float32', ['N', 4, 'h', 'w']);
  const rgb = g.op('Slice', [z, g.constI64([0]), g.constI64([3]), g.constI64([1])]);
  g.output(g.op('Resize', [rgb, '', g.constF([1, 1, 2, 2], [4])], { mode: 'nearest' }), 'sample');
  return g.toModel();
}

describe('attention work of a generation', () => {
  // 16 tokens, C = 32, 2 blocks, 2 samples under CFG (B = 4), default window L/8 = 2 tokens per side
  const A = attentionFlops(4, 16, 16, 32);
  const W = windowFlops(4, 16, 32, { kind: '1d', size: 2 });
  const warsAfterFull = (s: number) => (s === 0 ? 'full' : 'wars');

  it('counts what the plan predicts when nothing falls back, and full attention without a plan', async () => {
    const model = await loadModel(randomCheckpoint(dit, { seed: 5 }), { config: dit, threads: 1 });
    const pipe = createPipeline(model, { strategies: [wars(), ast(), ...asc()] });
    try {
      const plan = planFor(pipe.fingerprint({ steps: 4, guidanceScale: 4 }), 2, warsAfterFull);
      const r = await pipe.generate({ classLabels: [1, 2], seed: 3, steps: 4, guidanceScale: 4, images: false, plan });
      // per block: step 0 full + the residual for the WA-RS steps, steps 1-3 the window
      expect(r.attention).toEqual({ flops: 2 * (A + W + 3 * W), rawFlops: 2 * 4 * A, fallbacks: 0, fraction: (A + 4 * W) / (4 * A) });
      const raw = await pipe.generate({ classLabels: [1, 2], seed: 3, steps: 4, guidanceScale: 4, images: false });
      expect(raw.attention).toEqual({ flops: 8 * A, rawFlops: 8 * A, fallbacks: 0, fraction: 1 });
    } finally {
      await pipe.dispose();
    }
  });

  it('counts the full attention a strategy fell back to when the cache budget refused its residual', async () => {
    const model = await loadModel(randomCheckpoint(dit, { seed: 5 }), { config: dit, threads: 1 });
    const events: PipelineEvent[] = [];
    const pipe = createPipeline(model, { strategies: [wars(), ast(), ...asc()], cacheBudgetBytes: 1, onEvent: (e) => events.push(e) });
    try {
      const plan = planFor(pipe.fingerprint({ steps: 4, guidanceScale: 4 }), 2, warsAfterFull);
      const r = await pipe.generate({ classLabels: [1, 2], seed: 3, steps: 4, guidanceScale: 4, images: false, plan });
      expect(events.filter((e) => e.type === 'fallback')).toHaveLength(6);
      // per block: steps 0-2 full + a residual (a later WA-RS step would read it), step 3 plain full
      expect(r.attention).toEqual({ flops: 2 * (4 * A + 3 * W), rawFlops: 8 * A, fallbacks: 6, fraction: (4 * A + 3 * W) / (4 * A) });
    } finally {
      await pipe.dispose();
    }
  });
});

describe('DiT pipeline', () => {
  const events: PipelineEvent[] = [];
  let pipe: ReturnType<typeof createPipeline>;
  beforeAll(async () => {
    const model = await loadModel(randomCheckpoint(dit, { seed: 5 }), { config: dit, threads: 1 });
    pipe = createPipeline(model, { strategies: [wars(), ast(), ...asc()], vae: toyVae(), onEvent: (e) => events.push(e) });
  });
  afterAll(() => pipe?.dispose());

  it('is repeatable per seed, reports progress and decodes through the VAE', async () => {
    const progress: number[] = [];
    const a = await pipe.generate({ classLabels: [1, 2], seed: 7, steps: 4, guidanceScale: 4, onProgress: (e) => progress.push(e.step) });
    const b = await pipe.generate({ classLabels: [1, 2], seed: 7, steps: 4, guidanceScale: 4, images: false });
    const c = await pipe.generate({ classLabels: [1, 2], seed: 8, steps: 4, guidanceScale: 4, images: false });
    expect(progress).toEqual([1, 2, 3, 4]);
    expect(a.latents.shape).toEqual([2, 4, 8, 8]);
    expect(maxRelError(b.latents.data, a.latents.data)).toBe(0);
    expect(maxRelError(c.latents.data, a.latents.data)).toBeGreaterThan(1e-3);
    expect(a.images!.shape).toEqual([2, 3, 16, 16]);
    // the decoder's output, clipped to [-1, 1] like diffusers' image processor
    const clip = (v: number) => Math.max(-1, Math.min(1, v));
    expect(a.images!.data[0]).toBeCloseTo(clip(a.latents.data[0]! / 0.18215), 4);
    expect(a.images!.data.every((v) => v >= -1 && v <= 1)).toBe(true);
    expect(a.png).toHaveLength(2);
    expect(Array.from(a.png![0]!.subarray(0, 4))).toEqual([0x89, 0x50, 0x4e, 0x47]);
    expect(b.png).toBeUndefined();
    expect(events.filter((e) => e.type === 'cache-reset')).toHaveLength(3);
    expect(events.some((e) => e.type === 'backend')).toBe(true);
  });

  it('runs a plan made for it, and compression changes the result', async () => {
    const fp = pipe.fingerprint({ steps: 4, guidanceScale: 4 });
    const raw = await pipe.generate({ classLabels: [1, 2], seed: 3, steps: 4, guidanceScale: 4, images: false });
    const fullPlan = await pipe.generate({ classLabels: [1, 2], seed: 3, steps: 4, guidanceScale: 4, images: false, plan: planFor(fp, 2, () => 'full') });
    expect(maxRelError(fullPlan.latents.data, raw.latents.data)).toBe(0);
    for (const m of ['wars', 'wars+asc', 'full+asc', 'ast']) {
      const r = await pipe.generate({ classLabels: [1, 2], seed: 3, steps: 4, guidanceScale: 4, images: false, plan: planFor(fp, 2, (s) => (s === 0 ? 'full' : m)) });
      expect(maxRelError(r.latents.data, raw.latents.data), m).toBeGreaterThan(0);
      expect(r.latents.data.every(Number.isFinite), m).toBe(true);
    }
  });

  it('refuses a plan made for another model or configuration', async () => {
    const fp = pipe.fingerprint({ steps: 4, guidanceScale: 4 });
    const other = planFor({ ...fp, model: { ...fp.model, weightsHash: 'sha256:0000' } }, 2, () => 'full');
    await expect(pipe.generate({ classLabels: [1], seed: 1, steps: 4, guidanceScale: 4, plan: other })).rejects.toMatchObject({ code: ErrorCode.PlanMismatch, message: expect.stringContaining('model.weightsHash') });
    const steps = planFor({ ...fp, steps: 5 }, 2, () => 'full');
    await expect(pipe.generate({ classLabels: [1], seed: 1, steps: 4, guidanceScale: 4, plan: steps })).rejects.toMatchObject({ code: ErrorCode.PlanMismatch });
  });

  it('stops on abort with a coded error', async () => {
    const ctl = new AbortController();
    const run = pipe.generate({ classLabels: [1], seed: 1, steps: 10, signal: ctl.signal, onProgress: (e) => (e.step === 2 ? ctl.abort(new Error('enough')) : undefined) });
    await expect(run).rejects.toMatchObject({ code: ErrorCode.Aborted });
  });

  it('refuses bad labels and samplers the model cannot feed', async () => {
    await expect(pipe.generate({ classLabels: [10], seed: 1, steps: 2 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(pipe.generate({ classLabels: [], seed: 1, steps: 2 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
  });
});

describe('pixel-space DiT (the Fashion-MNIST layout) and PixArt pipelines', () => {
  it('generates PNGs straight from a 1-channel pixel-space DiT with IDDPM', async () => {
    const model = await loadModel(randomCheckpoint(pixel, { seed: 2 }), { config: pixel, threads: 1 });
    const pipe = createPipeline(model);
    try {
      const r = await pipe.generate({ classLabels: [3], seed: 1, steps: 3, guidanceScale: 2, sampler: 'iddpm' });
      expect(r.latents.shape).toEqual([1, 1, 8, 8]);
      expect(r.png).toHaveLength(1);
      // the images are the samples clipped to [-1, 1]
      expect(Array.from(r.images!.data)).toEqual(Array.from(r.latents.data, (v) => Math.fround(Math.max(-1, Math.min(1, v)))));
    } finally {
      await pipe.dispose();
    }
  });

  it('PixArt: CFG in [negative, prompt] order with caller-supplied captions, non-square latents', async () => {
    const model = await loadModel(randomCheckpoint(pixart, { seed: 4 }), { config: pixart, threads: 1 });
    const pipe = createPipeline(model);
    try {
      const captions = tensor(Float32Array.from({ length: 2 * 5 * 16 }, (_, i) => Math.sin(i)), [2, 5, 16]);
      const negativeCaptions = tensor(new Float32Array(5 * 16), [1, 5, 16]);
      const mask = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1];
      const r = await pipe.generate({ captions, mask, negativeCaptions, seed: 1, steps: 3, guidanceScale: 4.5, height: 8, width: 12 });
      expect(r.latents.shape).toEqual([2, 4, 8, 12]);
      expect(r.latents.data.every(Number.isFinite)).toBe(true);
      await expect(pipe.generate({ captions, seed: 1, steps: 2, guidanceScale: 4.5 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('negativeCaptions') });
      await expect(pipe.generate({ captions, seed: 1, steps: 2, images: true })).rejects.toMatchObject({ message: expect.stringContaining('VAE decoder') });
    } finally {
      await pipe.dispose();
    }
  });
});

describe('loading from a folder (the models/fashion-dit layout)', () => {
  it('reads weights.safetensors + a config.json in DiT-original names', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { writeSafetensors } = await import('@ditfa/checkpoint');
    const dir = mkdtempSync(join(tmpdir(), 'ditfa-fashion-'));
    try {
      writeFileSync(join(dir, 'weights.safetensors'), writeSafetensors(randomCheckpoint(pixel, { seed: 9 })));
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ input_size: 8, patch_size: 2, in_channels: 1, hidden_size: 32, depth: 2, num_heads: 2, mlp_ratio: 4, class_dropout_prob: 0.1, num_classes: 10, learn_sigma: true }));
      const model = await loadModel(dir, { threads: 1 });
      expect(model.config).toMatchObject({ family: 'dit', inChannels: 1, inputSize: 8, numClasses: 10 });
      expect(model.weightsHash).toMatch(/^sha256:[0-9a-f]{64}$/);
      const { output } = await model.forward(tensor(new Float32Array(64), [1, 1, 8, 8]), 10, { classLabels: [0] });
      expect(output.shape).toEqual([1, 2, 8, 8]);
      await model.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
