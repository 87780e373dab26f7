import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { Pipeline as GenericPipeline, type PipelineOptions as GenericPipelineOptions } from '@ditfa/pipeline';
import { OpenSoraAdapter, type OpenSoraAdapterOptions, type OpenSoraGenerateOptions } from './adapter.js';
import { type OpenSoraCondition, OpenSoraModel, type OpenSoraState } from './model.js';

export type { PipelineEvent, GenerateResult, AttentionWork, FingerprintOptions } from '@ditfa/pipeline';

/** Pipeline options plus the adapter's (windows per site, the decoder). */
export interface PipelineOptions extends GenericPipelineOptions, OpenSoraAdapterOptions {}

/** A pipeline over an Open-Sora model. */
export type Pipeline = GenericPipeline<OpenSoraCondition, OpenSoraState, OpenSoraGenerateOptions> & { readonly model: OpenSoraAdapter };

/**
 * A `@ditfa/pipeline` pipeline over an STDiT2 or STDiT3 model: the sampler loop, guidance, plans, the
 * attention dispatcher and the calibration target are the pipeline's; this package supplies the model.
 */
export function createPipeline(model: OpenSoraModel, options: PipelineOptions = {}): Pipeline {
  if (!(model instanceof OpenSoraModel)) throw new InvalidArgumentError(`Expected an OpenSoraModel but received ${describeValue(model)}`);
  const { windows, decoder, decoderScale, threads, pixelSpace, ...rest } = options;
  const adapter = new OpenSoraAdapter(model, {
    ...(windows === undefined ? {} : { windows }),
    ...(decoder === undefined ? {} : { decoder }),
    ...(decoderScale === undefined ? {} : { decoderScale }),
    ...(pixelSpace === undefined ? {} : { pixelSpace }),
    ...(threads === undefined ? {} : { threads }),
  });
  return new GenericPipeline<OpenSoraCondition, OpenSoraState, OpenSoraGenerateOptions>(adapter, rest) as Pipeline;
}
