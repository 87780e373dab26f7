import { type CheckpointTensor, asFloat32 } from '@ditfa/checkpoint';
import { ShapeMismatchError } from '@ditfa/core';
import { ModelDtypeError, ModelKeysError } from '@ditfa/models-dit';
import type { LinearWeights } from '@ditfa/ort-graph';
import { type OpenSoraConfig, type OpenSoraVersion, VERSION_NAMES, headDim, mlpHidden, outChannels } from './config.js';

/**
 * Checkpoints of STDiT2 and STDiT3 with the official key names (shared/docs/keys/
 * models_keys_opensora_stdit123.txt): detected from the keys, checked in full (missing, unexpected,
 * shapes, dtypes) and turned into canonical weights.
 */

export interface SelfAttentionWeights {
  /** Fused `[3C, C]`: q, k, v thirds. */
  readonly qkv: LinearWeights;
  /** RMSNorm weights `[head_dim]` (qk-norm), or null. */
  readonly qNorm: Float32Array | null;
  readonly kNorm: Float32Array | null;
  readonly proj: LinearWeights;
}

export interface CrossAttentionWeights {
  readonly q: LinearWeights;
  /** `[2C, C]`: rows 0…C−1 = k, C…2C−1 = v. */
  readonly kv: LinearWeights;
  readonly proj: LinearWeights;
}

export interface MlpWeights {
  readonly fc1: LinearWeights;
  readonly fc2: LinearWeights;
}

/** One STDiT3Block (spatial or temporal): its 6-way `scale_shift_table`, self-attention, cross-attention and MLP. */
export interface Stdit3BlockWeights {
  readonly table: Float32Array;
  readonly attn: SelfAttentionWeights;
  readonly cross: CrossAttentionWeights;
  readonly mlp: MlpWeights;
}

/** One STDiT2Block: spatial attention (`attn`, `scale_shift_table [6, C]`), temporal attention (`attn_temp`, `scale_shift_table_temporal [3, C]`), cross-attention, MLP. */
export interface Stdit2BlockWeights {
  readonly table: Float32Array;
  readonly tableTemporal: Float32Array;
  readonly attn: SelfAttentionWeights;
  readonly attnTemp: SelfAttentionWeights;
  readonly cross: CrossAttentionWeights;
  readonly mlp: MlpWeights;
}

interface CommonWeights {
  /** `Conv3d` weight `[C, in, pt, ph, pw]`. */
  readonly patchWeight: Float32Array;
  readonly patchBias: Float32Array;
  readonly t1: LinearWeights;
  readonly t2: LinearWeights;
  /** `t_block`: `Linear(C → 6C)` on SiLU. */
  readonly tBlock: LinearWeights;
  readonly fps1: LinearWeights;
  readonly fps2: LinearWeights;
  readonly cap1: LinearWeights;
  readonly cap2: LinearWeights;
  /** The learned null caption `y_embedder.y_embedding [modelMaxLength, captionChannels]`, when present. */
  readonly nullCaption: Float32Array | null;
  /** Rotary frequencies `[head_dim / 2]` (`rope.freqs`, or the formula's when the checkpoint has none). */
  readonly ropeFreqs: Float32Array;
  readonly finalTable: Float32Array;
  readonly finalLinear: LinearWeights;
}

export interface Stdit3Weights extends CommonWeights {
  readonly version: 'stdit3';
  readonly spatial: readonly Stdit3BlockWeights[];
  readonly temporal: readonly Stdit3BlockWeights[];
}

export interface Stdit2Weights extends CommonWeights {
  readonly version: 'stdit2';
  readonly tBlockTemp: LinearWeights;
  readonly csize1: LinearWeights;
  readonly csize2: LinearWeights;
  readonly ar1: LinearWeights;
  readonly ar2: LinearWeights;
  readonly fl1: LinearWeights;
  readonly fl2: LinearWeights;
  readonly blocks: readonly Stdit2BlockWeights[];
}

export type OpenSoraWeights = Stdit2Weights | Stdit3Weights;

export interface KeySpec {
  readonly key: string;
  readonly shape: readonly number[];
  /** Present in the released files, recomputed when absent. */
  readonly optional?: boolean;
}

/**
 * The version a checkpoint's keys belong to: `stdit3` (`spatial_blocks.*`), `stdit2` (`blocks.*.attn_temp`
 * with `t_block_temp`), `stdit` for Open-Sora v1.0 (not supported here), or undefined.
 */
export function detectVersion(keys: ReadonlyMap<string, unknown> | ReadonlySet<string>): OpenSoraVersion | 'stdit' | undefined {
  if (keys.has('spatial_blocks.0.attn.qkv.weight')) return 'stdit3';
  if (keys.has('blocks.0.attn_temp.qkv.weight')) return keys.has('t_block_temp.1.weight') ? 'stdit2' : 'stdit';
  return undefined;
}

const lin = (prefix: string, out: number, inp: number): KeySpec[] => [
  { key: `${prefix}.weight`, shape: [out, inp] },
  { key: `${prefix}.bias`, shape: [out] },
];

function attnKeys(prefix: string, C: number, hd: number, qkNorm: boolean): KeySpec[] {
  return [
    ...lin(`${prefix}.qkv`, 3 * C, C),
    ...(qkNorm ? [{ key: `${prefix}.q_norm.weight`, shape: [hd] }, { key: `${prefix}.k_norm.weight`, shape: [hd] }] : []),
    ...lin(`${prefix}.proj`, C, C),
  ];
}

/** Every key of the version's checkpoint for this config, with its shape. */
export function expectedKeys(config: OpenSoraConfig): KeySpec[] {
  const C = config.hiddenSize;
  const M = mlpHidden(config);
  const hd = headDim(config);
  const [pt, ph, pw] = config.patchSize;
  const cap = config.captionChannels;
  const keys: KeySpec[] = [
    { key: 'rope.freqs', shape: [hd / 2], optional: true },
    { key: 'x_embedder.proj.weight', shape: [C, config.inChannels, pt, ph, pw] },
    { key: 'x_embedder.proj.bias', shape: [C] },
    ...lin('t_embedder.mlp.0', C, 256),
    ...lin('t_embedder.mlp.2', C, C),
    ...lin('t_block.1', 6 * C, C),
    { key: 'y_embedder.y_embedding', shape: [config.modelMaxLength, cap], optional: true },
    ...lin('y_embedder.y_proj.fc1', C, cap),
    ...lin('y_embedder.y_proj.fc2', C, C),
    ...lin('fps_embedder.mlp.0', C, 256),
    ...lin('fps_embedder.mlp.2', C, C),
  ];
  const common = (b: string): KeySpec[] => [
    { key: `${b}.scale_shift_table`, shape: [6, C] },
    ...attnKeys(`${b}.attn`, C, hd, config.qkNorm),
    ...lin(`${b}.cross_attn.q_linear`, C, C),
    ...lin(`${b}.cross_attn.kv_linear`, 2 * C, C),
    ...lin(`${b}.cross_attn.proj`, C, C),
    ...lin(`${b}.mlp.fc1`, M, C),
    ...lin(`${b}.mlp.fc2`, C, M),
  ];
  if (config.version === 'stdit3') {
    for (let i = 0; i < config.depth; i++) keys.push(...common(`spatial_blocks.${i}`));
    for (let i = 0; i < config.depth; i++) keys.push(...common(`temporal_blocks.${i}`));
  } else {
    const third = C / 3;
    keys.push(...lin('t_block_temp.1', 3 * C, C));
    keys.push(...lin('csize_embedder.mlp.0', third, 256), ...lin('csize_embedder.mlp.2', third, third));
    keys.push(...lin('ar_embedder.mlp.0', third, 256), ...lin('ar_embedder.mlp.2', third, third));
    keys.push(...lin('fl_embedder.mlp.0', C, 256), ...lin('fl_embedder.mlp.2', C, C));
    for (let i = 0; i < config.depth; i++) {
      const b = `blocks.${i}`;
      keys.push(...common(b), { key: `${b}.scale_shift_table_temporal`, shape: [3, C] }, ...attnKeys(`${b}.attn_temp`, C, hd, config.qkNorm));
    }
  }
  keys.push({ key: 'final_layer.scale_shift_table', shape: [2, C] }, ...lin('final_layer.linear', pt * ph * pw * outChannels(config), C));
  return keys;
}

/** The expected keys written compactly (block indices folded into `{i}`), one per line. */
export function describeExpectedKeys(specs: readonly KeySpec[]): string {
  const seen = new Map<string, string>();
  for (const s of specs) {
    const key = s.key.replace(/^(spatial_blocks|temporal_blocks|blocks)\.\d+\./, '$1.{i}.');
    if (!seen.has(key)) seen.set(key, `${key} [${s.shape.join(', ')}]${s.optional ? ' (optional)' : ''}`);
  }
  return [...seen.values()].join('\n  ');
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);
const SHORT: Record<OpenSoraVersion | 'stdit', string> = { stdit: 'STDiT (Open-Sora v1.0)', ...VERSION_NAMES };

/**
 * Checks keys, shapes and dtypes against the config. A checkpoint of another version, or of another
 * depth or size, throws `ModelKeysError` (`ERR_DITFA_MODEL_KEYS`) with the missing and unexpected keys
 * and every expected key with its shape; wrong shapes throw core's `ShapeMismatchError` listing each
 * one; non-float tensors `ModelDtypeError`.
 */
export function checkCheckpoint(config: OpenSoraConfig, tensors: ReadonlyMap<string, CheckpointTensor>): void {
  const specs = expectedKeys(config);
  const byKey = new Map(specs.map((s) => [s.key, s]));
  const missing = specs.filter((s) => !s.optional && !tensors.has(s.key)).map((s) => s.key);
  const unexpected = [...tensors.keys()].filter((k) => !byKey.has(k));
  const describe = `${VERSION_NAMES[config.version]} with depth ${config.depth}, hidden ${config.hiddenSize}, heads ${config.numHeads}`;
  const found = detectVersion(tensors);
  if (missing.length > 0 || unexpected.length > 0) {
    const list = (xs: string[]): string => (xs.length > 12 ? `${xs.slice(0, 12).join(', ')}, … (${xs.length} in all)` : xs.join(', '));
    const parts = [
      found !== undefined && found !== config.version ? `its keys are those of an ${SHORT[found]} checkpoint` : '',
      missing.length ? `missing ${missing.length} key(s): ${list(missing)}` : '',
      unexpected.length ? `unexpected ${unexpected.length} key(s): ${list(unexpected)}` : '',
    ].filter(Boolean);
    throw new ModelKeysError(`Expected a checkpoint of ${describe} but ${parts.join('; ')}.\nExpected keys:\n  ${describeExpectedKeys(specs)}`, missing, unexpected);
  }
  const badDtype: string[] = [];
  const badShape: string[] = [];
  for (const [key, t] of tensors) {
    const spec = byKey.get(key)!;
    if (!FLOAT_DTYPES.has(t.dtype)) badDtype.push(`${key} is ${t.dtype}`);
    if (t.shape.length !== spec.shape.length || spec.shape.some((d, i) => d !== t.shape[i])) badShape.push(`${key}: expected [${spec.shape.join(', ')}] but received [${t.shape.join(', ')}]`);
  }
  if (badDtype.length) throw new ModelDtypeError(`Expected float tensors (F32, F16, BF16 or F64) but ${badDtype.join('; ')}`);
  if (badShape.length) throw new ShapeMismatchError(`Expected the shapes of ${describe} but:\n  ${badShape.join('\n  ')}`);
}

/** Rotary frequencies `1 / 10000^(2j / head_dim)` in float32, as `RotaryEmbedding(dim=head_dim)` makes them. */
export function ropeFrequencies(hd: number): Float32Array {
  return Float32Array.from({ length: hd / 2 }, (_, j) => Math.fround(1 / Math.fround(10000 ** Math.fround((2 * j) / hd))));
}

/** Checks a checkpoint (see {@link checkCheckpoint}) and returns its canonical weights (F32 tensors shared, others widened). */
export function canonicalWeights(config: OpenSoraConfig, tensors: ReadonlyMap<string, CheckpointTensor>): OpenSoraWeights {
  checkCheckpoint(config, tensors);
  const get = (key: string): Float32Array => asFloat32(tensors.get(key)!);
  const L = (prefix: string, out: number, inp: number): LinearWeights => ({ weight: get(`${prefix}.weight`), bias: get(`${prefix}.bias`), inFeatures: inp, outFeatures: out });
  const C = config.hiddenSize;
  const M = mlpHidden(config);
  const [pt, ph, pw] = config.patchSize;
  const attn = (p: string): SelfAttentionWeights => ({
    qkv: L(`${p}.qkv`, 3 * C, C),
    qNorm: config.qkNorm ? get(`${p}.q_norm.weight`) : null,
    kNorm: config.qkNorm ? get(`${p}.k_norm.weight`) : null,
    proj: L(`${p}.proj`, C, C),
  });
  const cross = (b: string): CrossAttentionWeights => ({ q: L(`${b}.cross_attn.q_linear`, C, C), kv: L(`${b}.cross_attn.kv_linear`, 2 * C, C), proj: L(`${b}.cross_attn.proj`, C, C) });
  const mlp = (b: string): MlpWeights => ({ fc1: L(`${b}.mlp.fc1`, M, C), fc2: L(`${b}.mlp.fc2`, C, M) });
  const common: CommonWeights = {
    patchWeight: get('x_embedder.proj.weight'),
    patchBias: get('x_embedder.proj.bias'),
    t1: L('t_embedder.mlp.0', C, 256),
    t2: L('t_embedder.mlp.2', C, C),
    tBlock: L('t_block.1', 6 * C, C),
    fps1: L('fps_embedder.mlp.0', C, 256),
    fps2: L('fps_embedder.mlp.2', C, C),
    cap1: L('y_embedder.y_proj.fc1', C, config.captionChannels),
    cap2: L('y_embedder.y_proj.fc2', C, C),
    nullCaption: tensors.has('y_embedder.y_embedding') ? get('y_embedder.y_embedding') : null,
    ropeFreqs: tensors.has('rope.freqs') ? get('rope.freqs') : ropeFrequencies(headDim(config)),
    finalTable: get('final_layer.scale_shift_table'),
    finalLinear: L('final_layer.linear', pt * ph * pw * outChannels(config), C),
  };
  if (config.version === 'stdit3') {
    const block = (b: string): Stdit3BlockWeights => ({ table: get(`${b}.scale_shift_table`), attn: attn(`${b}.attn`), cross: cross(b), mlp: mlp(b) });
    return Object.freeze({
      ...common,
      version: 'stdit3',
      spatial: Array.from({ length: config.depth }, (_, i) => block(`spatial_blocks.${i}`)),
      temporal: Array.from({ length: config.depth }, (_, i) => block(`temporal_blocks.${i}`)),
    });
  }
  const third = C / 3;
  return Object.freeze({
    ...common,
    version: 'stdit2',
    tBlockTemp: L('t_block_temp.1', 3 * C, C),
    csize1: L('csize_embedder.mlp.0', third, 256),
    csize2: L('csize_embedder.mlp.2', third, third),
    ar1: L('ar_embedder.mlp.0', third, 256),
    ar2: L('ar_embedder.mlp.2', third, third),
    fl1: L('fl_embedder.mlp.0', C, 256),
    fl2: L('fl_embedder.mlp.2', C, C),
    blocks: Array.from({ length: config.depth }, (_, i) => {
      const b = `blocks.${i}`;
      return { table: get(`${b}.scale_shift_table`), tableTemporal: get(`${b}.scale_shift_table_temporal`), attn: attn(`${b}.attn`), attnTemp: attn(`${b}.attn_temp`), cross: cross(b), mlp: mlp(b) };
    }),
  });
}
