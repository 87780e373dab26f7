import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { Pipeline as GenericPipeline, type PipelineOptions as GenericPipelineOptions } from '@ditfa/pipeline';
import type { DecodeOptions } from './adapter.js';
import { DitAdapter, type DitGenerateOptions } from './dit.js';
import type { Condition, StepState, TransformerModel } from './model.js';
import { PixartAdapter, type PixartGenerateOptions } from './pixart.js';

/**
 * DiT and PixArt-Σ on `@ditfa/pipeline`: {@link createPipeline} wraps a {@link TransformerModel} in its
 * family's adapter ({@link DitAdapter}, {@link PixartAdapter}) and returns the generic pipeline. The
 * sampler loop, guidance, plans, the attention dispatcher and the calibration target are the
 * pipeline's; this package supplies only the model.
 */

export type { PipelineEvent, GenerateResult, AttentionWork, FingerprintOptions } from '@ditfa/pipeline';
export type { DitGenerateOptions } from './dit.js';
export type { PixartGenerateOptions } from './pixart.js';

export type GenerateOptions = DitGenerateOptions | PixartGenerateOptions;

/** Pipeline options plus decoding (a VAE decoder for latent-space models). */
export interface PipelineOptions extends GenericPipelineOptions, DecodeOptions {}

export type DitFamilyAdapter = DitAdapter | PixartAdapter;

/** A pipeline over a DiT or PixArt-Σ model. */
export type Pipeline = GenericPipeline<Condition, StepState, GenerateOptions> & { readonly model: DitFamilyAdapter };

/** The adapter of a model's family, with decoding options. */
export function adapterFor(model: TransformerModel, decode: DecodeOptions = {}): DitFamilyAdapter {
  if (!model || typeof model !== 'object' || !('config' in model)) throw new InvalidArgumentError(`Expected a TransformerModel but received ${describeValue(model)}`);
  return model.config.family === 'dit' ? new DitAdapter(model, decode) : new PixartAdapter(model, decode);
}

/** A pipeline over a DiT or PixArt-Σ model (see `@ditfa/pipeline`'s `Pipeline`). */
export function createPipeline(model: TransformerModel, options: PipelineOptions = {}): Pipeline {
  const { vae, vaeScale, threads, ...rest } = options;
  const adapter = adapterFor(model, { ...(vae === undefined ? {} : { vae }), ...(vaeScale === undefined ? {} : { vaeScale }), ...(threads === undefined ? {} : { threads }) });
  return new GenericPipeline<Condition, StepState, GenerateOptions>(adapter as never, rest) as Pipeline;
}
