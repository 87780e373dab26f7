import { describe, expect, it } from 'vitest';
import { GraphBuilder } from './graph.js';
import { chunkLast, geluTanh, layerNorm, linear, linearFeeds, linearFromInputs, modulate, plainAttention, silu } from './layers.js';
import { createSession, floatTensor, loadOrt } from './session.js';

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

describe('GraphBuilder + onnxruntime', () => {
  it('runs linear, layer norm, modulate, silu and tanh-GELU like a direct computation', async () => {
    const B = 2, L = 3, C = 4, O = 5;
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float32', ['B', 'L', C]);
    const mod = g.input('mod', 'float32', ['B', 2 * C]);
    const [shift, scale] = chunkLast(g, mod, 2, C) as [string, string];
    const h = modulate(g, layerNorm(g, x, C, 1e-6), shift, scale);
    const w = rand(O * C, 1), b = rand(O, 2);
    g.output(geluTanh(g, silu(g, linear(g, h, { weight: w, bias: b, inFeatures: C, outFeatures: O }, 'fc'))), 'y');
    const session = await createSession(g.toModel(), { threads: 1 });
    const ort = await loadOrt();
    const xs = rand(B * L * C, 3), ms = rand(B * 2 * C, 4);
    const { y } = await session.run({ x: floatTensor(ort, xs, [B, L, C]), mod: floatTensor(ort, ms, [B, 2 * C]) });
    const got = y!.data as Float32Array;
    expect(y!.dims).toEqual([B, L, O]);
    for (let bi = 0; bi < B; bi++) for (let l = 0; l < L; l++) {
      const row = Array.from(xs.subarray((bi * L + l) * C, (bi * L + l + 1) * C));
      const mean = row.reduce((a, c) => a + c, 0) / C;
      const vr = row.reduce((a, c) => a + (c - mean) ** 2, 0) / C;
      const hn = row.map((v, c) => ((v - mean) / Math.sqrt(vr + 1e-6)) * (1 + ms[bi * 2 * C + C + c]!) + ms[bi * 2 * C + c]!);
      for (let o = 0; o < O; o++) {
        let z = b[o]!;
        for (let c = 0; c < C; c++) z += hn[c]! * w[o * C + c]!;
        const s = z / (1 + Math.exp(-z));
        const ge = 0.5 * s * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (s + 0.044715 * s ** 3)));
        expect(got[(bi * L + l) * O + o]).toBeCloseTo(ge, 5);
      }
    }
    await session.release();
  });

  it('takes a linear layer\'s weights as inputs (one session for every block) with the same result, under every session option', async () => {
    const C = 6, O = 7;
    const lw = { weight: rand(O * C, 5), bias: rand(O, 6), inFeatures: C, outFeatures: O };
    const fixed = new GraphBuilder('fixed');
    fixed.output(linear(fixed, fixed.input('x', 'float32', ['N', C]), lw, 'fc'), 'y');
    const shared = new GraphBuilder('shared');
    shared.output(linearFromInputs(shared, shared.input('x', 'float32', ['N', C]), 'fc', C, O, true), 'y');
    const ort = await loadOrt();
    const a = await createSession(fixed.toModel(), { threads: 1, spinning: false, memArena: false, memPattern: false });
    const b = await createSession(shared.toModel(), { threads: 1, configEntries: { 'session.intra_op.allow_spinning': '0' } });
    const x = floatTensor(ort, rand(3 * C, 7), [3, C]);
    const feeds = Object.fromEntries(Object.entries(linearFeeds(lw, 'fc')).map(([k, v]) => [k, floatTensor(ort, v.data, v.dims)]));
    const ya = (await a.run({ x })).y!.data as Float32Array;
    const yb = (await b.run({ ...feeds, x })).y!.data as Float32Array;
    expect(Array.from(yb)).toEqual(Array.from(ya));
    await a.release();
    await b.release();
  });

  it('computes masked multi-head attention with plain ops', async () => {
    const B = 1, Lq = 2, Lk = 3, H = 2, D = 2, C = H * D;
    const g = new GraphBuilder('attn');
    const q = g.input('q', 'float32', ['B', 'Lq', C]);
    const k = g.input('k', 'float32', ['B', 'Lk', C]);
    const v = g.input('v', 'float32', ['B', 'Lk', C]);
    const bias = g.input('bias', 'float32', ['B', 1, 1, 'Lk']);
    g.output(plainAttention(g, q, k, v, H, D, bias), 'o');
    const session = await createSession(g.toModel(), { threads: 1 });
    const ort = await loadOrt();
    const qs = rand(Lq * C, 5), ks = rand(Lk * C, 6), vs = rand(Lk * C, 7);
    const bs = Float32Array.from([0, 0, -1e9]);
    const { o } = await session.run({ q: floatTensor(ort, qs, [B, Lq, C]), k: floatTensor(ort, ks, [B, Lk, C]), v: floatTensor(ort, vs, [B, Lk, C]), bias: floatTensor(ort, bs, [1, 1, 1, Lk]) });
    const got = o!.data as Float32Array;
    for (let i = 0; i < Lq; i++) for (let h = 0; h < H; h++) {
      const s = [0, 1].map((j) => { let d = 0; for (let x = 0; x < D; x++) d += qs[i * C + h * D + x]! * ks[j * C + h * D + x]!; return d / Math.sqrt(D); });
      const m = Math.max(...s), e = s.map((z) => Math.exp(z - m)), sum = e[0]! + e[1]!;
      for (let x = 0; x < D; x++) {
        const want = (e[0]! * vs[h * D + x]! + e[1]! * vs[C + h * D + x]!) / sum;
        expect(got[i * C + h * D + x]).toBeCloseTo(want, 5);
      }
    }
  });

  it('refuses undefined values and badly sized initializers', () => {
    const g = new GraphBuilder('bad');
    expect(() => g.op('Relu', ['nope'])).toThrow(/"nope" is not defined/);
    expect(() => g.initializer('w', { type: 'float32', dims: [2, 2], data: new Float32Array(3) })).toThrow(/Expected 16 bytes/);
  });
});
