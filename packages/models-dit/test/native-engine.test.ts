import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { type KernelBackend, type Tensor, createReferenceBackend, tensor } from '@ditfa/core';
import { createCpuBackend, cpuBackendStatus } from '@ditfa/kernels-cpu/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromJson, ditConfig } from '../src/config.js';
import { ModelDenseUnavailableError } from '../src/errors.js';
import { loadModel } from '../src/load.js';
import type { TransformerModel } from '../src/model.js';
import { createPipeline } from '../src/pipeline.js';
import { FASHION_OUTPUT_TOL as OUTPUT_TOL, Io, bhldToBlhd, caseJson, hasCase, maxRelError, maxScaledError, weights } from './fixtures.js';

// The native dense engine (the kernel backend's dense kernels instead of onnxruntime sessions for the
// blocks) against the same official fixtures as the onnxruntime engine, at the same tolerance; and the
// bf16 option on the bundled model against its fp32 golden at a bf16 tolerance.
const status = cpuBackendStatus();
const backend: KernelBackend | null = status.available ? createCpuBackend() : null;
const native = backend?.dense !== undefined;
const TOL = 1e-4;
const fashionDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../models/fashion-dit');
const fashion = existsSync(path.join(fashionDir, 'golden.safetensors'));

describe.skipIf(!native || !hasCase('dit_b4_s8'))('native engine: DiT golden (dit_b4_s8)', () => {
  let io: Io;
  let model: TransformerModel;
  beforeAll(async () => {
    io = new Io('dit_b4_s8');
    const c = caseJson('dit_b4_s8').config;
    const config = ditConfig({ inputSize: c.input_size, patchSize: c.patch_size, inChannels: c.in_channels, hiddenSize: c.hidden_size, depth: c.depth, numHeads: c.num_heads, mlpRatio: c.mlp_ratio, numClasses: c.num_classes, learnSigma: c.learn_sigma });
    model = await loadModel(weights('dit_b4_s8', 'weights.safetensors'), { config, taps: true, threads: 1, backend: backend!, denseEngine: 'native' });
  });
  afterAll(() => model?.dispose());

  it('runs on the native engine and matches the forward and every block intermediate within 1e-4', async () => {
    expect(model.denseEngine).toBe('native');
    const traced = new Map<string, Tensor>();
    const { output } = await model.forward(io.f32('input.x'), io.ints('input.t'), { classLabels: io.ints('input.y') }, { trace: (n, v) => traced.set(n, v) });
    const errors: Record<string, number> = { out: maxRelError(output.data, io.f32('output.out').data) };
    for (const n of ['attn_in', 'attn_out', 'mlp_in', 'mlp_out', 'out', 'attn_core']) errors[`block.0.${n}`] = maxRelError(traced.get(`block.0.${n}`)!.data, io.f32(`inter.block.0.${n}`).data);
    for (const n of ['q', 'k', 'v']) errors[`block.0.${n}`] = maxRelError(traced.get(`block.0.${n}`)!.data, bhldToBlhd(io.f32(`inter.block.0.${n}`)));
    errors['block.1.out'] = maxRelError(traced.get('block.1.out')!.data, io.f32('inter.block.1.out').data);
    errors.final_tokens = maxRelError(traced.get('final_tokens')!.data, io.f32('inter.final_tokens').data);
    for (const [name, e] of Object.entries(errors)) expect(e, name).toBeLessThan(TOL);
    const cfg = await model.forward(io.f32('cfg.input.x'), io.ints('cfg.input.t'), { classLabels: io.ints('cfg.input.y') }, { cfg: { order: model.cfgOrder } });
    expect(maxRelError(cfg.output.data, io.f32('cfg.output.raw_forward').data)).toBeLessThan(TOL);
  });
});

describe.skipIf(!native || !hasCase('pixart_sigma_d64'))('native engine: PixArt-Σ golden (pixart_sigma_d64)', () => {
  let io: Io;
  let model: TransformerModel;
  let ort: TransformerModel;
  const config = hasCase('pixart_sigma_d64') ? configFromJson(caseJson('pixart_sigma_d64').primary.config) : undefined;
  beforeAll(async () => {
    io = new Io('pixart_sigma_d64');
    model = await loadModel(weights('pixart_sigma_d64', 'weights.safetensors'), { config, taps: true, threads: 1, backend: backend!, denseEngine: 'native' });
    ort = await loadModel(weights('pixart_sigma_d64', 'weights.safetensors'), { config, threads: 1, denseEngine: 'onnxruntime' });
  });
  afterAll(async () => {
    await model?.dispose();
    await ort?.dispose();
  });

  for (const run of ['square', 'wide']) {
    it(`${run}: matches the forward and every block intermediate (cross-attention with the text mask) within 1e-4`, async () => {
      const x = io.f32(`${run}.input.x`);
      const t = io.ints(`${run}.input.t`);
      const cond = { captions: io.f32(`${run}.input.y`), mask: io.ints(`${run}.input.mask`) };
      const traced = new Map<string, Tensor>();
      const { output } = await model.forward(x, t, cond, { trace: (n, v) => traced.set(n, v) });
      const errors: Record<string, number> = { out: maxRelError(output.data, io.f32(`${run}.output.out`).data) };
      for (const n of ['attn_in', 'attn_core', 'attn_out', 'cross_in', 'cross_core', 'cross_out', 'mlp_in', 'mlp_out', 'out']) {
        errors[`block.0.${n}`] = maxRelError(traced.get(`block.0.${n}`)!.data, io.f32(`${run}.inter.block.0.${n}`).data);
      }
      for (const n of ['q', 'k', 'v', 'cross_q']) errors[`block.0.${n}`] = maxRelError(traced.get(`block.0.${n}`)!.data, bhldToBlhd(io.f32(`${run}.inter.block.0.${n}`)));
      errors['block.1.out'] = maxRelError(traced.get('block.1.out')!.data, io.f32(`${run}.inter.block.1.out`).data);
      for (const [name, e] of Object.entries(errors)) expect(e, name).toBeLessThan(TOL);
      // without the mask, and with captions that mask whole rows differently, both engines agree
      const unmasked = { captions: cond.captions };
      const a = await model.forward(x, t, unmasked);
      const b = await ort.forward(x, t, unmasked);
      expect(maxRelError(a.output.data, b.output.data)).toBeLessThan(TOL);
    });
  }
});

describe.skipIf(!native || !fashion)('native engine: models/fashion-dit', () => {
  let g: ReadonlyMap<string, { dtype: string; shape: readonly number[]; bytes: Uint8Array }>;
  const f32 = (k: string): Tensor => tensor(toFloat32(g.get(k) as never), g.get(k)!.shape);
  const ints = (k: string): number[] => {
    const t = g.get(k)!;
    const v = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
    return Array.from({ length: t.bytes.byteLength / 8 }, (_, i) => Number(v.getBigInt64(8 * i, true)));
  };
  beforeAll(() => {
    g = readSafetensors(path.join(fashionDir, 'golden.safetensors')).tensors;
  });

  it('fp32: matches the forward, the CFG forward and the 10-step CFG-4 sample like the onnxruntime engine', async () => {
    const pipe = createPipeline(await loadModel(fashionDir, { threads: 1, backend: backend!, denseEngine: 'native' }), { backend: backend! });
    try {
      const traced = new Map<string, Tensor>();
      const { output } = await pipe.model.forward(f32('input.x'), ints('input.t'), { classLabels: ints('input.y') }, { backend: backend!, trace: (n, v) => traced.set(n, v) });
      expect(maxRelError(output.data, f32('output.out').data)).toBeLessThan(OUTPUT_TOL);
      expect(maxScaledError(traced.get('block.5.out')!.data, f32('inter.block.5.out').data)).toBeLessThan(TOL);
      const cfg = await pipe.model.forward(f32('cfg.input.x'), ints('cfg.input.t'), { classLabels: ints('cfg.input.y') }, { cfg: { order: 'cond-first' }, backend: backend! });
      expect(maxRelError(cfg.output.data, f32('cfg.output.raw_forward').data)).toBeLessThan(TOL);
      const r = await pipe.generate({ classLabels: ints('sample.y'), seed: 0, steps: 10, guidanceScale: f32('sample.cfg_scale').data[0]!, noise: f32('sample.xT'), images: false });
      expect(maxRelError(r.latents.data, f32('sample.dpmpp2m10.final').data)).toBeLessThan(1e-3);
    } finally {
      await pipe.dispose();
    }
  });

  it.skipIf(!backend?.dense?.capabilities().dtypes.includes('bf16'))('bf16 (explicit option): the forward stays within a bf16 error of the fp32 golden', async () => {
    const model = await loadModel(fashionDir, { threads: 1, backend: backend!, dense: 'bf16' });
    try {
      expect(model.denseDtype).toBe('bf16');
      const { output } = await model.forward(f32('input.x'), ints('input.t'), { classLabels: ints('input.y') }, { backend: backend! });
      const e = maxScaledError(output.data, f32('output.out').data);
      expect(e).toBeGreaterThan(1e-5); // it did round
      expect(e).toBeLessThan(3e-2);
    } finally {
      await model.dispose();
    }
  });

  it('onnxruntime engine: shared block sessions (weights as inputs) give the per-block sessions\' forward', async () => {
    const shared = await loadModel(fashionDir, { threads: 1, denseEngine: 'onnxruntime' });
    const perBlock = await loadModel(fashionDir, { threads: 1, denseEngine: 'onnxruntime', ortBlocks: 'per-block' });
    try {
      const a = await shared.forward(f32('input.x'), ints('input.t'), { classLabels: ints('input.y') });
      const b = await perBlock.forward(f32('input.x'), ints('input.t'), { classLabels: ints('input.y') });
      expect(maxRelError(a.output.data, b.output.data)).toBeLessThan(1e-5);
      expect(maxRelError(a.output.data, f32('output.out').data)).toBeLessThan(OUTPUT_TOL);
    } finally {
      await shared.dispose();
      await perBlock.dispose();
    }
  });

  it('never picks bf16 or the native engine silently, and names why an explicit request cannot run', async () => {
    const onReference = await loadModel(fashionDir, { threads: 1, backend: createReferenceBackend() });
    expect(onReference.denseEngine).toBe('onnxruntime');
    expect(onReference.denseDtype).toBe('fp32');
    await onReference.dispose();
    await expect(loadModel(fashionDir, { backend: createReferenceBackend(), dense: 'bf16' })).rejects.toBeInstanceOf(ModelDenseUnavailableError);
    await expect(loadModel(fashionDir, { denseEngine: 'onnxruntime', dense: 'bf16' })).rejects.toMatchObject({ code: 'ERR_DITFA_DENSE_UNAVAILABLE' });
    const auto = await loadModel(fashionDir, { backend: backend! });
    expect([auto.denseEngine, auto.denseDtype]).toEqual(['native', 'fp32']);
    await auto.dispose();
  });
});
