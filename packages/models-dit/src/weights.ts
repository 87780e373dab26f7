import { type CheckpointTensor, asFloat32 } from '@ditfa/checkpoint';
import { ShapeMismatchError } from '@ditfa/core';
import type { LinearWeights } from '@ditfa/ort-graph';
import { type DitConfig, type ModelConfig, type PixartConfig, mlpHidden, outChannels } from './config.js';
import { ModelConfigError, ModelDtypeError, ModelKeysError } from './errors.js';

/**
 * Checkpoint layouts: the original (facebookresearch/DiT, PixArt-sigma) and diffusers key names for DiT
 * and PixArt-Σ, detected from the keys, checked in full (missing, unexpected, shapes, dtypes) and turned
 * into one canonical weight set per family. The facts are in shared/docs/MODELS.md §1.4–1.5 and §2.6.
 */

export type Layout = 'original' | 'diffusers';

export interface BlockWeights {
  readonly qkv: LinearWeights;
  readonly proj: LinearWeights;
  readonly fc1: LinearWeights;
  readonly fc2: LinearWeights;
  /** DiT: adaLN-Zero modulation `Linear(C → 6C)`. */
  readonly ada?: LinearWeights;
  /** PixArt: `scale_shift_table [6, C]`. */
  readonly table?: Float32Array;
  /** PixArt cross-attention. */
  readonly crossQ?: LinearWeights;
  /** PixArt: rows 0…C−1 = k, C…2C−1 = v. */
  readonly crossKv?: LinearWeights;
  readonly crossProj?: LinearWeights;
}

interface CommonWeights {
  readonly layout: Layout;
  /** Conv patch embed `[C, in, p, p]`. */
  readonly patchWeight: Float32Array;
  readonly patchBias: Float32Array;
  readonly t1: LinearWeights;
  readonly t2: LinearWeights;
  readonly blocks: readonly BlockWeights[];
  readonly finalLinear: LinearWeights;
}

export interface DitWeights extends CommonWeights {
  readonly family: 'dit';
  /** `[numClasses + 1, C]`; the last row is the null class. */
  readonly classTable: Float32Array;
  readonly finalAda: LinearWeights;
}

export interface PixartWeights extends CommonWeights {
  readonly family: 'pixart';
  /** adaLN-single `t_block`: `Linear(C → 6C)` on SiLU(t). */
  readonly tBlock: LinearWeights;
  readonly cap1: LinearWeights;
  readonly cap2: LinearWeights;
  /** `[2, C]` final-layer table. */
  readonly finalTable: Float32Array;
  /** The original checkpoint's learned null caption `[L, captionChannels]`, when present. */
  readonly nullCaption: Float32Array | null;
}

export type ModelWeights = DitWeights | PixartWeights;

interface KeySpec {
  readonly key: string;
  readonly shape: readonly number[];
  /** Present in some checkpoints, never needed (buffers the model recomputes). */
  readonly optional?: boolean;
}

const MARKERS: Record<ModelConfig['family'], Record<Layout, readonly string[]>> = {
  dit: { original: ['x_embedder.proj.weight', 'y_embedder.embedding_table.weight'], diffusers: ['pos_embed.proj.weight', 'proj_out_1.weight'] },
  pixart: { original: ['x_embedder.proj.weight', 't_block.1.weight'], diffusers: ['pos_embed.proj.weight', 'adaln_single.linear.weight'] },
};

/** Which layout the keys are in, or a {@link ModelKeysError} naming what each layout starts with. */
export function detectLayout(family: ModelConfig['family'], keys: ReadonlySet<string> | ReadonlyMap<string, unknown>): Layout {
  for (const layout of ['original', 'diffusers'] as const) {
    if (MARKERS[family][layout].every((k) => keys.has(k))) return layout;
  }
  const sample = [...keys.keys()].slice(0, 8);
  throw new ModelKeysError(
    `Expected a ${family === 'dit' ? 'DiT' : 'PixArt-Sigma'} checkpoint in the original layout (keys ${MARKERS[family].original.join(', ')}) ` +
      `or the diffusers layout (keys ${MARKERS[family].diffusers.join(', ')}) but received ${keys.size} keys starting ${sample.join(', ')}${keys.size > 8 ? ', …' : ''}`,
  );
}

/** The family a checkpoint belongs to, from its keys (undefined when none matches). */
export function detectFamily(keys: ReadonlyMap<string, unknown>): ModelConfig['family'] | undefined {
  for (const family of ['pixart', 'dit'] as const) {
    for (const layout of ['original', 'diffusers'] as const) if (MARKERS[family][layout].every((k) => keys.has(k))) return family;
  }
  return undefined;
}

const lin = (prefix: string, out: number, inp: number): KeySpec[] => [
  { key: `${prefix}.weight`, shape: [out, inp] },
  { key: `${prefix}.bias`, shape: [out] },
];

/** Every key the layout has for this config, with its shape. */
export function expectedKeys(config: ModelConfig, layout: Layout): KeySpec[] {
  const C = config.hiddenSize;
  const M = mlpHidden(config);
  const p = config.patchSize;
  const out = outChannels(config);
  const keys: KeySpec[] = [];
  const orig = layout === 'original';
  keys.push({ key: orig ? 'x_embedder.proj.weight' : 'pos_embed.proj.weight', shape: [C, config.inChannels, p, p] });
  keys.push({ key: orig ? 'x_embedder.proj.bias' : 'pos_embed.proj.bias', shape: [C] });
  if (config.family === 'dit') {
    const L = (config.inputSize / p) ** 2;
    if (orig) {
      keys.push({ key: 'pos_embed', shape: [1, L, C], optional: true });
      keys.push(...lin('t_embedder.mlp.0', C, 256), ...lin('t_embedder.mlp.2', C, C));
      keys.push({ key: 'y_embedder.embedding_table.weight', shape: [config.numClasses + 1, C] });
      for (let i = 0; i < config.depth; i++) {
        const b = `blocks.${i}`;
        keys.push(...lin(`${b}.attn.qkv`, 3 * C, C), ...lin(`${b}.attn.proj`, C, C), ...lin(`${b}.mlp.fc1`, M, C), ...lin(`${b}.mlp.fc2`, C, M));
        keys.push(...lin(`${b}.adaLN_modulation.1`, 6 * C, C));
      }
      keys.push(...lin('final_layer.linear', p * p * out, C), ...lin('final_layer.adaLN_modulation.1', 2 * C, C));
    } else {
      keys.push({ key: 'pos_embed.pos_embed', shape: [1, L, C], optional: true });
      for (let i = 0; i < config.depth; i++) {
        const b = `transformer_blocks.${i}`;
        keys.push(...lin(`${b}.norm1.emb.timestep_embedder.linear_1`, C, 256), ...lin(`${b}.norm1.emb.timestep_embedder.linear_2`, C, C));
        keys.push({ key: `${b}.norm1.emb.class_embedder.embedding_table.weight`, shape: [config.numClasses + 1, C] });
        keys.push(...lin(`${b}.norm1.linear`, 6 * C, C));
        keys.push(...lin(`${b}.attn1.to_q`, C, C), ...lin(`${b}.attn1.to_k`, C, C), ...lin(`${b}.attn1.to_v`, C, C), ...lin(`${b}.attn1.to_out.0`, C, C));
        keys.push(...lin(`${b}.ff.net.0.proj`, M, C), ...lin(`${b}.ff.net.2`, C, M));
      }
      keys.push(...lin('proj_out_1', 2 * C, C), ...lin('proj_out_2', p * p * out, C));
    }
    return keys;
  }
  const cap = config.captionChannels;
  if (orig) {
    keys.push({ key: 'pos_embed', shape: [1, -1, C], optional: true });
    keys.push({ key: 'y_embedder.y_embedding', shape: [-1, cap], optional: true });
    keys.push(...lin('t_embedder.mlp.0', C, 256), ...lin('t_embedder.mlp.2', C, C), ...lin('t_block.1', 6 * C, C));
    keys.push(...lin('y_embedder.y_proj.fc1', C, cap), ...lin('y_embedder.y_proj.fc2', C, C));
    for (let i = 0; i < config.depth; i++) {
      const b = `blocks.${i}`;
      keys.push({ key: `${b}.scale_shift_table`, shape: [6, C] });
      keys.push(...lin(`${b}.attn.qkv`, 3 * C, C), ...lin(`${b}.attn.proj`, C, C));
      keys.push(...lin(`${b}.cross_attn.q_linear`, C, C), ...lin(`${b}.cross_attn.kv_linear`, 2 * C, C), ...lin(`${b}.cross_attn.proj`, C, C));
      keys.push(...lin(`${b}.mlp.fc1`, M, C), ...lin(`${b}.mlp.fc2`, C, M));
    }
    keys.push({ key: 'final_layer.scale_shift_table', shape: [2, C] }, ...lin('final_layer.linear', p * p * out, C));
  } else {
    keys.push({ key: 'pos_embed.pos_embed', shape: [1, -1, C], optional: true });
    keys.push(...lin('adaln_single.emb.timestep_embedder.linear_1', C, 256), ...lin('adaln_single.emb.timestep_embedder.linear_2', C, C));
    keys.push(...lin('adaln_single.linear', 6 * C, C), ...lin('caption_projection.linear_1', C, cap), ...lin('caption_projection.linear_2', C, C));
    for (let i = 0; i < config.depth; i++) {
      const b = `transformer_blocks.${i}`;
      keys.push({ key: `${b}.scale_shift_table`, shape: [6, C] });
      for (const a of ['attn1', 'attn2']) keys.push(...lin(`${b}.${a}.to_q`, C, C), ...lin(`${b}.${a}.to_k`, C, C), ...lin(`${b}.${a}.to_v`, C, C), ...lin(`${b}.${a}.to_out.0`, C, C));
      keys.push(...lin(`${b}.ff.net.0.proj`, M, C), ...lin(`${b}.ff.net.2`, C, M));
    }
    keys.push({ key: 'scale_shift_table', shape: [2, C] }, ...lin('proj_out', p * p * out, C));
  }
  return keys;
}

/** The expected keys written compactly (block indices folded into `{0..n-1}`). */
export function describeExpectedKeys(specs: readonly KeySpec[]): string {
  const seen = new Map<string, string>();
  for (const s of specs) {
    const m = /^(transformer_blocks|blocks)\.(\d+)\./.exec(s.key);
    const key = m ? s.key.replace(/^(transformer_blocks|blocks)\.\d+\./, `$1.{i}.`) : s.key;
    if (!seen.has(key)) seen.set(key, `${key} [${s.shape.map((d) => (d < 0 ? '*' : d)).join(', ')}]${s.optional ? ' (optional)' : ''}`);
  }
  return [...seen.values()].join('\n  ');
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/** Checks keys, shapes and dtypes of a checkpoint against the layout; throws one error listing every problem of a kind. */
export function checkCheckpoint(config: ModelConfig, layout: Layout, tensors: ReadonlyMap<string, CheckpointTensor>): void {
  const specs = expectedKeys(config, layout);
  const byKey = new Map(specs.map((s) => [s.key, s]));
  const missing = specs.filter((s) => !s.optional && !tensors.has(s.key)).map((s) => s.key);
  const unexpected = [...tensors.keys()].filter((k) => !byKey.has(k));
  const family = config.family === 'dit' ? 'DiT' : 'PixArt-Sigma';
  if (missing.length > 0 || unexpected.length > 0) {
    const list = (xs: string[]): string => (xs.length > 12 ? `${xs.slice(0, 12).join(', ')}, … (${xs.length} in all)` : xs.join(', '));
    const parts = [
      missing.length ? `missing ${missing.length} key(s): ${list(missing)}` : '',
      unexpected.length ? `unexpected ${unexpected.length} key(s): ${list(unexpected)}` : '',
    ].filter(Boolean);
    throw new ModelKeysError(
      `The checkpoint does not match the ${family} ${layout} layout for depth ${config.depth}, hidden ${config.hiddenSize}: ${parts.join('; ')}.\nExpected keys:\n  ${describeExpectedKeys(specs)}`,
      missing,
      unexpected,
    );
  }
  const badDtype: string[] = [];
  const badShape: string[] = [];
  for (const [key, t] of tensors) {
    const spec = byKey.get(key)!;
    if (!FLOAT_DTYPES.has(t.dtype)) badDtype.push(`${key} is ${t.dtype}`);
    const ok = t.shape.length === spec.shape.length && spec.shape.every((d, i) => d < 0 || d === t.shape[i]);
    if (!ok) badShape.push(`${key}: expected [${spec.shape.map((d) => (d < 0 ? '*' : d)).join(', ')}] but received [${t.shape.join(', ')}]`);
  }
  if (badDtype.length) throw new ModelDtypeError(`Expected float tensors (F32, F16, BF16 or F64) but ${badDtype.join('; ')}`);
  if (badShape.length) throw new ShapeMismatchError(`The ${family} checkpoint's shapes do not match the config (depth ${config.depth}, hidden ${config.hiddenSize}):\n  ${badShape.join('\n  ')}`);
}

function concatRows(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

/**
 * Checks a checkpoint (see {@link checkCheckpoint}) and turns it into the family's canonical weights
 * (original-layout semantics: fused qkv and kv, one copy of DiT's embedders).
 */
export function canonicalWeights(config: DitConfig, tensors: ReadonlyMap<string, CheckpointTensor>): DitWeights;
export function canonicalWeights(config: PixartConfig, tensors: ReadonlyMap<string, CheckpointTensor>): PixartWeights;
export function canonicalWeights(config: ModelConfig, tensors: ReadonlyMap<string, CheckpointTensor>): ModelWeights;
export function canonicalWeights(config: ModelConfig, tensors: ReadonlyMap<string, CheckpointTensor>): ModelWeights {
  const layout = detectLayout(config.family, tensors);
  checkCheckpoint(config, layout, tensors);
  // F32 tensors are shared (views of the checkpoint's bytes), others widened: the graphs copy what they keep.
  const get = (key: string): Float32Array => asFloat32(tensors.get(key)!);
  const L = (prefix: string | readonly string[], out: number, inp: number): LinearWeights => {
    const prefixes = typeof prefix === 'string' ? [prefix] : prefix;
    return {
      weight: prefixes.length === 1 ? get(`${prefixes[0]}.weight`) : concatRows(prefixes.map((p) => get(`${p}.weight`))),
      bias: prefixes.length === 1 ? get(`${prefixes[0]}.bias`) : concatRows(prefixes.map((p) => get(`${p}.bias`))),
      inFeatures: inp,
      outFeatures: out,
    };
  };
  const C = config.hiddenSize;
  const M = mlpHidden(config);
  const p = config.patchSize;
  const finalOut = p * p * outChannels(config);
  const orig = layout === 'original';
  const patchWeight = get(orig ? 'x_embedder.proj.weight' : 'pos_embed.proj.weight');
  const patchBias = get(orig ? 'x_embedder.proj.bias' : 'pos_embed.proj.bias');
  const blocks: BlockWeights[] = [];
  if (config.family === 'dit') {
    for (let i = 0; i < config.depth; i++) {
      if (orig) {
        const b = `blocks.${i}`;
        blocks.push({ qkv: L(`${b}.attn.qkv`, 3 * C, C), proj: L(`${b}.attn.proj`, C, C), fc1: L(`${b}.mlp.fc1`, M, C), fc2: L(`${b}.mlp.fc2`, C, M), ada: L(`${b}.adaLN_modulation.1`, 6 * C, C) });
      } else {
        const b = `transformer_blocks.${i}`;
        blocks.push({
          qkv: L([`${b}.attn1.to_q`, `${b}.attn1.to_k`, `${b}.attn1.to_v`], 3 * C, C),
          proj: L(`${b}.attn1.to_out.0`, C, C),
          fc1: L(`${b}.ff.net.0.proj`, M, C),
          fc2: L(`${b}.ff.net.2`, C, M),
          ada: L(`${b}.norm1.linear`, 6 * C, C),
        });
      }
    }
    let t1: LinearWeights, t2: LinearWeights, classTable: Float32Array;
    if (orig) {
      t1 = L('t_embedder.mlp.0', C, 256);
      t2 = L('t_embedder.mlp.2', C, C);
      classTable = get('y_embedder.embedding_table.weight');
    } else {
      const e = (i: number): string => `transformer_blocks.${i}.norm1.emb`;
      t1 = L(`${e(0)}.timestep_embedder.linear_1`, C, 256);
      t2 = L(`${e(0)}.timestep_embedder.linear_2`, C, C);
      classTable = get(`${e(0)}.class_embedder.embedding_table.weight`);
      // diffusers copies the embedders into every block; the model has one, so the copies must agree.
      for (let i = 1; i < config.depth; i++) {
        for (const k of ['timestep_embedder.linear_1.weight', 'timestep_embedder.linear_1.bias', 'timestep_embedder.linear_2.weight', 'timestep_embedder.linear_2.bias', 'class_embedder.embedding_table.weight']) {
          if (!sameValues(get(`${e(0)}.${k}`), get(`${e(i)}.${k}`))) {
            throw new ModelConfigError(`Expected ${e(i)}.${k} to equal block 0's copy (diffusers DiT repeats the embedders in every block) but it differs`);
          }
        }
      }
    }
    return Object.freeze({
      family: 'dit',
      layout,
      patchWeight,
      patchBias,
      t1,
      t2,
      classTable,
      blocks,
      finalAda: orig ? L('final_layer.adaLN_modulation.1', 2 * C, C) : L('proj_out_1', 2 * C, C),
      finalLinear: orig ? L('final_layer.linear', finalOut, C) : L('proj_out_2', finalOut, C),
    });
  }
  const cap = config.captionChannels;
  for (let i = 0; i < config.depth; i++) {
    if (orig) {
      const b = `blocks.${i}`;
      blocks.push({
        table: get(`${b}.scale_shift_table`),
        qkv: L(`${b}.attn.qkv`, 3 * C, C),
        proj: L(`${b}.attn.proj`, C, C),
        crossQ: L(`${b}.cross_attn.q_linear`, C, C),
        crossKv: L(`${b}.cross_attn.kv_linear`, 2 * C, C),
        crossProj: L(`${b}.cross_attn.proj`, C, C),
        fc1: L(`${b}.mlp.fc1`, M, C),
        fc2: L(`${b}.mlp.fc2`, C, M),
      });
    } else {
      const b = `transformer_blocks.${i}`;
      blocks.push({
        table: get(`${b}.scale_shift_table`),
        qkv: L([`${b}.attn1.to_q`, `${b}.attn1.to_k`, `${b}.attn1.to_v`], 3 * C, C),
        proj: L(`${b}.attn1.to_out.0`, C, C),
        crossQ: L(`${b}.attn2.to_q`, C, C),
        crossKv: L([`${b}.attn2.to_k`, `${b}.attn2.to_v`], 2 * C, C),
        crossProj: L(`${b}.attn2.to_out.0`, C, C),
        fc1: L(`${b}.ff.net.0.proj`, M, C),
        fc2: L(`${b}.ff.net.2`, C, M),
      });
    }
  }
  return Object.freeze({
    family: 'pixart',
    layout,
    patchWeight,
    patchBias,
    t1: orig ? L('t_embedder.mlp.0', C, 256) : L('adaln_single.emb.timestep_embedder.linear_1', C, 256),
    t2: orig ? L('t_embedder.mlp.2', C, C) : L('adaln_single.emb.timestep_embedder.linear_2', C, C),
    tBlock: orig ? L('t_block.1', 6 * C, C) : L('adaln_single.linear', 6 * C, C),
    cap1: orig ? L('y_embedder.y_proj.fc1', C, cap) : L('caption_projection.linear_1', C, cap),
    cap2: orig ? L('y_embedder.y_proj.fc2', C, C) : L('caption_projection.linear_2', C, C),
    blocks,
    finalTable: get(orig ? 'final_layer.scale_shift_table' : 'scale_shift_table'),
    finalLinear: orig ? L('final_layer.linear', finalOut, C) : L('proj_out', finalOut, C),
    nullCaption: orig && tensors.has('y_embedder.y_embedding') ? get('y_embedder.y_embedding') : null,
  });
}
