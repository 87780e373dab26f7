import { type AttentionStrategy, type RowSelection, type Tensor, concatBatch, defineStrategy, sliceBatch, tensor } from '@ditfa/core';
import { apngFrameCount, decodePng } from '@ditfa/image';
import { GraphBuilder } from '@ditfa/ort-graph';
import { createRng, createSampler } from '@ditfa/samplers';
import { asc } from '@ditfa/strategy-asc';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OpenSoraGenerateOptions, type OpenSoraModel, type Pipeline, createPipeline, loadModel, officialSampling, padLatent, randomCheckpoint, videoAnimation, videoGrid } from '../src/index.js';
import { maxRelError } from './fixtures.js';
import { captions, planOf, tiny } from './helpers.js';

const strategies = (): AttentionStrategy[] => [wars(), ast(), ...asc()];
const f = Math.fround;

/** The latent video as `[B, C, T, H, W]` rows of sample `i`. */
const row = (t: Tensor, i: number): Tensor => sliceBatch(t, i, i + 1);

describe('STDiT3 (v1.2) pipeline', () => {
  const config = tiny('stdit3');
  let model: OpenSoraModel;
  let pipe: Pipeline;
  // 17 frames of 48×80 px → latent 5×6×10 → token grid 5×3×5 (S = 15)
  const size = { frames: 17, height: 48, width: 80 } as const;
  const mask = [1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1];
  beforeAll(async () => {
    model = await loadModel(randomCheckpoint(config, { seed: 3 }), { config, threads: 1 });
    pipe = createPipeline(model, { strategies: strategies(), ownsModel: false });
  });
  afterAll(async () => {
    await pipe?.dispose();
    await model?.dispose();
  });

  it('has the layers of the official forward order with the default windows', () => {
    const layers = pipe.layers({ ...size, steps: 2, guidanceScale: 7 }, 4);
    expect(layers.map((l) => l.id)).toEqual(['0.spatial', '0.spatial-cross', '0.temporal', '0.temporal-cross', '1.spatial', '1.spatial-cross', '1.temporal', '1.temporal-cross']);
    expect(layers.slice(0, 4).map((l) => [l.batch, l.tokens, l.kvTokens ?? null, l.window])).toEqual([
      [4 * 5, 15, null, { kind: '1d', size: 1 }], // B·T rows of S tokens, floor(15/8) per side
      [4, 75, 6, null], // B rows of T·S tokens against the 6 caption tokens
      [4 * 15, 5, null, null], // B·S rows of T frames
      [4, 75, 6, null],
    ]);
    expect(layers.every((l) => l.cfg && l.heads === 2 && l.headDim === 24)).toBe(true);
    const two = createPipeline(model, { ownsModel: false, windows: { spatial: '2d', temporal: 2 } });
    const [s, , t] = two.layers({ ...size, steps: 2, guidanceScale: 7 }, 4);
    expect(s!.window).toEqual({ kind: '2d', rows: 3, cols: 5, radius: 1 });
    expect(t!.window).toEqual({ kind: '1d', size: 2 });
  });

  it('samples with rectified flow as the official RFLOW.sample loop does (transform, CFG 7, [cond, null])', async () => {
    const steps = 4;
    const o = { ...officialSampling(config, size), steps, captions: captions(2), mask, ...size, seed: 5 };
    expect(o.sampler.name).toBe('rflow+transform(h=48,w=80,frames=17)');
    const noise = createRng(11).randn([2, 4, 5, 6, 10]);
    const r = await pipe.generate({ ...o, noise });
    expect(r.sampler).toBe('rflow+transform(h=48,w=80,frames=17)');

    // the loop of MODELS.md §4.6 on the model's forward (golden-tested), in float32
    const nf = Math.floor(17 / 17) * 5;
    const ratio = f(f(Math.sqrt(f((48 * 80) / (512 * 512)))) * f(Math.sqrt(nf)));
    const ts = Array.from({ length: steps }, (_, i) => {
      const s = f(f((1 - i / steps) * 1000) / 1000);
      return f(f(f(ratio * s) / f(1 + f(f(ratio - 1) * s))) * 1000);
    });
    const nul = model.nullCaption!;
    const cond = { captions: concatBatch([captions(2), tensor(nul.data, [1, 6, 16]), tensor(nul.data, [1, 6, 16])]), mask: [...mask, ...mask], height: 48, width: 80, fps: 24 };
    let z = noise;
    for (let i = 0; i < steps; i++) {
      const out = (await model.forward(concatBatch([z, z]), ts[i]!, cond)).output;
      const per = out.data.length / 4;
      const dt = f((i < steps - 1 ? f(ts[i]! - ts[i + 1]!) : ts[i]!) / 1000);
      const next = new Float32Array(z.data.length);
      const half = per / 2; // the velocity half of each row's 8 channels
      for (let b = 0; b < 2; b++) {
        for (let k = 0; k < half; k++) {
          const c = out.data[b * per + k]!;
          const u = out.data[(b + 2) * per + k]!;
          const v = f(u + f(7 * f(c - u)));
          next[b * half + k] = f(z.data[b * half + k]! + f(v * dt));
        }
      }
      z = tensor(next, z.shape);
    }
    expect(maxRelError(r.latents.data, z.data)).toBeLessThan(1e-5);
    expect(r.attention.fallbacks).toBe(0);
  });

  it('keeps the CFG halves contiguous along the outer batch in the B·T and B·S row layouts (and for cross-attention)', async () => {
    // A probe: attention on the rows it asks for (all, or the conditional half), recording q.
    let mode: RowSelection = 'all';
    const seen: Array<{ layer: string; rows: RowSelection; q: Tensor; k: Tensor }> = [];
    const probe = defineStrategy({
      name: 'probe',
      needs: () => mode,
      async run(ctx, inputs) {
        seen.push({ layer: ctx.layer.id, rows: inputs!.rows, q: inputs!.q, k: inputs!.k });
        return { kind: 'attention', rows: inputs!.rows, output: await ctx.backend.attention(inputs!.q, inputs!.k, inputs!.v) };
      },
      flops: () => 0,
    });
    const p = createPipeline(model, { strategies: [probe], ownsModel: false });
    const request = { ...size, captions: captions(2), mask, seed: 1, steps: 2, guidanceScale: 7, sampler: 'rflow' as const, images: false };
    // layers after block 0's spatial cross-attention, where the conditional and unconditional halves differ
    const probed = ['0.temporal', '0.temporal-cross', '1.spatial', '1.spatial-cross'];
    const layers = p.layers(request);
    const plan = planOf(p, request, 4, (s, j) => (s === 1 && probed.includes(layers[j]!.id) ? 'probe' : 'full'));
    for (const m of ['all', 'conditional'] as const) {
      mode = m;
      await p.generate({ ...request, plan });
    }
    expect(seen).toHaveLength(2 * probed.length);
    for (const id of probed) {
      const [all, cond] = seen.filter((e) => e.layer === id) as [(typeof seen)[0], (typeof seen)[0]];
      expect([all.rows, cond.rows]).toEqual(['all', 'conditional']);
      // the conditional rows asked for are exactly the first half of all rows (cond-first), not the second
      expect(cond.q.shape[0]).toBe(all.q.shape[0]! / 2);
      const n = cond.q.data.length;
      expect(maxRelError(cond.q.data, all.q.data.subarray(0, n)), id).toBeLessThan(1e-6);
      expect(maxRelError(cond.q.data, all.q.data.subarray(n)), id).toBeGreaterThan(1e-3);
      if (id.endsWith('cross')) {
        // keys: the prompt's caption tokens for the conditional half, the learned null caption for the other
        expect(maxRelError(cond.k.data, all.k.data.subarray(0, cond.k.data.length))).toBe(0);
        expect(maxRelError(cond.k.data, all.k.data.subarray(cond.k.data.length))).toBeGreaterThan(1e-3);
      }
    }
    await p.dispose();
  });

  it('runs a plan compressing all three sites: deterministic, no fallbacks, FLOPs as planned, item i equals item i alone', async () => {
    const methods: Record<string, (s: number) => string> = {
      spatial: (s) => (s % 2 ? 'wars' : 'wars+asc'),
      temporal: (s) => (s % 2 ? 'ast' : 'full+asc'),
      cross: () => 'ast',
    };
    const request = { ...size, captions: captions(2), mask, seed: 7, steps: 4, guidanceScale: 7, sampler: 'rflow' as const, images: false } satisfies OpenSoraGenerateOptions;
    const layers = pipe.layers(request);
    const site = (j: number): string => (layers[j]!.site.endsWith('cross') ? 'cross' : layers[j]!.site);
    const plan = planOf(pipe, request, 4, (s, j) => (s === 0 ? 'full' : methods[site(j)]!(s)));
    const noise = createRng(3).randn([2, 4, 5, 6, 10]);
    const a = await pipe.generate({ ...request, plan, noise });
    const b = await pipe.generate({ ...request, plan, noise });
    const raw = await pipe.generate({ ...request, noise });
    expect(Array.from(b.latents.data)).toEqual(Array.from(a.latents.data));
    expect(a.attention.fallbacks).toBe(0);
    expect(a.attention.fraction).toBe(plan.totals.attentionFlopsFraction);
    expect(a.attention.fraction).toBeLessThan(0.5);
    expect(a.latents.data.every(Number.isFinite)).toBe(true);
    expect(maxRelError(a.latents.data, raw.latents.data)).toBeGreaterThan(0);
    expect(a.cache.entries).toBe(0);
    // sample 1 alone: its noise, caption and mask, the same plan (layers and windows do not depend on the batch)
    const alone = await pipe.generate({ ...request, plan, captions: sliceBatch(captions(2), 1, 2), mask: mask.slice(6), noise: row(noise, 1) });
    expect(alone.attention.fallbacks).toBe(0);
    // bit for bit: every attention row, every ASC copy and every cached residual/output is per sample
    expect(Array.from(alone.latents.data)).toEqual(Array.from(row(a.latents, 1).data));
  });

  it('runs window methods with a 2-D spatial window on the frame grid and a temporal window, and generates a single frame', async () => {
    const p = createPipeline(model, { strategies: strategies(), ownsModel: false, windows: { spatial: '2d', temporal: 1 } });
    const request = { ...size, captions: captions(1), seed: 2, steps: 3, guidanceScale: 7, sampler: 'rflow' as const, images: false };
    const layers = p.layers(request);
    const plan = planOf(p, request, 2, (s, j) => (s === 0 ? 'full' : layers[j]!.window ? 'wars' : 'ast'));
    expect(plan.fingerprint.layers.filter((l) => l.window).map((l) => l.window!.kind)).toEqual(['2d', '1d', '2d', '1d']);
    const r = await p.generate({ ...request, plan });
    expect(r.attention.fallbacks).toBe(0);
    expect(r.attention.fraction).toBe(plan.totals.attentionFlopsFraction);
    // one frame: an image (fps 120, the transform's frame factor 1)
    const image = await p.generate({ ...request, frames: 1, ...officialSampling(config, { frames: 1, height: 48, width: 80 }), steps: 2 });
    expect(image.latents.shape).toEqual([1, 4, 1, 6, 10]);
    expect(image.sampler).toBe('rflow+transform(h=48,w=80,frames=1)');
    expect(image.latents.data.every(Number.isFinite)).toBe(true);
    await p.dispose();
  });

  it('pads odd latent sizes to whole patches and crops the output back, as PatchEmbed3D and unpatchify do', async () => {
    // 56×72 px → latent 7×9 → padded 8×10 → 4×5 tokens per frame
    const x = createRng(2).randn([2, 4, 5, 7, 9]);
    const cond = { captions: captions(2), mask, height: 56, width: 72, fps: 24 };
    const odd = await model.forward(x, [600, 30], cond);
    expect(odd.output.shape).toEqual([2, 8, 5, 7, 9]);
    const padded = await model.forward(padLatent(x, [5, 8, 10]), [600, 30], cond);
    const cropped = new Float32Array(odd.output.data.length);
    let o = 0;
    for (let bc = 0; bc < 16; bc++) for (let t = 0; t < 5; t++) for (let h = 0; h < 7; h++) for (let w = 0; w < 9; w++) cropped[o++] = padded.output.data[((bc * 5 + t) * 8 + h) * 10 + w]!;
    expect(Array.from(odd.output.data)).toEqual(Array.from(cropped));
    const layers = model.attentionLayers(5, 7, 9, 2, false);
    expect([layers[0]!.tokens, layers[2]!.batch]).toEqual([20, 2 * 20]);
  });

  it('decodes through an ONNX decoder of [B, C, T, H, W] and writes a frame grid and an animation', async () => {
    const dec = createPipeline(model, { ownsModel: false, decoder: toyDecoder() });
    const request = { ...size, captions: captions(2), mask, seed: 1, steps: 2, guidanceScale: 7, sampler: 'rflow' as const };
    const r = await dec.generate(request);
    expect(r.images!.shape).toEqual([2, 3, 5, 12, 20]);
    expect(r.images!.data.every((v) => v >= -1 && v <= 1)).toBe(true);
    expect(r.images!.data[0]).toBeCloseTo(Math.max(-1, Math.min(1, r.latents.data[0]!)), 6);
    const grid = decodePng(videoGrid(r.images!, { padding: 2 }));
    // a row per sample, a column per frame, 2 px padding
    expect([grid.width, grid.height]).toEqual([5 * 20 + 6 * 2, 2 * 12 + 3 * 2]);
    const apng = videoAnimation(r.images!, { fps: 8 });
    expect(apngFrameCount(apng)).toBe(5);
    expect(decodePng(apng).width).toBeGreaterThan(0);
    await dec.dispose();
    expect(createPipeline(model, { ownsModel: false }).model.decode).toBeUndefined();
  });
});

describe('STDiT2 (v1.1) pipeline', () => {
  const config = tiny('stdit2');
  let model: OpenSoraModel;
  let pipe: Pipeline;
  // 3 frames of 48×64 px → latent 3×6×8 (v1.1's VAE keeps the frames)
  const size = { frames: 3, height: 48, width: 64 } as const;
  beforeAll(async () => {
    model = await loadModel(randomCheckpoint(config, { seed: 4 }), { config, threads: 1 });
    pipe = createPipeline(model, { strategies: strategies(), ownsModel: false });
  });
  afterAll(async () => {
    await pipe?.dispose();
    await model?.dispose();
  });

  it('has spatial, temporal and cross layers per block', () => {
    expect(pipe.layers({ ...size, steps: 2, guidanceScale: 7 }, 2).map((l) => `${l.id}:${l.batch}x${l.tokens}`)).toEqual([
      '0.spatial:6x12',
      '0.temporal:24x3',
      '0.cross:2x36',
      '1.spatial:6x12',
      '1.temporal:24x3',
      '1.cross:2x36',
    ]);
  });

  it('samples with IDDPM as Open-Sora v1.1 does: CFG 7 on the first 3 channels, the rest from the conditional half', async () => {
    const steps = 3;
    const o = { ...officialSampling(config, size), steps, captions: captions(1), mask: [1, 1, 1, 0, 0, 0], ...size, seed: 9 };
    expect([o.sampler.name, o.guidanceScale, o.guidanceChannels]).toEqual(['iddpm-opensora', 7, 3]);
    const r = await pipe.generate(o);
    // forward_with_cfg (opensora/schedulers/iddpm) with the pipeline's RNG stream: the initial noise, then one draw per noisy step
    const rng = createRng(9);
    let x = rng.randn([1, 4, 3, 6, 8]);
    const sampler = createSampler({ kind: 'iddpm', steps, iddpmVariant: 'opensora' });
    const nul = model.nullCaption!;
    const cond = { captions: concatBatch([captions(1), tensor(nul.data, [1, 6, 16])]), mask: [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0], height: 48, width: 64, fps: 24, frames: 3 };
    for (let i = 0; i < steps; i++) {
      const out = (await model.forward(concatBatch([x, x]), sampler.timesteps[i]!, cond)).output;
      const per = out.data.length / 2;
      const channel = per / 8;
      const guided = new Float32Array(per);
      for (let k = 0; k < per; k++) {
        const c = out.data[k]!;
        const u = out.data[per + k]!;
        guided[k] = k < 3 * channel ? f(u + f(7 * f(c - u))) : c;
      }
      x = sampler.step(tensor(guided, [1, 8, 3, 6, 8]), i, x, sampler.needsNoise(i) ? rng.randn(x.shape) : undefined);
    }
    expect(maxRelError(r.latents.data, x.data)).toBeLessThan(1e-5);
  });

  it('uses the official micro-conditions: fps 24, and 120 for one frame; ar = height / width', () => {
    const video = pipe.model.condition({ captions: captions(1), seed: 0, steps: 1, ...size }, true).cond;
    expect([video.fps, video.frames, video.height, video.width]).toEqual([24, 3, 48, 64]);
    expect(video.captions.shape).toEqual([2, 6, 16]);
    expect(Array.from(video.captions.data.subarray(96))).toEqual(Array.from(model.nullCaption!.data));
    const image = pipe.model.condition({ captions: captions(1), seed: 0, steps: 1, frames: 1, height: 48, width: 64 }, false).cond;
    expect(image.fps).toBe(120);
  });

  it('runs a plan compressing every site with no fallbacks and the planned FLOPs', async () => {
    const request = { ...size, captions: captions(1), seed: 2, steps: 3, guidanceScale: 7, guidanceChannels: 3, sampler: officialSampling(config, size).sampler, images: false };
    const layers = pipe.layers(request);
    const plan = planOf(pipe, request, 2, (s, j) => (s === 0 ? 'full' : layers[j]!.site === 'spatial' ? 'wars+asc' : layers[j]!.site === 'temporal' ? 'full+asc' : 'ast'));
    const r = await pipe.generate({ ...request, plan });
    expect(r.attention.fallbacks).toBe(0);
    expect(r.attention.fraction).toBe(plan.totals.attentionFlopsFraction);
    expect(r.latents.data.every(Number.isFinite)).toBe(true);
  });
});

/** A stand-in video decoder: `[B, C, T, h, w]` → its first 3 channels upsampled ×2 in height and width. */
function toyDecoder(): Uint8Array {
  const g = new GraphBuilder('decoder');
  const z = g.input('z', 'float32', ['B', 4, 'T', 'h', 'w']);
  const rgb = g.op('Slice', [z, g.constI64([0]), g.constI64([3]), g.constI64([1])]);
  g.output(g.op('Resize', [rgb, '', g.constF([1, 1, 1, 2, 2], [5])], { mode: 'nearest' }), 'frames');
  return g.toModel();
}
