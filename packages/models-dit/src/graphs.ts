import { type LinearWeights, GraphBuilder, chunkLast, gatedResidual, geluTanh, layerNorm, linear, linearFeeds, linearFromInputs, modulate, plainAttention, silu } from '@ditfa/ort-graph';
import { type ModelConfig, mlpHidden, outChannels } from './config.js';
import type { BlockWeights, DitWeights, PixartWeights } from './weights.js';

/**
 * The ONNX graphs of one model, each built once from the weights. A transformer block is split around
 * its self-attention so that attention itself can go to the plan's strategy:
 *
 * - `pre`  : norm1 + adaLN modulate + fused q/k/v projection. Batch is symbolic, so the conditional CFG
 *            half is projected by feeding fewer rows.
 * - `out`  : the attention out-projection (also row-count agnostic).
 * - `post` : gate + residual, [PixArt: cross-attention with the text mask], norm2 + modulate + MLP + gate + residual.
 *
 * Plus `embed` (patch embed + position table + timestep/label conditioning + every block's
 * modulation vectors in one GEMM), `caption` (PixArt: caption projection and every block's cross k/v,
 * once per condition) and `final` (final adaLN layer + linear). LayerNorm eps is 1e-6 everywhere.
 * With `taps`, graphs also output intermediates (`attn_in`, `mlp_in`, …) for golden tests.
 */

export const LN_EPS = 1e-6;

export interface GraphOptions {
  readonly taps?: boolean;
  /**
   * Block graphs only: take the block's weights as graph inputs (see {@link blockFeeds}) instead of
   * initializers, so one session serves every block (one memory arena and one thread pool instead of
   * one per block piece). Default false.
   */
  readonly weightInputs?: boolean;
}

/** A linear layer of a block graph: from initializers, or from inputs named after `prefix`. */
function blockLinear(g: GraphBuilder, x: string, w: LinearWeights, prefix: string, options: GraphOptions): string {
  return options.weightInputs ? linearFromInputs(g, x, prefix, w.inFeatures, w.outFeatures, w.bias !== null) : linear(g, x, w, prefix);
}

/** The weight inputs of a block's `pre`, `out` and `post` graphs built with `weightInputs` (transposed once). */
export function blockFeeds(config: ModelConfig, b: BlockWeights): Record<'pre' | 'out' | 'post', Record<string, { data: Float32Array; dims: readonly number[] }>> {
  return {
    pre: linearFeeds(b.qkv, 'qkv'),
    out: linearFeeds(b.proj, 'proj'),
    post: {
      ...(config.family === 'pixart' ? { ...linearFeeds(b.crossQ!, 'cross_q'), ...linearFeeds(b.crossProj!, 'cross_proj') } : {}),
      ...linearFeeds(b.fc1, 'fc1'),
      ...linearFeeds(b.fc2, 'fc2'),
    },
  };
}

const concatLinear = (parts: readonly LinearWeights[]): LinearWeights => {
  const inFeatures = parts[0]!.inFeatures;
  const outFeatures = parts.reduce((n, p) => n + p.outFeatures, 0);
  const weight = new Float32Array(outFeatures * inFeatures);
  const bias = new Float32Array(outFeatures);
  let o = 0;
  for (const p of parts) {
    weight.set(p.weight, o * inFeatures);
    bias.set(p.bias!, o);
    o += p.outFeatures;
  }
  return { weight, bias, inFeatures, outFeatures };
};

function patchEmbed(g: GraphBuilder, config: ModelConfig, w: DitWeights | PixartWeights, taps: boolean): string {
  const C = config.hiddenSize;
  const p = config.patchSize;
  const x = g.input('x', 'float32', ['B', config.inChannels, 'H', 'W']);
  const pos = g.input('pos', 'float32', [1, 'L', C]);
  const wt = g.initializer('patch.weight', { type: 'float32', dims: [C, config.inChannels, p, p], data: w.patchWeight });
  const bt = g.initializer('patch.bias', { type: 'float32', dims: [C], data: w.patchBias });
  const conv = g.op('Conv', [x, wt, bt], { kernel_shape: [p, p], strides: [p, p] });
  const patches = g.op('Transpose', [g.op('Reshape', [conv, g.constI64([0, C, -1])])], { perm: [0, 2, 1] });
  if (taps) g.output(patches, 'x_patch');
  return g.op('Add', [patches, pos]);
}

function timestepMlp(g: GraphBuilder, config: ModelConfig, w: DitWeights | PixartWeights): string {
  const tfreq = g.input('tfreq', 'float32', ['B', 256]);
  return linear(g, silu(g, linear(g, tfreq, w.t1, 't1')), w.t2, 't2');
}

/** DiT: tokens, c = t_emb + y_emb, every block's adaLN-Zero vector `[B, 6C]` and the final layer's `[B, 2C]`. */
export function buildDitEmbed(config: ModelConfig, w: DitWeights, options: GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder('dit.embed');
  const C = config.hiddenSize;
  g.output(patchEmbed(g, config, w, options.taps ?? false), 'tokens');
  const tEmb = timestepMlp(g, config, w);
  const y = g.input('y', 'int64', ['B']);
  const table = g.initializer('y_table', { type: 'float32', dims: [w.classTable.length / C, C], data: w.classTable });
  const yEmb = g.op('Gather', [table, y], { axis: 0 });
  const c = g.op('Add', [tEmb, yEmb]);
  g.output(tEmb, 't_emb');
  g.output(yEmb, 'y_emb');
  g.output(c, 'c');
  const sc = silu(g, c);
  const all = linear(g, sc, concatLinear(w.blocks.map((b) => b.ada!)), 'ada_all');
  const mods = g.opN('Split', [all, g.constI64(new Array(config.depth).fill(6 * C))], w.blocks.map((_, i) => `mod_${i}`), { axis: -1 });
  for (const m of mods) g.output(m);
  g.output(linear(g, sc, w.finalAda, 'final_ada'), 'final_mod');
  return g.toModel();
}

/** PixArt (adaLN-single): tokens, t_emb, t_mod = t_block(t_emb), block i's `t_mod + table_i`, final `[shift | scale]`. */
export function buildPixartEmbed(config: ModelConfig, w: PixartWeights, options: GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder('pixart.embed');
  const C = config.hiddenSize;
  g.output(patchEmbed(g, config, w, options.taps ?? false), 'tokens');
  const tEmb = timestepMlp(g, config, w);
  g.output(tEmb, 't_emb');
  const tMod = linear(g, silu(g, tEmb), w.tBlock, 't_block');
  g.output(tMod, 't_mod');
  w.blocks.forEach((b, i) => g.output(g.op('Add', [tMod, g.constF(b.table!, [6 * C], 'table')]), `mod_${i}`));
  const twice = g.op('Concat', [tEmb, tEmb], { axis: -1 });
  g.output(g.op('Add', [twice, g.constF(w.finalTable, [2 * C], 'final_table')]), 'final_mod');
  return g.toModel();
}

/** PixArt: caption projection and every block's cross-attention k/v (`ck_i`, `cv_i`, `[B, Lt, C]`). */
export function buildPixartCaption(config: ModelConfig & { captionChannels: number }, w: PixartWeights): Uint8Array {
  const g = new GraphBuilder('pixart.caption');
  const y = g.input('y', 'float32', ['B', 'Lt', config.captionChannels]);
  const proj = linear(g, geluTanh(g, linear(g, y, w.cap1, 'cap1')), w.cap2, 'cap2');
  g.output(proj, 'y_proj');
  const kv = linear(g, proj, concatLinear(w.blocks.map((b) => b.crossKv!)), 'cross_kv_all');
  const names = w.blocks.flatMap((_, i) => [`ck_${i}`, `cv_${i}`]);
  for (const n of g.opN('Split', [kv, g.constI64(new Array(2 * config.depth).fill(config.hiddenSize))], names, { axis: -1 })) g.output(n);
  return g.toModel();
}

/** norm1 + modulate(shift_msa, scale_msa) + q/k/v projection; outputs `q`, `k`, `v` as `[R, L, C]`. */
export function buildPre(config: ModelConfig, b: BlockWeights, options: GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder('block.pre');
  const C = config.hiddenSize;
  const x = g.input('x', 'float32', ['R', 'L', C]);
  const mod = g.input('mod', 'float32', ['R', 6 * C]);
  const [shift, scale] = chunkLast(g, mod, 6, C) as [string, string];
  const h = modulate(g, layerNorm(g, x, C, LN_EPS), shift, scale);
  if (options.taps) g.output(h, 'attn_in');
  const qkv = blockLinear(g, h, b.qkv, 'qkv', options);
  for (const n of g.opN('Split', [qkv, g.constI64([C, C, C])], ['q', 'k', 'v'], { axis: -1 })) g.output(n);
  return g.toModel();
}

/** The attention out-projection `[R, L, C] → [R, L, C]`. */
export function buildOut(config: ModelConfig, b: BlockWeights, options: GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder('block.out');
  const a = g.input('a', 'float32', ['R', 'L', config.hiddenSize]);
  g.output(blockLinear(g, a, b.proj, 'proj', options), 'y');
  return g.toModel();
}

/** Gate + residual, cross-attention (PixArt), MLP branch; output `out [B, L, C]`. */
export function buildPost(config: ModelConfig, b: BlockWeights, options: GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder('block.post');
  const C = config.hiddenSize;
  const taps = options.taps ?? false;
  const x = g.input('x', 'float32', ['B', 'L', C]);
  const attn = g.input('attn', 'float32', ['B', 'L', C]);
  const mod = g.input('mod', 'float32', ['B', 6 * C]);
  const [, , gateMsa, shiftMlp, scaleMlp, gateMlp] = chunkLast(g, mod, 6, C) as [string, string, string, string, string, string];
  let h = gatedResidual(g, x, gateMsa, attn);
  if (config.family === 'pixart') {
    const ck = g.input('ck', 'float32', ['B', 'Lt', C]);
    const cv = g.input('cv', 'float32', ['B', 'Lt', C]);
    const bias = g.input('bias', 'float32', ['B', 1, 1, 'Lt']);
    if (taps) g.output(h, 'cross_in');
    const q = blockLinear(g, h, b.crossQ!, 'cross_q', options);
    if (taps) g.output(q, 'cross_q');
    const core = plainAttention(g, q, ck, cv, config.numHeads, C / config.numHeads, bias);
    if (taps) g.output(core, 'cross_core');
    const out = blockLinear(g, core, b.crossProj!, 'cross_proj', options);
    if (taps) g.output(out, 'cross_out');
    h = g.op('Add', [h, out]);
  }
  const m = modulate(g, layerNorm(g, h, C, LN_EPS), shiftMlp, scaleMlp);
  if (taps) g.output(m, 'mlp_in');
  const mlp = blockLinear(g, geluTanh(g, blockLinear(g, m, b.fc1, 'fc1', options)), b.fc2, 'fc2', options);
  if (taps) g.output(mlp, 'mlp_out');
  g.output(gatedResidual(g, h, gateMlp, mlp), 'out');
  return g.toModel();
}

/** Final layer: LN + modulate(shift, scale) + linear → per-token `[B, L, p·p·out]` (unpatchified by the caller). */
export function buildFinal(config: ModelConfig, w: DitWeights | PixartWeights): Uint8Array {
  const g = new GraphBuilder('final');
  const C = config.hiddenSize;
  const x = g.input('x', 'float32', ['B', 'L', C]);
  const mod = g.input('final_mod', 'float32', ['B', 2 * C]);
  const [shift, scale] = chunkLast(g, mod, 2, C) as [string, string];
  const h = modulate(g, layerNorm(g, x, C, LN_EPS), shift, scale);
  g.output(linear(g, h, w.finalLinear, 'final'), 'tokens');
  return g.toModel();
}

/** `[B, h·w, p·p·C]` (per token `(py, px, c)`, c fastest) → `[B, C, h·p, w·p]`. */
export function unpatchify(tokens: Float32Array, B: number, h: number, w: number, p: number, C: number): Float32Array {
  const H = h * p;
  const W = w * p;
  const out = new Float32Array(B * C * H * W);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const t = ((b * h + i) * w + j) * p * p * C;
        for (let py = 0; py < p; py++) {
          for (let px = 0; px < p; px++) {
            for (let c = 0; c < C; c++) {
              out[((b * C + c) * H + i * p + py) * W + j * p + px] = tokens[t + (py * p + px) * C + c]!;
            }
          }
        }
      }
    }
  }
  return out;
}

export { mlpHidden, outChannels };
