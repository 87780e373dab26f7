import type { Tensor } from '@ditfa/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OpenSoraCondition, type OpenSoraModel, type OpenSoraVersion, configFromJson, loadModel } from '../src/index.js';
import { Io, bhldToBlhd, caseJson, hasCase, maxRelError, weights } from './fixtures.js';

/**
 * Golden parity with the official Open-Sora code (../shared/fixtures/golden): the output and every
 * intermediate the fixture carries, within 1e-4 of max(|b|, 1) elementwise, as models-dit's golden
 * tests judge. Both runs of each case; `xmask` exercises x_mask (and STDiT2's t0_spc final layer).
 */
const TOL = 1e-4;
const CASES: ReadonlyArray<{ name: string; version: OpenSoraVersion; intermediates: Record<string, number> }> = [
  // how many intermediates each run carries (all of them are compared)
  { name: 'opensora_stdit3_d64', version: 'stdit3', intermediates: { main: 48, xmask: 51 } },
  { name: 'opensora_stdit2_d72', version: 'stdit2', intermediates: { main: 41, xmask: 16 } },
];
/** Intermediates in the official q/k/v layout `[rows, heads, tokens, head_dim]`. */
const HEADS_FIRST = /attn\.(q|k|v|q_normed|k_normed|q_rope|k_rope)$/;

for (const c of CASES) {
  describe.skipIf(!hasCase(c.name))(`golden: ${c.name}`, () => {
    let io: Io;
    let model: OpenSoraModel;
    beforeAll(async () => {
      io = new Io(c.name);
      model = await loadModel(weights(c.name), { config: configFromJson(caseJson(c.name).config, c.version), taps: true, threads: 1 });
    });
    afterAll(() => model?.dispose());

    const inputs = (run: string): { x: Tensor; t: number[]; cond: OpenSoraCondition } => {
      const n = (k: string) => io.numbers(`${run}.input.${k}`);
      const cond: OpenSoraCondition = {
        captions: io.f32(`${run}.input.y`),
        mask: n('mask'),
        height: n('height'),
        width: n('width'),
        fps: n('fps'),
        ...(c.version === 'stdit2' ? { frames: n('num_frames'), ar: n('ar') } : {}),
        ...(io.has(`${run}.input.x_mask`) ? { xMask: n('x_mask') } : {}),
      };
      return { x: io.f32(`${run}.input.x`), t: n('t'), cond };
    };

    for (const run of ['main', 'xmask']) {
      it(`${run}: the output and all ${c.intermediates[run]} intermediates within 1e-4`, async () => {
        const { x, t, cond } = inputs(run);
        const traced = new Map<string, Tensor>();
        const { output } = await model.forward(x, t, cond, { trace: (name, v) => traced.set(name, v) });
        const errors: Record<string, number> = { out: maxRelError(output.data, io.f32(`${run}.output.out`).data) };
        const prefix = `${run}.inter.`;
        const names = io.keys().filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
        for (const name of names) {
          const got = traced.get(name);
          expect(got, `traced ${name}`).toBeDefined();
          const want = io.f32(prefix + name);
          expect(got!.data.length, name).toBe(want.data.length);
          errors[name] = maxRelError(got!.data, HEADS_FIRST.test(name) ? bhldToBlhd(want) : want.data);
        }
        if (process.env.DITFA_GOLDEN_REPORT) process.stdout.write(`${c.name} ${run} max ${Math.max(...Object.values(errors)).toExponential(2)} out ${errors.out!.toExponential(2)}\n`);
        expect(names).toHaveLength(c.intermediates[run]!);
        for (const [name, e] of Object.entries(errors)) expect(e, name).toBeLessThan(TOL);
      });
    }

    it('the caption mask and x_mask matter (dropping either changes the output)', async () => {
      const { x, t, cond } = inputs('xmask');
      const base = (await model.forward(x, t, cond)).output;
      const { mask: _mask, ...unmasked } = cond;
      const { xMask: _xMask, ...noXMask } = cond;
      expect(maxRelError((await model.forward(x, t, unmasked)).output.data, base.data)).toBeGreaterThan(1e-3);
      expect(maxRelError((await model.forward(x, t, noXMask)).output.data, base.data)).toBeGreaterThan(1e-3);
    });
  });
}
