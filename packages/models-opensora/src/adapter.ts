import { type AttentionLayer, type CfgOrder, InvalidArgumentError, ShapeMismatchError, type Tensor, concatBatch, describeValue, expectFinite, expectInteger, tensor } from '@ditfa/core';
import { type OrtSession, createSession, loadOrt } from '@ditfa/ort-graph';
import type { Attend, DenoiserModel, GenerateOptionsBase, LatentSpec } from '@ditfa/pipeline';
import type { PredictionType } from '@ditfa/samplers';
import type { OpenSoraConfig } from './config.js';
import type { OpenSoraCondition, OpenSoraModel, OpenSoraState, SiteWindows } from './model.js';

/** Pixel frames and size of a video (what the user asks for, the micro-conditions and the rflow transform use). */
export interface VideoSize {
  readonly frames: number;
  readonly height: number;
  readonly width: number;
}

export interface OpenSoraGenerateOptions extends GenerateOptionsBase, Partial<VideoSize> {
  /** Caption embeddings (T5 v1.1 XXL states) `[N, L, captionChannels]` or `[N, 1, L, captionChannels]`, `L` = the model's caption length. */
  readonly captions: Tensor;
  /** `[N·L]` 1/0 (1 = valid token; need not be a prefix). Default: all valid. The null caption reuses it (official). */
  readonly mask?: ArrayLike<number>;
  /** Frames per second of the micro-condition (default 24, and 120 for one frame: Open-Sora's `IMG_FPS`). */
  readonly fps?: number;
  /** The latent size when the decoder is not Open-Sora's VAE (default: from the pixel size, see {@link latentSize}). */
  readonly latentSize?: VideoSize;
  /**
   * Frame conditioning — Open-Sora v1.2's image-to-video and video extension (`RFLOW.sample` with a 0/1
   * `mask`): `latents` of this generation's shape `[N, C, T, H, W]` and `frames` `[N·T]`, 1 (or true) where
   * that sample's frame is given. Given frames go into the starting latents, stay as given through
   * sampling, and the model sees them at `t = 0` (the official `x_mask`, in both CFG halves); the others
   * are generated. Needs the rflow sampler and a temporal patch of 1.
   */
  readonly reference?: { readonly latents: Tensor; readonly frames: ArrayLike<number | boolean> };
}

export interface OpenSoraAdapterOptions {
  /** Windows of the window methods per site (default: spatial 1-D `floor(S/8)` per side, temporal none). */
  readonly windows?: SiteWindows;
  /**
   * ONNX decoder of the latents: input `[B, C, T, H, W]` (its first input), output frames
   * `[B, 3, T', H', W']` in `[-1, 1]` (its first output) — an export of Open-Sora's VAE `decode`, which
   * applies its own scaling. Without it generations return latents only.
   */
  readonly decoder?: string | Uint8Array;
  /**
   * The latents are the frames (a pixel-space model, no VAE, as the bundled Moving Fashion-MNIST model):
   * "decoding" clips them to `[-1, 1]`. Exclusive with `decoder`.
   */
  readonly pixelSpace?: boolean;
  /** The decoder receives `latents / decoderScale` (default 1). */
  readonly decoderScale?: number;
  /** Threads of the decoder session. */
  readonly threads?: number;
}

/** The official inference size of each version: 240×426 (9:16 at 240p), 16 frames (v1.1) or 51 (v1.2). */
export const DEFAULT_VIDEO: Readonly<Record<OpenSoraConfig['version'], VideoSize>> = Object.freeze({
  stdit2: Object.freeze({ frames: 16, height: 240, width: 426 }),
  stdit3: Object.freeze({ frames: 51, height: 240, width: 426 }),
});

/** Open-Sora's `IMG_FPS`: the fps micro-condition of a one-frame generation. */
export const IMAGE_FPS = 120;

/** Checks a pixel video size: positive integers, at least one latent cell (8 pixels) high and wide. */
export function checkVideoSize(size: VideoSize): VideoSize {
  const frames = expectInteger('frames', size?.frames, 1);
  const height = expectInteger('height', size?.height, 1);
  const width = expectInteger('width', size?.width, 1);
  if (height < 8 || width < 8) throw new InvalidArgumentError(`Expected a height and width of at least 8 pixels (one latent cell) but received ${height}×${width}`);
  return { frames, height, width };
}

/**
 * The latent of a pixel video as the version's VAE makes it: `/8` in height and width (floor, as
 * `get_latent_size`); v1.1's per-frame SD VAE keeps the frames, v1.2's temporal VAE turns each 17 frames
 * into 5 and a remainder `r` into `ceil(r/4)`. v1.2 takes one frame (an image) or at least 17.
 */
export function latentSize(version: OpenSoraConfig['version'], size: VideoSize): VideoSize {
  const { frames, height, width } = checkVideoSize(size);
  if (version === 'stdit2') return { frames, height: Math.floor(height / 8), width: Math.floor(width / 8) };
  if (frames > 1 && frames < 17) {
    throw new InvalidArgumentError(
      `Expected 1 frame (an image) or at least 17 frames for Open-Sora v1.2 (its VAE encodes groups of 17 frames, and the official timestep transform uses frames // 17) but received ${frames}`,
    );
  }
  const rest = frames % 17;
  return { frames: Math.floor(frames / 17) * 5 + (rest > 0 ? Math.ceil(rest / 4) : 0), height: Math.floor(height / 8), width: Math.floor(width / 8) };
}

/**
 * Open-Sora STDiT2/STDiT3 as a `@ditfa/pipeline` adapter: caption embeddings and masks from the caller
 * (no text encoder), the checkpoint's learned null caption for the unconditional half, the official
 * `[cond, null]` batch order (`cond-first`), the micro-conditions from the pixel size, ε with learned
 * sigma (v1.1) or the flow velocity (v1.2). Attention layers per block: v1.1 `i.spatial`, `i.temporal`,
 * `i.cross`; v1.2 `i.spatial`, `i.spatial-cross`, `i.temporal`, `i.temporal-cross`.
 */
export class OpenSoraAdapter implements DenoiserModel<OpenSoraCondition, OpenSoraState, OpenSoraGenerateOptions> {
  readonly model: OpenSoraModel;
  readonly #options: OpenSoraAdapterOptions;
  #decoder: Promise<OrtSession> | undefined;

  constructor(model: OpenSoraModel, options: OpenSoraAdapterOptions = {}) {
    this.model = model;
    this.#options = options;
    if (options.decoderScale !== undefined) expectFinite('decoderScale', options.decoderScale);
    if (options.pixelSpace && options.decoder !== undefined) throw new InvalidArgumentError('Expected either a decoder or pixelSpace: true but received both (a pixel-space model has no VAE)');
    if (options.pixelSpace) this.decode = async (latents: Tensor) => tensor(Float32Array.from(latents.data, (v) => (v < -1 ? -1 : v > 1 ? 1 : v)), latents.shape);
    else if (options.decoder === undefined) this.decode = undefined;
  }

  get architecture(): string {
    return this.model.architecture;
  }
  get weightsHash(): string {
    return this.model.weightsHash;
  }
  get cfgOrder(): CfgOrder {
    return this.model.cfgOrder;
  }
  get prediction(): PredictionType {
    return this.model.config.version === 'stdit3' ? 'velocity' : 'eps';
  }
  get learnSigma(): boolean {
    return this.model.config.predSigma;
  }
  get config(): OpenSoraConfig {
    return this.model.config;
  }

  /** The pixel video of these options (the version's official size where absent). */
  videoSize(options: Partial<OpenSoraGenerateOptions>): VideoSize {
    const d = DEFAULT_VIDEO[this.config.version];
    return { frames: options.frames ?? d.frames, height: options.height ?? d.height, width: options.width ?? d.width };
  }

  latent(options: Partial<OpenSoraGenerateOptions>): LatentSpec {
    const video = this.videoSize(options);
    let size: VideoSize;
    if (options.latentSize !== undefined) {
      const l = options.latentSize;
      size = { frames: expectInteger('latentSize.frames', l?.frames, 1), height: expectInteger('latentSize.height', l?.height, 1), width: expectInteger('latentSize.width', l?.width, 1) };
      checkVideoSize(video); // the pixel size still drives the micro-conditions
    } else {
      size = latentSize(this.config.version, video);
    }
    return { channels: this.config.inChannels, frames: size.frames, height: size.height, width: size.width };
  }

  condition(options: OpenSoraGenerateOptions, cfg: boolean): { cond: OpenSoraCondition; n: number } {
    const c = this.config;
    let y = options.captions;
    if (y && y.shape?.length === 4 && y.shape[1] === 1) y = tensor(y.data, [y.shape[0]!, y.shape[2]!, y.shape[3]!]);
    if (!y || !(y.data instanceof Float32Array) || y.shape.length !== 3 || y.shape[1] !== c.modelMaxLength || y.shape[2] !== c.captionChannels) {
      throw new ShapeMismatchError(
        `Expected captions as a float32 [N, ${c.modelMaxLength}, ${c.captionChannels}] Tensor (T5 states padded to the model's ${c.modelMaxLength} tokens) but received ${describeValue(y?.shape ?? y)}`,
      );
    }
    const n = expectInteger('batch size', y.shape[0], 1);
    const L = c.modelMaxLength;
    const mask = options.mask === undefined ? new Array<number>(n * L).fill(1) : Array.from(options.mask);
    if (mask.length !== n * L) throw new ShapeMismatchError(`Expected a caption mask of ${n}×${L} = ${n * L} values but received ${mask.length}`);
    const video = this.videoSize(options);
    const fps = options.fps ?? (video.frames === 1 ? IMAGE_FPS : 24);
    expectFinite('fps', fps);
    const given = options.reference === undefined ? null : this.#givenFrames(options, n);
    // official x_mask: 1 = the frame is generated (timestep t), 0 = given (the t = 0 modulation)
    const xMask = given === null ? null : given.map((g) => (g ? 0 : 1));
    const micro = { height: video.height, width: video.width, fps, frames: video.frames };
    if (!cfg) return { n, cond: { captions: y, mask, ...micro, ...(xMask ? { xMask } : {}) } };
    const nul = this.model.nullCaption;
    if (!nul) throw new InvalidArgumentError('Expected the checkpoint\'s learned null caption (y_embedder.y_embedding) for classifier-free guidance but this checkpoint has none');
    const nulls = concatBatch(new Array<Tensor>(n).fill(tensor(nul.data, [1, L, c.captionChannels])));
    // official order [cond, null]; the prompt's mask is reused for the null half
    return { n, cond: { captions: concatBatch([y, nulls]), mask: [...mask, ...mask], ...micro, ...(xMask ? { xMask: [...xMask, ...xMask] } : {}) } };
  }

  /** The reference's per-frame flags `[n·T]` (true = given), checked against this generation. */
  #givenFrames(options: OpenSoraGenerateOptions, n: number): boolean[] {
    const ref = options.reference!;
    const latent = this.latent(options);
    const T = latent.frames ?? 1;
    if (this.config.patchSize[0] !== 1) {
      throw new InvalidArgumentError(`Expected a model with a temporal patch of 1 for frame conditioning (x_mask is per token frame) but this one patches ${this.config.patchSize[0]} frames`);
    }
    const frames = ref?.frames;
    if (frames === undefined || frames === null || typeof (frames as ArrayLike<unknown>).length !== 'number' || frames.length !== n * T) {
      throw new ShapeMismatchError(`Expected reference.frames with ${n}×${T} = ${n * T} flags (samples × latent frames) but received ${describeValue((frames as ArrayLike<unknown> | undefined)?.length ?? frames)}`);
    }
    return Array.from(frames, (f, i) => {
      if (f !== 0 && f !== 1 && f !== true && f !== false) throw new InvalidArgumentError(`Expected reference.frames flags 0/1 or booleans but received ${describeValue(f)} at ${i}`);
      return f === 1 || f === true;
    });
  }

  /** The reference's given frames as latent entries (see {@link OpenSoraGenerateOptions.reference}); rflow only. */
  given(options: OpenSoraGenerateOptions, shape: readonly number[], samplerKind: string): { values: Tensor; mask: Uint8Array } | null {
    if (options.reference === undefined) return null;
    if (samplerKind !== 'rflow') {
      throw new InvalidArgumentError(`Expected the rflow sampler for frame conditioning (Open-Sora defines it for rectified flow) but received ${describeValue(samplerKind)}`);
    }
    const flags = this.#givenFrames(options, shape[0]!);
    const values = options.reference.latents;
    if (!values || !(values.data instanceof Float32Array) || values.shape?.join() !== shape.join()) {
      throw new ShapeMismatchError(`Expected reference.latents as a float32 Tensor of this generation's shape [${shape.join(', ')}] but received ${describeValue(values?.shape ?? values)}`);
    }
    const [N, C, T, H, W] = shape as [number, number, number, number, number];
    const mask = new Uint8Array(values.data.length);
    for (let b = 0; b < N; b++) {
      for (let t = 0; t < T; t++) {
        if (!flags[b * T + t]) continue;
        for (let c = 0; c < C; c++) mask.fill(1, (((b * C + c) * T + t) * H) * W, (((b * C + c) * T + t + 1) * H) * W);
      }
    }
    return { values, mask };
  }

  attentionLayers(latent: LatentSpec, batch: number, cfg: boolean): readonly AttentionLayer[] {
    return this.model.attentionLayers(latent.frames ?? 1, latent.height, latent.width, batch, cfg, this.#options.windows);
  }

  embed(x: Tensor, t: number, cond: OpenSoraCondition): Promise<OpenSoraState> {
    return this.model.embed(x, t, cond);
  }

  runLayers(state: OpenSoraState, from: number, to: number, attend: Attend): Promise<OpenSoraState> {
    return this.model.runLayers(state, from, to, attend);
  }

  output(state: OpenSoraState): Promise<Tensor> {
    return this.model.output(state);
  }

  inspect(state: OpenSoraState): readonly Tensor[] {
    return [state.hidden];
  }

  /** Latents `[N, C, T, H, W]` → frames `[N, 3, T', H', W']` clipped to `[-1, 1]` through the ONNX decoder. */
  decode? = async (latents: Tensor): Promise<Tensor> => {
    const o = this.#options;
    this.#decoder ??= (async () => {
      const d = o.decoder!;
      const bytes = typeof d === 'string' ? new Uint8Array(await (await import('node:fs/promises')).readFile(d)) : d;
      return createSession(bytes, { spinning: false, ...(o.threads === undefined ? {} : { threads: o.threads }) });
    })();
    const session = await this.#decoder;
    const ort = await loadOrt();
    const scale = o.decoderScale ?? 1;
    const input = scale === 1 ? latents.data : latents.data.map((v) => v / scale);
    const out = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', input, latents.shape) });
    const frames = out[session.outputNames[0]!]!;
    if (frames.dims.length !== 5 || frames.dims[0] !== latents.shape[0]) {
      throw new ShapeMismatchError(`Expected the decoder to output frames [${latents.shape[0]}, 3, T, H, W] but it output [${frames.dims.join(', ')}]`);
    }
    return tensor(Float32Array.from(frames.data as Float32Array, (v) => (v < -1 ? -1 : v > 1 ? 1 : v)), frames.dims);
  };

  async dispose(): Promise<void> {
    if (this.#decoder) await (await this.#decoder.catch(() => null))?.release();
    await this.model.dispose();
  }
}
