import { type AttentionLayer, type CfgOrder, InvalidArgumentError, type Tensor, tensor } from '@ditfa/core';
import { type OrtSession, createSession, loadOrt } from '@ditfa/ort-graph';
import type { Attend, DenoiserModel, GenerateOptionsBase, LatentSpec } from '@ditfa/pipeline';
import type { ModelConfig } from './config.js';
import type { Condition, ForwardOptions, ForwardResult, StepState, TransformerModel } from './model.js';

/** Decoding options shared by the DiT and PixArt-Σ adapters. */
export interface DecodeOptions {
  /** ONNX VAE decoder (path or bytes) with input `latent_sample` and output `sample`. */
  readonly vae?: string | Uint8Array;
  /** Latent scale factor (default DiT 0.18215, PixArt-Σ 0.13025); the decoder receives `latent / scale`. */
  readonly vaeScale?: number;
  /** Threads of the VAE session. */
  readonly threads?: number;
}

/**
 * What DiT and PixArt-Σ share as pipeline adapters: the transformer on onnxruntime (embed, blocks,
 * final layer), one `self` attention layer per block, ε prediction with optional learned sigma, and
 * decoding (an ONNX VAE decoder, or the samples themselves for a pixel-space model). The family
 * modules (`dit.ts`, `pixart.ts`) add the latent size and the conditioning.
 */
export abstract class TransformerAdapter<Options extends GenerateOptionsBase> implements DenoiserModel<Condition, StepState, Options> {
  readonly transformer: TransformerModel;
  readonly prediction = 'eps' as const;
  readonly #decode: DecodeOptions;
  #vae: Promise<OrtSession> | undefined;

  constructor(transformer: TransformerModel, decode: DecodeOptions = {}) {
    this.transformer = transformer;
    this.#decode = decode;
    if (decode.vaeScale !== undefined && !Number.isFinite(decode.vaeScale)) {
      throw new InvalidArgumentError(`Expected a finite vaeScale but received ${String(decode.vaeScale)}`);
    }
    if (decode.vae === undefined && !this.#pixelSpace()) {
      // A latent-space model without a decoder gives latents only; `decode` is then absent.
      this.decode = undefined;
    }
  }

  get architecture(): string {
    return this.transformer.architecture;
  }
  get weightsHash(): string {
    return this.transformer.weightsHash;
  }
  get cfgOrder(): CfgOrder {
    return this.transformer.cfgOrder;
  }
  get learnSigma(): boolean {
    return this.transformer.config.learnSigma;
  }
  get config(): ModelConfig {
    return this.transformer.config;
  }
  get numBlocks(): number {
    return this.transformer.numBlocks;
  }

  abstract latent(options: Partial<Options>): LatentSpec;
  abstract condition(options: Options, cfg: boolean): { cond: Condition; n: number };

  attentionLayers(latent: LatentSpec, batch: number, cfg: boolean): readonly AttentionLayer[] {
    return this.transformer.attentionLayers(latent.height, latent.width, batch, cfg);
  }

  embed(x: Tensor, t: number, cond: Condition): Promise<StepState> {
    return this.transformer.embed(x, t, cond);
  }

  runLayers(state: StepState, from: number, to: number, attend: Attend): Promise<StepState> {
    return this.transformer.runLayers(state, from, to, attend);
  }

  output(state: StepState): Promise<Tensor> {
    return this.transformer.output(state);
  }

  inspect(state: StepState): readonly Tensor[] {
    return [state.hidden];
  }

  /** One model evaluation outside the pipeline (golden tests, benches): see {@link TransformerModel.forward}. */
  forward(x: Tensor, t: number | ArrayLike<number>, cond: Condition, options?: ForwardOptions): Promise<ForwardResult> {
    return this.transformer.forward(x, t, cond, options);
  }

  #pixelSpace(): boolean {
    const c = this.transformer.config.inChannels;
    return c === 1 || c === 3;
  }

  /** Latents → images clipped to `[-1, 1]`: through the VAE decoder (latent / scale), or the samples themselves for a pixel-space model. */
  decode? = async (latents: Tensor): Promise<Tensor> => {
    if (this.#decode.vae === undefined) return clampImages(latents);
    this.#vae ??= (async () => {
      const v = this.#decode.vae!;
      const bytes = typeof v === 'string' ? new Uint8Array(await (await import('node:fs/promises')).readFile(v)) : v;
      return createSession(bytes, { ...(this.#decode.threads === undefined ? {} : { threads: this.#decode.threads }) });
    })();
    const session = await this.#vae;
    const ort = await loadOrt();
    const scale = this.#decode.vaeScale ?? (this.transformer.config.family === 'dit' ? 0.18215 : 0.13025);
    const scaled = latents.data.map((v) => v / scale);
    const out = await session.run({ latent_sample: new ort.Tensor('float32', scaled, latents.shape) });
    const sample = out.sample;
    if (!sample) throw new InvalidArgumentError(`Expected the VAE decoder to output "sample" but it outputs ${session.outputNames.join(', ')}`);
    return clampImages(tensor(sample.data as Float32Array, sample.dims));
  };

  async dispose(): Promise<void> {
    if (this.#vae) await (await this.#vae.catch(() => null))?.release();
    await this.transformer.dispose();
  }
}

/** Images are `[-1, 1]`: samples outside are clipped, as DiT's sampling script and diffusers' image processor do. */
function clampImages(images: Tensor): Tensor {
  return tensor(images.data.map((v) => (v < -1 ? -1 : v > 1 ? 1 : v)), images.shape);
}
