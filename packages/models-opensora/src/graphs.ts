import { type GraphBuilder as Builder, GraphBuilder, type LinearWeights, geluTanh, layerNorm, linear, silu } from '@ditfa/ort-graph';
import { type OpenSoraConfig, headDim, outChannels } from './config.js';
import type { CrossAttentionWeights, MlpWeights, OpenSoraWeights, SelfAttentionWeights } from './weights.js';

/**
 * The ONNX graphs of one STDiT model, each built once from the weights. The hidden state travels as
 * `[B, T, S, C]` (frames × tokens per frame); attention layers see it as rows:
 *
 * - spatial self-attention: `[B·T, S, C]` (a reshape, no copy); temporal: `[B·S, T, C]` (a transpose
 *   inside the `pre` graph); cross-attention: `[B, T·S, C]` against each sample's caption tokens.
 * - `selfPre`: norm + modulate (per-frame shift/scale) + q/k/v + qk-norm and rotary embedding as the
 *   version does them. The batch is symbolic: the conditional CFG half is projected by feeding its
 *   samples only (row views).
 * - `linear` (out-projections, cross q): shape-agnostic.
 * - `selfPost`: gate + residual (weights-free, shared by blocks), back to `[B, T, S, C]`.
 * - `mlp`: cross-attention residual + norm + modulate + MLP + gate + residual.
 * - `embed`, `caption` (caption projection and every cross site's k/v, once per condition), `final`.
 *
 * Modulation vectors enter as `[B, Tm, k·C]` (`Tm` = 1, or T with `x_mask`: each frame's row is the
 * `t` or the `t = 0` vector), so `x_mask` costs no second branch. LayerNorm eps is 1e-6 everywhere.
 */

export const LN_EPS = 1e-6;
export const RMS_EPS = 1e-6;

export interface GraphOptions {
  readonly taps?: boolean;
}

/** `[B, Tm, k·C]` → chunk `i` as `[B, Tm, 1, C]` (broadcast over the tokens of a frame). */
function chunk(g: Builder, mod: string, k: number, C: number, i: number): string {
  const parts = g.opN('Split', [mod, g.constI64(new Array(k).fill(C))], k, { axis: -1 });
  return g.op('Unsqueeze', [parts[i]!, g.constI64([2])]);
}

/** `x·(1 + scale) + shift` (t2i_modulate), operands broadcast. */
function modulate(g: Builder, x: string, shift: string, scale: string): string {
  return g.op('Add', [g.op('Mul', [x, g.op('Add', [scale, g.constF([1], [1], 'one')])]), shift]);
}

/** `LlamaRMSNorm(head_dim)` over the heads of `[…, C]`: `w · x / sqrt(mean(x²) + eps)` per head. */
function rmsNorm(g: Builder, x: string, weight: Float32Array, heads: number, hd: number): string {
  const h = g.op('Reshape', [x, g.constI64([0, 0, 0, heads, hd])]);
  const ms = g.op('ReduceMean', [g.op('Mul', [h, h]), g.constI64([-1])], { keepdims: 1 });
  const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [ms, g.constF([RMS_EPS], [1], 'eps')])])]);
  const y = g.op('Mul', [g.constF(weight, [hd], 'rms_w'), g.op('Mul', [h, inv])]);
  return g.op('Reshape', [y, g.constI64([0, 0, 0, heads * hd])]);
}

/** `x·cos + rotate_half(x)·sin` over interleaved pairs, `x` `[…, T, C]` with `cos`/`sin` `[T, C]`. */
function rope(g: Builder, x: string, cos: string, sin: string, C: number): string {
  const pairs = g.op('Reshape', [x, g.constI64([0, 0, 0, C / 2, 2])]);
  const [a, b] = g.opN('Split', [pairs, g.constI64([1, 1])], 2, { axis: -1 });
  const rotated = g.op('Reshape', [g.op('Concat', [g.op('Neg', [b!]), a!], { axis: -1 }), g.constI64([0, 0, 0, C])]);
  return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
}

export interface SelfPreOptions extends GraphOptions {
  /** `spatial`: rows are frames (`[B, T, S, C]`); `temporal`: rows are token positions (`[B, S, T, C]`, with rope). */
  readonly layout: 'spatial' | 'temporal';
  /** Chunks of the modulation vector (6: `scale_shift_table`; 3: STDiT2's temporal table); shift and scale are chunks 0 and 1. */
  readonly chunks: 6 | 3;
  /** Where the rotary embedding goes relative to qk-norm: v1.2 after it, v1.1 before it. */
  readonly ropeOrder: 'after-norm' | 'before-norm';
}

/** norm + modulate + q/k/v (+ qk-norm, + rope for temporal): outputs `q`, `k`, `v` `[B, A, L, C]` (A rows per sample). */
export function buildSelfPre(config: OpenSoraConfig, w: SelfAttentionWeights, options: SelfPreOptions): Uint8Array {
  const g = new GraphBuilder(`${options.layout}.pre`);
  const C = config.hiddenSize;
  const hd = headDim(config);
  const taps = options.taps ?? false;
  const x = g.input('x', 'float32', ['B', 'T', 'S', C]);
  const mod = g.input('mod', 'float32', ['B', 'Tm', options.chunks * C]);
  let h = modulate(g, layerNorm(g, x, C, LN_EPS), chunk(g, mod, options.chunks, C, 0), chunk(g, mod, options.chunks, C, 1));
  const temporal = options.layout === 'temporal';
  if (temporal) h = g.op('Transpose', [h], { perm: [0, 2, 1, 3] });
  if (taps) g.output(h, 'attn_in');
  const [q0, k0, v] = g.opN('Split', [linear(g, h, w.qkv, 'qkv'), g.constI64([C, C, C])], 3, { axis: -1 }) as [string, string, string];
  if (taps) {
    g.output(q0, 'q_raw');
    g.output(k0, 'k_raw');
  }
  let cos = '';
  let sin = '';
  if (temporal) {
    cos = g.input('cos', 'float32', ['T', C]);
    sin = g.input('sin', 'float32', ['T', C]);
  }
  const process = (t: string, norm: Float32Array | null, name: 'q' | 'k'): string => {
    const normed = (u: string): string => {
      if (!norm) return u;
      const n = rmsNorm(g, u, norm, config.numHeads, hd);
      if (taps) g.output(n, `${name}_normed`);
      return n;
    };
    const roped = (u: string): string => {
      if (!temporal) return u;
      const r = rope(g, u, cos, sin, C);
      if (taps) g.output(r, `${name}_rope`);
      return r;
    };
    return options.ropeOrder === 'after-norm' ? roped(normed(t)) : normed(roped(t));
  };
  g.output(process(q0, w.qNorm, 'q'), 'q');
  g.output(process(k0, w.kNorm, 'k'), 'k');
  g.output(v, 'v');
  return g.toModel();
}

/** `x · Wᵀ + b` over `[R, L, in]` (out-projections, cross-attention q). */
export function buildLinear(name: string, w: LinearWeights): Uint8Array {
  const g = new GraphBuilder(name);
  const a = g.input('a', 'float32', ['R', 'L', w.inFeatures]);
  g.output(linear(g, a, w, 'w'), 'y');
  return g.toModel();
}

export interface SelfPostOptions {
  readonly layout: 'spatial' | 'temporal';
  readonly chunks: 6 | 3;
}

/** `x + gate · attn` with the gate (chunk 2) per frame; `attn` `[B, T, S, C]` (spatial) or `[B, S, T, C]` (temporal). */
export function buildSelfPost(config: OpenSoraConfig, options: SelfPostOptions): Uint8Array {
  const g = new GraphBuilder(`${options.layout}.post`);
  const C = config.hiddenSize;
  const x = g.input('x', 'float32', ['B', 'T', 'S', C]);
  const attn = g.input('attn', 'float32', options.layout === 'spatial' ? ['B', 'T', 'S', C] : ['B', 'S', 'T', C]);
  const mod = g.input('mod', 'float32', ['B', 'Tm', options.chunks * C]);
  const a = options.layout === 'spatial' ? attn : g.op('Transpose', [attn], { perm: [0, 2, 1, 3] });
  g.output(g.op('Add', [x, g.op('Mul', [chunk(g, mod, options.chunks, C, 2), a])]), 'out');
  return g.toModel();
}

/** Cross-attention residual, then norm + modulate (chunks 3, 4) + MLP + gate (chunk 5) + residual. */
export function buildMlp(config: OpenSoraConfig, w: MlpWeights, options: GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder('mlp');
  const C = config.hiddenSize;
  const x = g.input('x', 'float32', ['B', 'T', 'S', C]);
  const cross = g.input('cross', 'float32', ['B', 'T', 'S', C]);
  const mod = g.input('mod', 'float32', ['B', 'Tm', 6 * C]);
  const h = g.op('Add', [x, cross]);
  const m = modulate(g, layerNorm(g, h, C, LN_EPS), chunk(g, mod, 6, C, 3), chunk(g, mod, 6, C, 4));
  if (options.taps) g.output(m, 'mlp_in');
  const y = linear(g, geluTanh(g, linear(g, m, w.fc1, 'fc1')), w.fc2, 'fc2');
  if (options.taps) g.output(y, 'mlp_out');
  g.output(g.op('Add', [h, g.op('Mul', [chunk(g, mod, 6, C, 5), y])]), 'out');
  return g.toModel();
}

/** Caption projection and the k/v of every cross-attention site (`k_i`, `v_i` `[B, L, C]`, in model order). */
export function buildCaption(config: OpenSoraConfig, w: OpenSoraWeights, sites: readonly CrossAttentionWeights[]): Uint8Array {
  const g = new GraphBuilder('caption');
  const C = config.hiddenSize;
  const y = g.input('y', 'float32', ['B', 'L', config.captionChannels]);
  const proj = linear(g, geluTanh(g, linear(g, y, w.cap1, 'cap1')), w.cap2, 'cap2');
  g.output(proj, 'y_emb');
  const inFeatures = C;
  const outFeatures = 2 * C * sites.length;
  const weight = new Float32Array(outFeatures * inFeatures);
  const bias = new Float32Array(outFeatures);
  sites.forEach((s, i) => {
    weight.set(s.kv.weight, i * 2 * C * inFeatures);
    bias.set(s.kv.bias!, i * 2 * C);
  });
  const kv = linear(g, proj, { weight, bias, inFeatures, outFeatures }, 'kv_all');
  const names = sites.flatMap((_, i) => [`k_${i}`, `v_${i}`]);
  for (const n of g.opN('Split', [kv, g.constI64(new Array(2 * sites.length).fill(C))], names, { axis: -1 })) g.output(n);
  return g.toModel();
}

/** `Linear(256 → out) → SiLU → Linear(out → out)` of the timestep and size embedders. */
function sinusoidMlp(g: Builder, input: string, a: LinearWeights, b: LinearWeights, name: string): string {
  return linear(g, silu(g, linear(g, input, a, `${name}1`)), b, `${name}2`);
}

/**
 * Patch embedding (`Conv3d`, input already zero-padded to whole patches) + position table, and the
 * conditioning: timestep embedding for `t` and for `t = 0` (the `x_mask` frames), the micro-conditions,
 * `t_block` (and STDiT2's `t_block_temp`) and the final layer's `[shift | scale]`.
 */
export function buildEmbed(config: OpenSoraConfig, w: OpenSoraWeights, options: GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder(`${config.version}.embed`);
  const C = config.hiddenSize;
  const [pt, ph, pw] = config.patchSize;
  const x = g.input('x', 'float32', ['B', config.inChannels, 'Tp', 'Hp', 'Wp']);
  const pos = g.input('pos', 'float32', [1, 1, 'S', C]);
  const wt = g.initializer('patch.weight', { type: 'float32', dims: [C, config.inChannels, pt, ph, pw], data: w.patchWeight });
  const bt = g.initializer('patch.bias', { type: 'float32', dims: [C], data: w.patchBias });
  const conv = g.op('Conv', [x, wt, bt], { kernel_shape: [pt, ph, pw], strides: [pt, ph, pw] });
  const patches = g.op('Transpose', [g.op('Reshape', [conv, g.constI64([0, 0, 0, -1])])], { perm: [0, 2, 3, 1] });
  if (options.taps) g.output(patches, 'x_patch');
  g.output(g.op('Add', [patches, pos]), 'tokens');

  const tfreq = g.input('tfreq', 'float32', ['B', 256]);
  const tfreq0 = g.input('tfreq0', 'float32', ['B', 256]);
  const fpsfreq = g.input('fpsfreq', 'float32', ['B', 256]);
  // t_embedder is applied to t and to t = 0 in one batch of 2B rows
  const both = sinusoidMlp(g, g.op('Concat', [tfreq, tfreq0], { axis: 0 }), w.t1, w.t2, 't');
  const [tEmb, tEmb0] = splitHalves(g, both);
  g.output(tEmb, 't_emb');
  g.output(tEmb0, 't_emb0');
  const fps = sinusoidMlp(g, fpsfreq, w.fps1, w.fps2, 'fps');
  g.output(fps, 'fps_emb');
  /** `Linear(SiLU(·))` of `a` and `b` in one batch (one copy of the weights). */
  const twice = (a: string, b: string, lw: LinearWeights, name: string): [string, string] =>
    splitHalves(g, linear(g, silu(g, g.op('Concat', [a, b], { axis: 0 })), lw, name));
  const finalMod = (t: string): string => g.op('Add', [g.op('Concat', [t, t], { axis: -1 }), g.constF(w.finalTable, [2 * C], 'final_table')]);
  if (w.version === 'stdit3') {
    const tc = g.op('Add', [tEmb, fps]);
    const tc0 = g.op('Add', [tEmb0, fps]);
    const [m, m0] = twice(tc, tc0, w.tBlock, 't_block');
    g.output(m, 't_mlp');
    g.output(m0, 't_mlp0');
    g.output(finalMod(tc), 'final_mod');
    g.output(finalMod(tc0), 'final_mod0');
  } else {
    const hwfreq = g.input('hwfreq', 'float32', ['B', 2, 256]);
    const arfreq = g.input('arfreq', 'float32', ['B', 256]);
    const flfreq = g.input('flfreq', 'float32', ['B', 256]);
    const csize = g.op('Reshape', [sinusoidMlp(g, hwfreq, w.csize1, w.csize2, 'csize'), g.constI64([0, -1])]);
    const ar = sinusoidMlp(g, arfreq, w.ar1, w.ar2, 'ar');
    const fl = sinusoidMlp(g, flfreq, w.fl1, w.fl2, 'fl');
    g.output(csize, 'csize_emb');
    g.output(ar, 'ar_emb');
    g.output(fl, 'fl_emb');
    const info = g.op('Concat', [csize, ar], { axis: -1 });
    const flFps = g.op('Add', [fl, fps]);
    const [m, m0] = twice(g.op('Add', [tEmb, info]), g.op('Add', [tEmb0, info]), w.tBlock, 't_block');
    const [n, n0] = twice(g.op('Add', [tEmb, flFps]), g.op('Add', [tEmb0, flFps]), w.tBlockTemp, 't_block_temp');
    g.output(m, 't_mlp');
    g.output(m0, 't_mlp0');
    g.output(n, 't_tmp_mlp');
    g.output(n0, 't_tmp_mlp0');
    // official STDiT2.forward: final_layer(x, t, x_mask, t0_spc): the t = 0 branch takes the size and
    // aspect-ratio conditioning, the main branch does not
    g.output(finalMod(tEmb), 'final_mod');
    g.output(finalMod(g.op('Add', [tEmb0, info])), 'final_mod0');
  }
  return g.toModel();
}

/** Splits a `[2B, …]` value into its two halves along the batch. */
function splitHalves(g: Builder, v: string): [string, string] {
  const shape = g.op('Shape', [v]);
  const half = g.op('Div', [g.op('Gather', [shape, g.constI64([0], [])], { axis: 0 }), g.constI64([2], [])]);
  const halves = g.op('Unsqueeze', [half, g.constI64([0])]);
  const sizes = g.op('Concat', [halves, halves], { axis: 0 });
  const [a, b] = g.opN('Split', [v, sizes], 2, { axis: 0 });
  return [a!, b!];
}

/**
 * Final layer (`T2IFinalLayer`): `modulate(LN(x), shift, scale)` then the linear, per token
 * `[B, T, S, pt·ph·pw·out]`. With `xMask`, frames whose `keep` is false take
 * `modulate(LN(modulate(LN(x), shift, scale)), shift0, scale0)`: the official layer builds the `t = 0`
 * branch from the already modulated `x` (kept as is, see the golden fixture's notes).
 */
export function buildFinal(config: OpenSoraConfig, w: OpenSoraWeights, options: { xMask: boolean }): Uint8Array {
  const g = new GraphBuilder('final');
  const C = config.hiddenSize;
  const x = g.input('x', 'float32', ['B', 'T', 'S', C]);
  const mod = g.input('final_mod', 'float32', ['B', 2 * C]);
  const perSample = (v: string): string => g.op('Unsqueeze', [v, g.constI64([1, 2])]);
  const halves = (m: string): [string, string] => {
    const [shift, scale] = g.opN('Split', [m, g.constI64([C, C])], 2, { axis: -1 });
    return [perSample(shift!), perSample(scale!)];
  };
  const [shift, scale] = halves(mod);
  let h = modulate(g, layerNorm(g, x, C, LN_EPS), shift, scale);
  if (options.xMask) {
    const mod0 = g.input('final_mod0', 'float32', ['B', 2 * C]);
    const keep = g.input('keep', 'bool', ['B', 'T', 1, 1]);
    const [shift0, scale0] = halves(mod0);
    h = g.op('Where', [keep, h, modulate(g, layerNorm(g, h, C, LN_EPS), shift0, scale0)]);
  }
  g.output(linear(g, h, w.finalLinear, 'final'), 'tokens');
  return g.toModel();
}

/**
 * `[B, T', H', W', pt·ph·pw·out]` tokens (per token `(pt, ph, pw, c)`, c fastest) → `[B, out, T, H, W]`,
 * cropped to the unpadded `T × H × W` (official `unpatchify`).
 */
export function unpatchify(
  tokens: Float32Array,
  B: number,
  grid: readonly [number, number, number],
  patch: readonly [number, number, number],
  out: number,
  size: readonly [number, number, number],
): Float32Array {
  const [gt, gh, gw] = grid;
  const [pt, ph, pw] = patch;
  const [T, H, W] = size;
  const result = new Float32Array(B * out * T * H * W);
  const per = pt * ph * pw * out;
  for (let b = 0; b < B; b++) {
    for (let it = 0; it < gt; it++) {
      for (let ih = 0; ih < gh; ih++) {
        for (let iw = 0; iw < gw; iw++) {
          const base = (((b * gt + it) * gh + ih) * gw + iw) * per;
          for (let a = 0; a < pt; a++) {
            const tt = it * pt + a;
            if (tt >= T) continue;
            for (let c2 = 0; c2 < ph; c2++) {
              const hh = ih * ph + c2;
              if (hh >= H) continue;
              for (let d = 0; d < pw; d++) {
                const ww = iw * pw + d;
                if (ww >= W) continue;
                const src = base + ((a * ph + c2) * pw + d) * out;
                for (let c = 0; c < out; c++) result[(((b * out + c) * T + tt) * H + hh) * W + ww] = tokens[src + c]!;
              }
            }
          }
        }
      }
    }
  }
  return result;
}

export { outChannels };
