import {
  type AttentionStrategy,
  type CfgLayout,
  ErrorCode,
  type PlanDocument,
  type PlanDocumentV1,
  PlanMismatchError,
  type RowSelection,
  type Tensor,
  attentionFlops,
  buildPlan,
  defineStrategy,
  layerAttentionFlops,
  tensor,
  validatePlan,
  windowFlops,
} from '@ditfa/core';
import { GraphBuilder } from '@ditfa/ort-graph';
import { NumericalFaultError } from '@ditfa/pipeline';
import { asc } from '@ditfa/strategy-asc';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ditConfig, pixartConfig } from '../src/config.js';
import { loadModel } from '../src/load.js';
import type { PixartAdapter } from '../src/pixart.js';
import { type FingerprintOptions, type GenerateOptions, type Pipeline, type PipelineEvent, createPipeline } from '../src/pipeline.js';
import { randomCheckpoint } from '../src/random.js';
import { maxRelError } from './fixtures.js';

const dit = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });
const dit3 = ditConfig({ ...dit, depth: 3 });
const pixel = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 1, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });
const pixart = pixartConfig({ sampleSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 2, captionChannels: 16, interpolationScale: 1, learnSigma: true });

const strategies = (): AttentionStrategy[] => [wars(), ast(), ...asc()];

/**
 * A version-2 plan for a generation with `options` on `pipe` (`rows` attention rows, both CFG halves)
 * deciding `method(step, layer)`, its numbers filled in from the pipeline's strategies the way the
 * planner fills them in (core's `layerAttentionFlops`, which knows which caches a call writes ahead).
 */
function planOf(pipe: Pipeline, options: FingerprintOptions & Partial<GenerateOptions>, rows: number, method: (step: number, layer: number) => string): PlanDocument {
  return buildPlan({ fingerprint: pipe.fingerprint(options), layers: pipe.layers(options, rows), strategies: pipe.strategies, method: (step, layer) => method(step, layer.index), threshold: 0.05 });
}

/** A stand-in VAE decoder: `sample = latent_sample[:, :3]` upsampled ×2 (nearest), the ONNX interface of diffusers' export. */
function toyVae(): Uint8Array {
  const g = new GraphBuilder('vae');
  const z = g.input('latent_sample', 'float32', ['N', 4, 'h', 'w']);
  const rgb = g.op('Slice', [z, g.constI64([0]), g.constI64([3]), g.constI64([1])]);
  g.output(g.op('Resize', [rgb, '', g.constF([1, 1, 2, 2], [4])], { mode: 'nearest' }), 'sample');
  return g.toModel();
}

async function rejection(p: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await p;
  } catch (e) {
    return e as Error & Record<string, unknown>;
  }
  throw new Error('expected a rejection');
}

describe('attention work of a generation', () => {
  // 16 tokens, C = 32, 2 blocks, 2 samples under CFG (B = 4), default window L/8 = 2 tokens per side
  const A = attentionFlops(4, 16, 16, 32);
  const W = windowFlops(4, 16, 32, { kind: '1d', size: 2 });
  const request = { classLabels: [1, 2], seed: 3, steps: 4, guidanceScale: 4, images: false } as const;
  const warsAfterFull = (s: number): string => (s === 0 ? 'full' : 'wars');

  it('counts what the plan predicts when nothing falls back, and full attention without a plan', async () => {
    const model = await loadModel(randomCheckpoint(dit, { seed: 5 }), { config: dit, threads: 1 });
    const pipe = createPipeline(model, { strategies: strategies() });
    try {
      const plan = planOf(pipe, request, 4, warsAfterFull);
      const r = await pipe.generate({ ...request, plan });
      // per layer: step 0 full + the residual for the WA-RS steps, steps 1-3 the window
      expect(r.attention).toEqual({ flops: 2 * (A + W + 3 * W), rawFlops: 2 * 4 * A, fallbacks: 0, fraction: (A + 4 * W) / (4 * A) });
      expect(r.attention.fraction).toBe(plan.totals.attentionFlopsFraction);
      const raw = await pipe.generate(request);
      expect(raw.attention).toEqual({ flops: 8 * A, rawFlops: 8 * A, fallbacks: 0, fraction: 1 });
    } finally {
      await pipe.dispose();
    }
  });

  it('counts the full attention a strategy fell back to when the cache budget refused its residual', async () => {
    const model = await loadModel(randomCheckpoint(dit, { seed: 5 }), { config: dit, threads: 1 });
    const events: PipelineEvent[] = [];
    const pipe = createPipeline(model, { strategies: strategies(), cacheBudgetBytes: 1, onEvent: (e) => events.push(e) });
    try {
      const plan = planOf(pipe, request, 4, warsAfterFull);
      const r = await pipe.generate({ ...request, plan });
      const fallbacks = events.filter((e) => e.type === 'fallback');
      expect(fallbacks).toHaveLength(6);
      expect(fallbacks[0]).toMatchObject({ step: 1, layer: 0, method: 'wars', to: 'full' });
      expect(events.filter((e) => e.type === 'cache-refused').length).toBeGreaterThan(0);
      // per layer: steps 0-2 full + a residual (a later WA-RS step would read it), step 3 plain full
      expect(r.attention).toEqual({ flops: 2 * (4 * A + 3 * W), rawFlops: 8 * A, fallbacks: 6, fraction: (4 * A + 3 * W) / (4 * A) });
      expect(r.attention.fraction).toBeGreaterThan(plan.totals.attentionFlopsFraction);
      expect(r.cache).toMatchObject({ peakBytes: 0, budgetBytes: 1 });
      expect(r.cache.refusals).toBeGreaterThan(0);
    } finally {
      await pipe.dispose();
    }
  });
});

describe('DiT pipeline', () => {
  const events: PipelineEvent[] = [];
  let pipe: Pipeline;
  beforeAll(async () => {
    const model = await loadModel(randomCheckpoint(dit, { seed: 5 }), { config: dit, threads: 1 });
    pipe = createPipeline(model, { strategies: strategies(), vae: toyVae(), onEvent: (e) => events.push(e) });
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
    expect(a.timings.decodeMs).toBeGreaterThan(0);
    expect(a.png).toHaveLength(2);
    expect(Array.from(a.png![0]!.subarray(0, 4))).toEqual([0x89, 0x50, 0x4e, 0x47]);
    expect(b.png).toBeUndefined();
    expect(b.timings.decodeMs).toBe(0);
    expect(a.sampler).toBe('dpmpp-2m');
    expect(events.filter((e) => e.type === 'step')).toHaveLength(12);
    expect(events.some((e) => e.type === 'backend')).toBe(true);
  });

  it('runs a plan made for it, compression changes the result, and each generation owns its caches', async () => {
    const request = { classLabels: [1, 2], seed: 3, steps: 4, guidanceScale: 4, images: false } as const;
    const raw = await pipe.generate(request);
    const fullPlan = await pipe.generate({ ...request, plan: planOf(pipe, request, 4, () => 'full') });
    expect(maxRelError(fullPlan.latents.data, raw.latents.data)).toBe(0);
    expect(raw.cache).toMatchObject({ peakBytes: 0, entries: 0 });
    for (const m of ['wars', 'wars+asc', 'full+asc', 'ast']) {
      const plan = planOf(pipe, request, 4, (s) => (s === 0 ? 'full' : m));
      const r = await pipe.generate({ ...request, plan });
      expect(maxRelError(r.latents.data, raw.latents.data), m).toBeGreaterThan(0);
      expect(r.latents.data.every(Number.isFinite), m).toBe(true);
      expect(r.attention.fallbacks, m).toBe(0);
      expect(r.attention.fraction, m).toBe(plan.totals.attentionFlopsFraction);
      // caches lived from their writer to their last reader, within this generation only
      // (two layers of a float32 [4, 16, 32] projected output or [4, 16, 2, 16] residual; full+asc keeps nothing)
      expect(r.cache.peakBytes, m).toBe(m === 'full+asc' ? 0 : 2 * 4 * 16 * 32 * 4);
      expect(r.cache.entries, m).toBe(0);
    }
  });

  it('refuses a plan made for another model or configuration', async () => {
    const request = { classLabels: [1], seed: 1, steps: 4, guidanceScale: 4 } as const;
    const plan = planOf(pipe, request, 2, () => 'full');
    const other = { ...plan, fingerprint: { ...plan.fingerprint, model: { ...plan.fingerprint.model, weightsHash: 'sha256:0000' } } };
    await expect(pipe.generate({ ...request, plan: other })).rejects.toMatchObject({ code: ErrorCode.PlanMismatch, message: expect.stringContaining('model.weightsHash') });
    const steps = planOf(pipe, { ...request, steps: 5 }, 2, () => 'full');
    await expect(pipe.generate({ ...request, plan: steps })).rejects.toMatchObject({ code: ErrorCode.PlanMismatch, message: expect.stringContaining('steps') });
    const sampler = planOf(pipe, { ...request, sampler: 'ddim' }, 2, () => 'full');
    await expect(pipe.generate({ ...request, plan: sampler })).rejects.toMatchObject({ code: ErrorCode.PlanMismatch, message: expect.stringContaining('sampler') });
    const guidance = planOf(pipe, { ...request, guidanceScale: 1 }, 1, () => 'full');
    const err = await rejection(pipe.generate({ ...request, plan: guidance }));
    expect((err as unknown as PlanMismatchError).mismatches.map((m) => m.field)).toEqual(['guidance', 'cfgOrder']);
  });

  it('loads a version-1 plan (one window, numBlocks) as self layers and runs it exactly like its version-2 form', async () => {
    const request = { classLabels: [4, 5], seed: 2, steps: 4, guidanceScale: 4, images: false } as const;
    const v2 = planOf(pipe, request, 4, (s, j) => (s === 0 ? 'full' : j === 0 ? 'wars' : s === 2 ? 'full+asc' : 'ast'));
    const { layers, ...fingerprint } = v2.fingerprint;
    const v1: PlanDocumentV1 = { ...v2, version: 1, fingerprint: { ...fingerprint, window: layers[0]!.window! }, numBlocks: layers.length, totals: v2.totals };
    expect(validatePlan(v1, { methods: pipe.strategies })).toEqual(v2);
    expect(v2.fingerprint.layers.map((l) => l.id)).toEqual(['0.self', '1.self']);
    // GenerateOptionsBase.plan is typed as a version-2 document; a parsed v1 file arrives untyped
    const a = await pipe.generate({ ...request, plan: v2 });
    const b = await pipe.generate({ ...request, plan: v1 as unknown as PlanDocument });
    expect(Array.from(b.latents.data)).toEqual(Array.from(a.latents.data));
    expect(b.attention).toEqual(a.attention);
    expect(b.attention.fraction).toBeLessThan(1);
  });

  it('stops on abort with a coded error', async () => {
    const ctl = new AbortController();
    const run = pipe.generate({ classLabels: [1], seed: 1, steps: 10, signal: ctl.signal, onProgress: (e) => (e.step === 2 ? ctl.abort(new Error('enough')) : undefined) });
    await expect(run).rejects.toMatchObject({ code: ErrorCode.Aborted });
  });

  it('refuses bad labels and samplers the model cannot feed', async () => {
    await expect(pipe.generate({ classLabels: [10], seed: 1, steps: 2 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(pipe.generate({ classLabels: [], seed: 1, steps: 2 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(pipe.generate({ classLabels: [1], seed: 1, steps: 2, sampler: 'rflow' })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('velocity') });
  });
});

describe('one pipeline, several generations and layer layouts (3 blocks)', () => {
  let pipe: Pipeline;
  beforeAll(async () => {
    const model = await loadModel(randomCheckpoint(dit3, { seed: 8 }), { config: dit3, threads: 1 });
    pipe = createPipeline(model, { strategies: strategies() });
  });
  afterAll(() => pipe?.dispose());

  it('two concurrent generate() calls equal the same calls made one after the other (caches per generation)', async () => {
    const o1 = { classLabels: [1, 2], seed: 5, steps: 5, guidanceScale: 4, images: false } as const;
    const o2 = { classLabels: [8, 0], seed: 6, steps: 5, guidanceScale: 3, images: false } as const;
    const p1 = { ...o1, plan: planOf(pipe, o1, 4, (s, j) => (s === 0 ? 'full' : j === 1 ? 'ast' : s % 2 === 1 ? 'wars' : 'wars+asc')) };
    const p2 = { ...o2, plan: planOf(pipe, o2, 4, (s, j) => (s === 0 ? 'full' : j === 0 ? 'wars+asc' : s === 3 ? 'full+asc' : j === 1 ? 'wars' : 'ast')) };
    const s1 = await pipe.generate(p1);
    const s2 = await pipe.generate(p2);
    const [c1, c2] = await Promise.all([pipe.generate(p1), pipe.generate(p2)]);
    expect(Array.from(c1.latents.data)).toEqual(Array.from(s1.latents.data));
    expect(Array.from(c2.latents.data)).toEqual(Array.from(s2.latents.data));
    expect(maxRelError(c1.latents.data, c2.latents.data)).toBeGreaterThan(1e-3);
    for (const [c, s] of [[c1, s1], [c2, s2]] as const) {
      expect(c.cache).toEqual(s.cache);
      expect(c.attention).toEqual(s.attention);
      expect(c.attention.fallbacks).toBe(0);
      expect(c.cache.peakBytes).toBeGreaterThan(0);
    }
  });

  it('refuses a plan made for another layer layout of the same model, naming the layer field', async () => {
    const request = { classLabels: [3], seed: 4, steps: 3, guidanceScale: 4, images: false } as const;
    // a second pipeline on the same model with a narrower window on block 2 only
    const narrow = createPipeline(pipe.model.transformer, { strategies: strategies(), ownsModel: false, window: (l) => (l.block === 2 ? { kind: '1d', size: 1 } : l.window) });
    expect(pipe.layers(request).map((l) => l.window)).toEqual([{ kind: '1d', size: 2 }, { kind: '1d', size: 2 }, { kind: '1d', size: 2 }]);
    const plan = planOf(narrow, request, 2, (s) => (s === 0 ? 'full' : 'wars'));
    expect(plan.fingerprint.layers[2]).toEqual({ id: '2.self', window: { kind: '1d', size: 1 } });
    // it runs where it was made
    expect((await narrow.generate({ ...request, plan })).attention.fraction).toBe(plan.totals.attentionFlopsFraction);
    const err = await rejection(pipe.generate({ ...request, plan }));
    expect(err).toBeInstanceOf(PlanMismatchError);
    expect(err.code).toBe(ErrorCode.PlanMismatch);
    expect((err as unknown as PlanMismatchError).mismatches).toEqual([{ field: 'layers[2].window.size', plan: 1, expected: 2 }]);
    expect(err.message).toContain('layers[2].window.size');
    await narrow.dispose();
    // the model is the first pipeline's: still usable
    expect((await pipe.generate({ ...request, steps: 1 })).latents.shape).toEqual([1, 4, 8, 8]);
  });
});

describe('numerical faults', () => {
  it('a NaN weight in one block’s MLP rejects with a coded error naming the step and the layer', async () => {
    const ck = randomCheckpoint(dit, { seed: 5 });
    const fc1 = ck.get('blocks.1.mlp.fc1.weight')!;
    new Float32Array(fc1.bytes.buffer, fc1.bytes.byteOffset, fc1.bytes.byteLength / 4)[7] = Number.NaN;
    const pipe = createPipeline(await loadModel(ck, { config: dit, threads: 1 }), { strategies: strategies() });
    try {
      const request = { classLabels: [1, 2], seed: 3, steps: 3, guidanceScale: 4, images: false } as const;
      const err = await rejection(pipe.generate(request));
      expect(err).toBeInstanceOf(NumericalFaultError);
      expect(err.code).toBe('ERR_DITFA_NUMERICAL_FAULT');
      expect(err.code).toBe(ErrorCode.NumericalFault);
      expect(err.step).toBe(0);
      // block 1's attention still sees finite inputs; the state after its MLP is the first non-finite one
      expect(err.layer).toBe('1.self');
      expect(err.message).toContain('step 0, layer 1.self');
      // without the check the fault passes through as non-finite latents
      const unchecked = createPipeline(pipe.model.transformer, { strategies: strategies(), checkFinite: false, ownsModel: false });
      const r = await unchecked.generate(request);
      expect(r.latents.data.some((v) => !Number.isFinite(v))).toBe(true);
    } finally {
      await pipe.dispose();
    }
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
    // A probe method: attention on the rows it asks for (all, or the conditional half), recording q and the CFG layout.
    let mode: RowSelection = 'all';
    const seen: Array<{ rows: RowSelection; q: Tensor; cfg: CfgLayout | null }> = [];
    const probe = defineStrategy({
      name: 'probe',
      needs: () => mode,
      async run(ctx, inputs) {
        seen.push({ rows: inputs!.rows, q: inputs!.q, cfg: ctx.cfg });
        return { kind: 'attention', rows: inputs!.rows, output: await ctx.backend.attention(inputs!.q, inputs!.k, inputs!.v) };
      },
      flops: () => 0,
    });
    const pipe = createPipeline(model, { strategies: [probe] });
    try {
      const captions = tensor(Float32Array.from({ length: 2 * 5 * 16 }, (_, i) => Math.sin(i)), [2, 5, 16]);
      const negativeCaptions = tensor(new Float32Array(5 * 16), [1, 5, 16]);
      const mask = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1];
      const request = { captions, mask, negativeCaptions, seed: 1, steps: 3, guidanceScale: 4.5, height: 8, width: 12, images: false } as const;
      const r = await pipe.generate(request);
      expect(r.latents.shape).toEqual([2, 4, 8, 12]);
      expect(r.latents.data.every(Number.isFinite)).toBe(true);
      expect(pipe.fingerprint(request)).toMatchObject({ cfgOrder: 'cond-second', latent: { channels: 4, height: 8, width: 12 } });
      const { cond } = (pipe.model as PixartAdapter).condition(request, true);
      expect(cond.captions.shape).toEqual([4, 5, 16]);
      expect(Array.from(cond.captions.data.subarray(0, 2 * 5 * 16))).toEqual(new Array(2 * 5 * 16).fill(0));
      expect(Array.from(cond.captions.data.subarray(2 * 5 * 16))).toEqual(Array.from(captions.data));

      // The pipeline tells strategies cond-second, and the adapter's 'conditional' rows are the prompt half:
      // layer 1 (after block 0's cross-attention, where the halves differ) at step 1, all rows, then the conditional half.
      const plan = planOf(pipe, request, 4, (s, j) => (s === 1 && j === 1 ? 'probe' : 'full'));
      for (const m of ['all', 'conditional'] as const) {
        mode = m;
        await pipe.generate({ ...request, steps: 3, plan });
      }
      const [all, half] = seen as [(typeof seen)[0], (typeof seen)[0]];
      expect(seen).toHaveLength(2);
      expect(all.cfg).toEqual({ order: 'cond-second' });
      expect([all.rows, half.rows]).toEqual(['all', 'conditional']);
      expect(all.q.shape).toEqual([4, 24, 2, 16]);
      expect(half.q.shape).toEqual([2, 24, 2, 16]);
      const rows = all.q.data.length / 4;
      expect(maxRelError(half.q.data, all.q.data.subarray(2 * rows))).toBeLessThan(1e-6);
      expect(maxRelError(half.q.data, all.q.data.subarray(0, 2 * rows))).toBeGreaterThan(1e-3);

      await expect(pipe.generate({ captions, seed: 1, steps: 2, guidanceScale: 4.5 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('negativeCaptions') });
      // a latent-space model without a VAE has no decoder
      expect(pipe.model.decode).toBeUndefined();
      await expect(pipe.generate({ captions, seed: 1, steps: 2, images: true })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringContaining('no decoder') });
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
