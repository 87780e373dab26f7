import type { Tensor } from '@ditfa/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromJson } from '../src/config.js';
import { loadModel } from '../src/load.js';
import type { TransformerModel } from '../src/model.js';
import { Io, bhldToBlhd, caseJson, hasCase, maxRelError, weights } from './fixtures.js';

const CASE = 'pixart_sigma_d64';
const TOL = 1e-4;

describe.skipIf(!hasCase(CASE))('golden: PixArt-Sigma (pixart_sigma_d64)', () => {
  let io: Io;
  let diffusers: TransformerModel;
  let official: TransformerModel;
  const config = hasCase(CASE) ? configFromJson(caseJson(CASE).primary.config) : undefined;

  beforeAll(async () => {
    io = new Io(CASE);
    diffusers = await loadModel(weights(CASE, 'weights.safetensors'), { config, taps: true, threads: 1 });
    official = await loadModel(weights(CASE, 'weights_official.safetensors'), { config, threads: 1 });
  });
  afterAll(async () => {
    await diffusers?.dispose();
    await official?.dispose();
  });

  const inputs = (run: string) => ({
    x: io.f32(`${run}.input.x`),
    t: io.ints(`${run}.input.t`),
    cond: { captions: io.f32(`${run}.input.y`), mask: io.ints(`${run}.input.mask`) },
  });

  for (const run of ['square', 'wide']) {
    it(`${run}: matches the diffusers forward and every intermediate within 1e-4`, async () => {
      const { x, t, cond } = inputs(run);
      const traced = new Map<string, Tensor>();
      const { output } = await diffusers.forward(x, t, cond, { trace: (n, v) => traced.set(n, v) });
      const errors: Record<string, number> = {};
      const check = (name: string, got: string, want: string): void => {
        errors[name] = maxRelError(traced.get(got)!.data, io.f32(`${run}.${want}`).data);
      };
      errors.out = maxRelError(output.data, io.f32(`${run}.output.out`).data);
      errors['official.out'] = maxRelError(output.data, io.f32(`${run}.official.output.out`).data);
      check('x_patch', 'x_patch', 'inter.x_patch');
      check('pos_embed', 'pos_embed', 'inter.pos_embed');
      check('x_tokens', 'tokens', 'inter.x_tokens');
      check('t_freq', 't_freq', 'inter.t_freq');
      check('t_emb', 't_emb', 'inter.t_emb');
      check('t_mod', 't_mod', 'inter.t_mod');
      check('y_proj', 'y_proj', 'inter.y_proj');
      for (const n of ['attn_in', 'attn_core', 'attn_out', 'cross_in', 'cross_core', 'cross_out', 'mlp_in', 'mlp_out', 'out']) check(`block.0.${n}`, `block.0.${n}`, `inter.block.0.${n}`);
      for (const n of ['q', 'k', 'v', 'cross_q', 'cross_k', 'cross_v']) {
        const got = traced.get(`block.0.${n}`)!;
        errors[`block.0.${n}`] = maxRelError(got.data, bhldToBlhd(io.f32(`${run}.inter.block.0.${n}`)));
      }
      check('block.1.out', 'block.1.out', 'inter.block.1.out');
      check('final_tokens', 'final_tokens', 'inter.final_tokens');
      if (process.env.DITFA_GOLDEN_REPORT) process.stdout.write(`pixart ${run} errors ${JSON.stringify(errors)}\n`);
      for (const [name, e] of Object.entries(errors)) expect(e, name).toBeLessThan(TOL);
      expect(Object.keys(errors)).toHaveLength(26);
    });

    it(`${run}: the official layout gives identical outputs`, async () => {
      const { x, t, cond } = inputs(run);
      const a = await diffusers.forward(x, t, cond);
      const b = await official.forward(x, t, cond);
      expect(maxRelError(b.output.data, a.output.data)).toBe(0);
    });
  }

  it('the text mask matters (dropping it changes the output)', async () => {
    const { x, t, cond } = inputs('square');
    const masked = await diffusers.forward(x, t, cond);
    const unmasked = await diffusers.forward(x, t, { captions: cond.captions });
    expect(maxRelError(unmasked.output.data, masked.output.data)).toBeGreaterThan(1e-3);
  });
});
