import { type Tensor, tensor } from '@ditfa/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ditConfig } from '../src/config.js';
import { guideBatch } from '@ditfa/samplers';
import { loadModel } from '../src/load.js';
import type { TransformerModel } from '../src/model.js';
import { Io, bhldToBlhd, caseJson, hasCase, maxRelError, weights } from './fixtures.js';

const CASE = 'dit_b4_s8';
const TOL = 1e-4;

describe.skipIf(!hasCase(CASE))('golden: DiT (dit_b4_s8)', () => {
  let io: Io;
  let original: TransformerModel;
  let diffusers: TransformerModel;
  // read in beforeAll: the describe body runs at collection even when the fixture is absent and skipped
  let config: ReturnType<typeof ditConfig>;

  beforeAll(async () => {
    const c = caseJson(CASE).config;
    config = ditConfig({
      inputSize: c.input_size, patchSize: c.patch_size, inChannels: c.in_channels, hiddenSize: c.hidden_size,
      depth: c.depth, numHeads: c.num_heads, mlpRatio: c.mlp_ratio, numClasses: c.num_classes, learnSigma: c.learn_sigma,
    });
    io = new Io(CASE);
    original = await loadModel(weights(CASE, 'weights.safetensors'), { config, taps: true, threads: 1 });
    diffusers = await loadModel(weights(CASE, 'weights_diffusers.safetensors'), { config, threads: 1 });
  });
  afterAll(async () => {
    await original?.dispose();
    await diffusers?.dispose();
  });

  it('matches the official forward and every intermediate within 1e-4', async () => {
    const traced = new Map<string, Tensor>();
    const { output } = await original.forward(io.f32('input.x'), io.ints('input.t'), { classLabels: io.ints('input.y') }, { trace: (n, v) => traced.set(n, v) });
    const errors: Record<string, number> = {};
    const check = (name: string, got: ArrayLike<number>, want: string): void => {
      errors[name] = maxRelError(got, io.f32(want).data);
    };
    check('out', output.data, 'output.out');
    check('t_freq', traced.get('t_freq')!.data, 'inter.t_freq');
    check('pos_embed', traced.get('pos_embed')!.data, 'inter.pos_embed');
    check('x_patch', traced.get('x_patch')!.data, 'inter.x_patch');
    check('x_tokens', traced.get('tokens')!.data, 'inter.x_tokens');
    for (const n of ['t_emb', 'y_emb', 'c']) check(n, traced.get(n)!.data, `inter.${n}`);
    check('adaLN_mod', traced.get('mod.0')!.data, 'inter.block.0.adaLN_mod');
    for (const n of ['attn_in', 'attn_out', 'mlp_in', 'mlp_out', 'out']) check(`block.0.${n}`, traced.get(`block.0.${n}`)!.data, `inter.block.0.${n}`);
    check('block.0.attn_core', traced.get('block.0.attn_core')!.data, 'inter.block.0.attn_core');
    for (const n of ['q', 'k', 'v']) errors[`block.0.${n}`] = maxRelError(traced.get(`block.0.${n}`)!.data, bhldToBlhd(io.f32(`inter.block.0.${n}`)));
    check('block.1.out', traced.get('block.1.out')!.data, 'inter.block.1.out');
    check('final_tokens', traced.get('final_tokens')!.data, 'inter.final_tokens');
    if (process.env.DITFA_GOLDEN_REPORT) process.stdout.write(`dit errors ${JSON.stringify(errors)}\n`);
    for (const [name, e] of Object.entries(errors)) expect(e, name).toBeLessThan(TOL);
    expect(Object.keys(errors)).toHaveLength(20);
  });

  it('agrees at t = 0', async () => {
    const { output } = await original.forward(io.f32('input.x'), 0, { classLabels: io.ints('input.y') });
    expect(maxRelError(output.data, io.f32('output.out_t0').data)).toBeLessThan(TOL);
  });

  it('gives identical outputs from the diffusers layout (original formulas: /128, eps 1e-6)', async () => {
    const a = await original.forward(io.f32('input.x'), io.ints('input.t'), { classLabels: io.ints('input.y') });
    const b = await diffusers.forward(io.f32('input.x'), io.ints('input.t'), { classLabels: io.ints('input.y') });
    expect(maxRelError(b.output.data, a.output.data)).toBe(0);
    expect(maxRelError(b.output.data, io.f32('output.out').data)).toBeLessThan(TOL);
    // and not what diffusers' own /127 sinusoid gives
    expect(maxRelError(b.output.data, io.f32('diffusers.output.out').data)).toBeGreaterThan(0.1);
  });

  it('reproduces forward_with_cfg (guidance on channels 0–2 only)', async () => {
    const x = io.f32('cfg.input.x');
    const { output } = await original.forward(x, io.ints('cfg.input.t'), { classLabels: io.ints('cfg.input.y') }, { cfg: { order: original.cfgOrder } });
    expect(maxRelError(output.data, io.f32('cfg.output.raw_forward').data)).toBeLessThan(TOL);
    const guided = guideBatch(output, { order: original.cfgOrder, scale: io.f32('cfg.input.cfg_scale').data[0]!, channels: 3 });
    expect(maxRelError(guided.data, io.f32('cfg.output.out').data)).toBeLessThan(TOL);
  });

  it('resumes from a stored hidden state (prefix reuse) with the same result', async () => {
    const hidden: Tensor[] = [];
    const x = io.f32('input.x');
    const t = io.ints('input.t');
    const cond = { classLabels: io.ints('input.y') };
    const full = await original.forward(x, t, cond, { onHidden: (b, h) => (hidden[b] = h) });
    expect(hidden).toHaveLength(config.depth + 1);
    const resumed = await original.forward(x, t, cond, { startBlock: 1, hiddenIn: hidden[1]! });
    expect(maxRelError(resumed.output.data, full.output.data)).toBe(0);
    const tail = await original.forward(x, t, cond, { startBlock: config.depth, hiddenIn: hidden[config.depth]! });
    expect(maxRelError(tail.output.data, full.output.data)).toBe(0);
    expect(tensor(hidden[1]!.data, hidden[1]!.shape).shape).toEqual([4, 16, 64]);
  });
});
