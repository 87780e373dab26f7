import { InvalidArgumentError, ShapeMismatchError, type Tensor, concatBatch, describeValue, expectInteger, tensor } from '@ditfa/core';
import type { GenerateOptionsBase, LatentSpec } from '@ditfa/pipeline';
import { type DecodeOptions, TransformerAdapter } from './adapter.js';
import type { PixartConfig } from './config.js';
import type { PixartCondition, TransformerModel } from './model.js';

export interface PixartGenerateOptions extends GenerateOptionsBase {
  /** `[N, Lt, captionChannels]`: one caption per sample. */
  readonly captions: Tensor;
  readonly mask?: ArrayLike<number>;
  /** Null captions for CFG (e.g. T5 of ""), `[N or 1, Lt, captionChannels]`; default: the checkpoint's learned null caption. */
  readonly negativeCaptions?: Tensor;
  /** Default: the prompt's mask, as official PixArt-Σ inference does. */
  readonly negativeMask?: ArrayLike<number>;
  /** Latent size (default the config's `sample_size` square). */
  readonly height?: number;
  readonly width?: number;
}

/**
 * PixArt-Σ as a pipeline adapter: caption embeddings and masks from the caller (no text encoder), any
 * latent size that is a multiple of the patch size, diffusers' batch order `[negative, prompt]`
 * (`cond-second`), the checkpoint's learned null caption when no negative caption is given.
 */
export class PixartAdapter extends TransformerAdapter<PixartGenerateOptions> {
  readonly #nullCaption: Tensor | null;

  constructor(transformer: TransformerModel, decode: DecodeOptions = {}) {
    super(transformer, decode);
    this.#nullCaption = transformer.nullCaption;
  }

  latent(options: Partial<PixartGenerateOptions>): LatentSpec {
    const c = this.transformer.config as PixartConfig;
    const height = expectInteger('height', options.height ?? c.sampleSize, 1);
    const width = expectInteger('width', options.width ?? c.sampleSize, 1);
    if (height % c.patchSize !== 0 || width % c.patchSize !== 0) {
      throw new ShapeMismatchError(`Expected a latent height and width that are multiples of patch size ${c.patchSize} but received ${height}×${width}`);
    }
    return { channels: c.inChannels, height, width };
  }

  condition(options: PixartGenerateOptions, cfg: boolean): { cond: PixartCondition; n: number } {
    const c = this.transformer.config as PixartConfig;
    const y = options.captions;
    if (!y || !(y.data instanceof Float32Array) || y.shape.length !== 3) {
      throw new ShapeMismatchError(`Expected captions as a float32 [N, Lt, ${c.captionChannels}] Tensor but received ${describeValue(y?.shape ?? y)}`);
    }
    const [n, Lt] = y.shape as [number, number, number];
    const mask = options.mask ?? new Array<number>(n * Lt).fill(1);
    if (!cfg) return { n, cond: { captions: y, mask } };
    let neg = options.negativeCaptions ?? this.#nullCaption;
    if (!neg) {
      throw new InvalidArgumentError('Expected negativeCaptions for classifier-free guidance (e.g. the text encoder applied to "") but received none, and the checkpoint has no learned null caption');
    }
    if (neg.shape.length === 2) neg = tensor(neg.data, [1, ...neg.shape]);
    if (neg.shape[1] !== Lt || neg.shape[2] !== y.shape[2] || (neg.shape[0] !== 1 && neg.shape[0] !== n)) {
      throw new ShapeMismatchError(`Expected negative captions of shape [1 or ${n}, ${Lt}, ${y.shape[2]}] but received [${neg.shape.join(', ')}]`);
    }
    const negRows = neg.shape[0] === n ? neg : concatBatch(new Array<Tensor>(n).fill(neg));
    const negMask = options.negativeMask ?? mask;
    // diffusers' PixArt order: [negative, prompt] (cond-second).
    return { n, cond: { captions: concatBatch([negRows, y]), mask: [...Array.from(negMask), ...Array.from(mask)] } };
  }
}
