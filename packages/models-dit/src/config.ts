import { describeValue } from '@ditfa/core';
import { ModelConfigError } from './errors.js';

/**
 * Model configurations. Everything is generic (channels, sizes, depth…), so the same adapter runs
 * DiT-XL/2, tiny test models and the pixel-space Fashion-MNIST DiT (1 channel in, 2 out, 32×32).
 */

export interface DitConfig {
  readonly family: 'dit';
  /** Latent (or pixel) side the model was trained at; `pos_embed` is built for this grid. */
  readonly inputSize: number;
  readonly patchSize: number;
  readonly inChannels: number;
  readonly hiddenSize: number;
  readonly depth: number;
  readonly numHeads: number;
  readonly mlpRatio: number;
  /** Class count without the null class; the label table has `numClasses + 1` rows (id `numClasses` = null). */
  readonly numClasses: number;
  /** Output channels are `2·inChannels` (ε, then variance values) when true. */
  readonly learnSigma: boolean;
}

export interface PixartConfig {
  readonly family: 'pixart';
  /** Latent side of the config (`sample_size`): the position embedding's base size is `sampleSize / patchSize`. */
  readonly sampleSize: number;
  readonly patchSize: number;
  readonly inChannels: number;
  readonly hiddenSize: number;
  readonly depth: number;
  readonly numHeads: number;
  readonly mlpRatio: number;
  /** Channels of the caption embeddings (T5 XXL: 4096). */
  readonly captionChannels: number;
  /** Position-embedding interpolation scale (1024-MS: 2, 2K: 4). */
  readonly interpolationScale: number;
  readonly learnSigma: boolean;
}

export type ModelConfig = DitConfig | PixartConfig;

export function outChannels(c: ModelConfig): number {
  return c.learnSigma ? 2 * c.inChannels : c.inChannels;
}

export function mlpHidden(c: ModelConfig): number {
  return Math.round(c.hiddenSize * c.mlpRatio);
}

/** A short architecture string for plan fingerprints. */
export function architectureOf(c: ModelConfig): string {
  const common = `depth=${c.depth} hidden=${c.hiddenSize} heads=${c.numHeads} patch=${c.patchSize} in=${c.inChannels} out=${outChannels(c)}`;
  return c.family === 'dit' ? `dit ${common} classes=${c.numClasses}` : `pixart-sigma ${common} caption=${c.captionChannels} base=${c.sampleSize / c.patchSize} interp=${c.interpolationScale}`;
}

function int(name: string, v: unknown, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ModelConfigError(`Expected ${name} to be an integer >= ${min} but received ${describeValue(v)}`);
  }
  return v;
}

function num(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ModelConfigError(`Expected ${name} to be a positive number but received ${describeValue(v)}`);
  return v;
}

function checkCommon(c: ModelConfig): void {
  if (c.hiddenSize % c.numHeads !== 0) {
    throw new ModelConfigError(`Expected hiddenSize ${c.hiddenSize} to be divisible by numHeads but received numHeads ${c.numHeads}`);
  }
  if (c.hiddenSize % 4 !== 0) throw new ModelConfigError(`Expected hiddenSize to be a multiple of 4 (2-D sin-cos embedding) but received ${c.hiddenSize}`);
}

/** Validates a DiT config (throws {@link ModelConfigError}). */
export function ditConfig(c: Omit<DitConfig, 'family'> & { family?: 'dit' }): DitConfig {
  const out: DitConfig = {
    family: 'dit',
    inputSize: int('inputSize', c.inputSize),
    patchSize: int('patchSize', c.patchSize),
    inChannels: int('inChannels', c.inChannels),
    hiddenSize: int('hiddenSize', c.hiddenSize),
    depth: int('depth', c.depth),
    numHeads: int('numHeads', c.numHeads),
    mlpRatio: num('mlpRatio', c.mlpRatio),
    numClasses: int('numClasses', c.numClasses),
    learnSigma: Boolean(c.learnSigma),
  };
  if (out.inputSize % out.patchSize !== 0) throw new ModelConfigError(`Expected inputSize ${out.inputSize} to be a multiple of patchSize ${out.patchSize}`);
  checkCommon(out);
  return Object.freeze(out);
}

/** Validates a PixArt-Sigma config (throws {@link ModelConfigError}). */
export function pixartConfig(c: Omit<PixartConfig, 'family'> & { family?: 'pixart' }): PixartConfig {
  const out: PixartConfig = {
    family: 'pixart',
    sampleSize: int('sampleSize', c.sampleSize),
    patchSize: int('patchSize', c.patchSize),
    inChannels: int('inChannels', c.inChannels),
    hiddenSize: int('hiddenSize', c.hiddenSize),
    depth: int('depth', c.depth),
    numHeads: int('numHeads', c.numHeads),
    mlpRatio: num('mlpRatio', c.mlpRatio),
    captionChannels: int('captionChannels', c.captionChannels),
    interpolationScale: num('interpolationScale', c.interpolationScale),
    learnSigma: Boolean(c.learnSigma),
  };
  checkCommon(out);
  return Object.freeze(out);
}

/**
 * Reads a `config.json`: DiT original names (`input_size`, `hidden_size`, `depth`, `num_heads`,
 * `num_classes`, `learn_sigma` — what tools/train_dit.py writes), diffusers `DiTTransformer2DModel`
 * or `PixArtTransformer2DModel` names (`sample_size`, `num_layers`, `num_attention_heads`,
 * `attention_head_dim`, `out_channels`, `caption_channels`, `interpolation_scale`).
 */
export function configFromJson(json: Record<string, unknown>): ModelConfig {
  const j = json as Record<string, number | boolean | string | undefined>;
  const isPixart = j.caption_channels !== undefined || j.norm_type === 'ada_norm_single' || j._class_name === 'PixArtTransformer2DModel';
  const diffusers = j.num_layers !== undefined;
  const inChannels = (j.in_channels ?? 4) as number;
  const learnSigma = diffusers ? (j.out_channels ?? inChannels) === inChannels * 2 : (j.learn_sigma ?? j.pred_sigma ?? true) === true;
  const numHeads = (diffusers ? j.num_attention_heads : j.num_heads) as number;
  const hiddenSize = (diffusers ? (j.num_attention_heads as number) * (j.attention_head_dim as number) : j.hidden_size) as number;
  const depth = (diffusers ? j.num_layers : j.depth) as number;
  const patchSize = (j.patch_size ?? 2) as number;
  if (isPixart) {
    return pixartConfig({
      sampleSize: (j.sample_size ?? j.input_size) as number,
      patchSize,
      inChannels,
      hiddenSize,
      depth,
      numHeads,
      mlpRatio: (j.mlp_ratio ?? 4) as number,
      captionChannels: j.caption_channels as number,
      interpolationScale: (j.interpolation_scale ?? j.pe_interpolation ?? 1) as number,
      learnSigma,
    });
  }
  return ditConfig({
    inputSize: (diffusers ? j.sample_size : j.input_size) as number,
    patchSize,
    inChannels,
    hiddenSize,
    depth,
    numHeads,
    mlpRatio: (j.mlp_ratio ?? 4) as number,
    numClasses: (diffusers ? j.num_embeds_ada_norm : j.num_classes) as number,
    learnSigma,
  });
}

/** DiT-XL/2 at 256 or 512 px (latent 32 or 64). */
export function ditXL2(imageSize: 256 | 512 = 512): DitConfig {
  return ditConfig({ inputSize: imageSize / 8, patchSize: 2, inChannels: 4, hiddenSize: 1152, depth: 28, numHeads: 16, mlpRatio: 4, numClasses: 1000, learnSigma: true });
}

/** PixArt-Σ XL/2 1024-MS (sample size 128, interpolation 2) or 2K-MS (256, 4). */
export function pixartSigmaXL2(imageSize: 1024 | 2048 = 1024): PixartConfig {
  return pixartConfig({
    sampleSize: imageSize / 8,
    patchSize: 2,
    inChannels: 4,
    hiddenSize: 1152,
    depth: 28,
    numHeads: 16,
    mlpRatio: 4,
    captionChannels: 4096,
    interpolationScale: imageSize / 512,
    learnSigma: true,
  });
}
