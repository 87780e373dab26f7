import { describeValue } from '@ditfa/core';
import { ModelConfigError } from '@ditfa/models-dit';

/**
 * Configurations of Open-Sora's STDiT2 (tag v1.1.0, `opensora/models/stdit/stdit2.py`) and STDiT3 (tag
 * v1.2.0, `stdit3.py`), with the fields of their `STDiT2Config` / `STDiT3Config` (and of the Hub's
 * `config.json`). Everything is generic, so the same adapter runs the released XL/2 models and tiny
 * test models.
 */

/** `stdit2`: Open-Sora v1.1 (one block list, spatial + temporal + cross per block); `stdit3`: v1.2 (spatial and temporal block lists). */
export type OpenSoraVersion = 'stdit2' | 'stdit3';

export interface OpenSoraConfig {
  readonly version: OpenSoraVersion;
  readonly inChannels: number;
  /** `(t, h, w)` patch of the `Conv3d` patch embedding; the released models use `(1, 2, 2)`. */
  readonly patchSize: readonly [number, number, number];
  readonly hiddenSize: number;
  /** Blocks (STDiT2) or spatial/temporal block pairs (STDiT3). */
  readonly depth: number;
  readonly numHeads: number;
  readonly mlpRatio: number;
  /** Channels of the caption embeddings (T5 v1.1 XXL: 4096). */
  readonly captionChannels: number;
  /** Caption tokens (the null caption `y_embedder.y_embedding` has this many rows): 200 (v1.1 stage 3), 300 (v1.2). */
  readonly modelMaxLength: number;
  /** Pixel side the position embedding's scale is relative to (`scale = sqrt(height·width) / inputSqSize`). */
  readonly inputSqSize: number;
  /** RMSNorm on q and k (`LlamaRMSNorm(head_dim)`); v1.1 applies it after the rotary embedding, v1.2 before. */
  readonly qkNorm: boolean;
  /** 8 output channels (prediction, then the sigma half) when true. */
  readonly predSigma: boolean;
}

/** The official version names. */
export const VERSION_NAMES: Readonly<Record<OpenSoraVersion, string>> = Object.freeze({ stdit2: 'STDiT2 (Open-Sora v1.1)', stdit3: 'STDiT3 (Open-Sora v1.2)' });

export function outChannels(c: OpenSoraConfig): number {
  return c.predSigma ? 2 * c.inChannels : c.inChannels;
}

export function mlpHidden(c: OpenSoraConfig): number {
  return Math.round(c.hiddenSize * c.mlpRatio);
}

export function headDim(c: OpenSoraConfig): number {
  return c.hiddenSize / c.numHeads;
}

/** A short architecture string for plan fingerprints. */
export function architectureOf(c: OpenSoraConfig): string {
  return (
    `${c.version} depth=${c.depth} hidden=${c.hiddenSize} heads=${c.numHeads} patch=${c.patchSize.join('x')} in=${c.inChannels} out=${outChannels(c)} ` +
    `caption=${c.captionChannels}x${c.modelMaxLength} sq=${c.inputSqSize}${c.qkNorm ? ' qknorm' : ''}`
  );
}

function int(name: string, v: unknown, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new ModelConfigError(`Expected ${name} to be an integer >= ${min} but received ${describeValue(v)}`);
  return v;
}

function positive(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ModelConfigError(`Expected ${name} to be a positive number but received ${describeValue(v)}`);
  return v;
}

/** Validates a configuration (throws `ModelConfigError`, `ERR_DITFA_MODEL_CONFIG`). */
export function openSoraConfig(c: OpenSoraConfig): OpenSoraConfig {
  if (c?.version !== 'stdit2' && c?.version !== 'stdit3') throw new ModelConfigError(`Expected version 'stdit2' or 'stdit3' but received ${describeValue(c?.version)}`);
  const p = c.patchSize;
  if (!Array.isArray(p) || p.length !== 3) throw new ModelConfigError(`Expected patchSize [t, h, w] but received ${describeValue(p)}`);
  const out: OpenSoraConfig = {
    version: c.version,
    inChannels: int('inChannels', c.inChannels),
    patchSize: Object.freeze([int('patchSize[0]', p[0]), int('patchSize[1]', p[1]), int('patchSize[2]', p[2])]) as readonly [number, number, number],
    hiddenSize: int('hiddenSize', c.hiddenSize),
    depth: int('depth', c.depth),
    numHeads: int('numHeads', c.numHeads),
    mlpRatio: positive('mlpRatio', c.mlpRatio),
    captionChannels: int('captionChannels', c.captionChannels),
    modelMaxLength: int('modelMaxLength', c.modelMaxLength),
    inputSqSize: positive('inputSqSize', c.inputSqSize),
    qkNorm: Boolean(c.qkNorm),
    predSigma: Boolean(c.predSigma),
  };
  if (out.hiddenSize % out.numHeads !== 0) throw new ModelConfigError(`Expected hiddenSize ${out.hiddenSize} to be divisible by numHeads but received numHeads ${out.numHeads}`);
  if (headDim(out) % 2 !== 0) throw new ModelConfigError(`Expected an even head size (rotary embedding pairs) but received ${headDim(out)}`);
  if (out.hiddenSize % 4 !== 0) throw new ModelConfigError(`Expected hiddenSize to be a multiple of 4 (2-D sin-cos position embedding) but received ${out.hiddenSize}`);
  if (out.version === 'stdit2' && out.hiddenSize % 3 !== 0) {
    throw new ModelConfigError(`Expected an STDiT2 hiddenSize divisible by 3 (its size and aspect-ratio embedders are hidden/3 wide) but received ${out.hiddenSize}`);
  }
  return Object.freeze(out);
}

/** STDiT2-XL/2 as released for Open-Sora v1.1 (`hpcai-tech/OpenSora-STDiT-v2-stage3`: 200 caption tokens, `input_sq_size` 512, qk-norm). */
export function stdit2XL2(overrides: Partial<OpenSoraConfig> = {}): OpenSoraConfig {
  return openSoraConfig({
    version: 'stdit2',
    inChannels: 4,
    patchSize: [1, 2, 2],
    hiddenSize: 1152,
    depth: 28,
    numHeads: 16,
    mlpRatio: 4,
    captionChannels: 4096,
    modelMaxLength: 200,
    inputSqSize: 512,
    qkNorm: true,
    predSigma: true,
    ...overrides,
  });
}

/** STDiT3-XL/2 as released for Open-Sora v1.2 (`hpcai-tech/OpenSora-STDiT-v3`: 300 caption tokens, `input_sq_size` 512, qk-norm). */
export function stdit3XL2(overrides: Partial<OpenSoraConfig> = {}): OpenSoraConfig {
  return openSoraConfig({ ...stdit2XL2(), version: 'stdit3', modelMaxLength: 300, ...overrides });
}

/** The version a `config.json` names (`model_type`, `architectures`, `_class_name` or `version`), if any. */
export function versionOfJson(json: Record<string, unknown>): OpenSoraVersion | undefined {
  const names = [json.model_type, json._class_name, json.version, ...(Array.isArray(json.architectures) ? json.architectures : [])].map((v) => String(v ?? '').toLowerCase());
  if (names.some((n) => n === 'stdit3' || n === 'v1.2' || n.startsWith('stdit3-'))) return 'stdit3';
  if (names.some((n) => n === 'stdit2' || n === 'v1.1' || n.startsWith('stdit2-'))) return 'stdit2';
  return undefined;
}

/** True when a `config.json` describes an Open-Sora STDiT model (by its names, or by its STDiT fields). */
export function isOpenSoraJson(json: Record<string, unknown>): boolean {
  return versionOfJson(json) !== undefined || (Array.isArray(json.patch_size) && json.patch_size.length === 3 && json.input_sq_size !== undefined);
}

/**
 * Reads a `config.json` with the official field names (`hidden_size`, `depth`, `num_heads`, `patch_size`,
 * `in_channels`, `caption_channels`, `model_max_length`, `input_sq_size`, `qk_norm`, `pred_sigma`,
 * `mlp_ratio`). The version comes from `model_type` / `architectures` / `_class_name` / `version`, or
 * from `version` here (the loader passes the one the checkpoint's keys show). Absent fields take the
 * defaults of the version's config class.
 */
export function configFromJson(json: Record<string, unknown>, version?: OpenSoraVersion): OpenSoraConfig {
  const v = versionOfJson(json) ?? version;
  if (!v) throw new ModelConfigError('Expected the Open-Sora version in config.json (model_type "STDiT2" or "STDiT3") or from the checkpoint keys but found neither');
  const j = json as Record<string, unknown>;
  const patch = (j.patch_size ?? [1, 2, 2]) as number[];
  return openSoraConfig({
    version: v,
    inChannels: (j.in_channels ?? 4) as number,
    patchSize: [patch[0]!, patch[1]!, patch[2]!],
    hiddenSize: (j.hidden_size ?? 1152) as number,
    depth: (j.depth ?? 28) as number,
    numHeads: (j.num_heads ?? 16) as number,
    mlpRatio: (j.mlp_ratio ?? 4) as number,
    captionChannels: (j.caption_channels ?? 4096) as number,
    // STDiT2Config defaults: input_sq_size 32, model_max_length 120; STDiT3Config: 512, 300
    modelMaxLength: (j.model_max_length ?? (v === 'stdit2' ? 120 : 300)) as number,
    inputSqSize: (j.input_sq_size ?? (v === 'stdit2' ? 32 : 512)) as number,
    qkNorm: (j.qk_norm ?? v === 'stdit3') as boolean,
    predSigma: (j.pred_sigma ?? true) as boolean,
  });
}
