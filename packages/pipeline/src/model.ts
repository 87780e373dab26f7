import type { AttentionHooks, AttentionLayer, CfgOrder, Tensor } from '@ditfa/core';
import type { PredictionType } from '@ditfa/samplers';

/**
 * The interface a model family implements to run on the pipeline (`@ditfa/models-dit` for DiT and
 * PixArt-Σ, `@ditfa/models-opensora` for STDiT2/3, a test's toy model). An adapter is mostly facts and
 * dense work: it never loops over steps, never picks an attention method and never touches a sampler.
 *
 * One step of the pipeline is `embed → runLayers(0, N) → output`; the planner's calibration target
 * calls `runLayers` over shorter ranges to start trials from a stored state (prefix reuse). States are
 * immutable values: `runLayers` returns a new one and never modifies its input.
 */
export interface DenoiserModel<Cond = unknown, State = unknown, Options = unknown> {
  /** Architecture and size, for plan fingerprints (`dit depth=28 hidden=1152 heads=16 patch=2`). */
  readonly architecture: string;
  /** `sha256:…` of the weights, for plan fingerprints. */
  readonly weightsHash: string;
  /** Which CFG half of the batch is conditional (DiT, Open-Sora: `cond-first`; diffusers PixArt: `cond-second`). */
  readonly cfgOrder: CfgOrder;
  /** What the model predicts: ε (DiT, PixArt-Σ, STDiT2) or the flow velocity (STDiT3). */
  readonly prediction: PredictionType;
  /** True when the output carries learned variance channels after the prediction (`[B, 2C, …]`). */
  readonly learnSigma: boolean;
  /** The latent one sample has for these options (channels, [frames,] height, width), validated; reads only size fields. */
  latent(options: Partial<Options>): LatentSpec;
  /**
   * The conditioning of one generation's batch: `n` samples, and for CFG the `2n` rows in the adapter's
   * `cfgOrder` (conditional and unconditional halves contiguous along the outer batch).
   */
  condition(options: Options, cfg: boolean): { readonly cond: Cond; readonly n: number };
  /**
   * The attention layers in model order for a batch of `batch` rows (both CFG halves) of this latent,
   * each with its default window (`null` where window methods do not apply).
   */
  attentionLayers(latent: LatentSpec, batch: number, cfg: boolean): readonly AttentionLayer[];
  /** The state entering layer 0 for the sample `x` (`[B, C, (T,) H, W]`, B rows) at timestep `t`. */
  embed(x: Tensor, t: number, cond: Cond): Promise<State>;
  /**
   * Runs from the state entering layer `from` to the state entering layer `to` (`to = N` runs through
   * the last block), calling `attend(i, hooks)` once for every attention layer `i` in `[from, to)` with
   * the dense work around it; `attend` returns the layer's attention branch output `[rows, L, C]`.
   */
  runLayers(state: State, from: number, to: number, attend: Attend): Promise<State>;
  /** The model output `[B, outChannels, (T,) H, W]` from the state after the last layer. */
  output(state: State): Promise<Tensor>;
  /** Tensors of a state whose values must be finite (numerical fault search); e.g. the hidden state. */
  inspect?(state: State): readonly Tensor[];
  /**
   * Entries of the latents that are given rather than generated (Open-Sora's frame conditioning), for
   * these options: their values (a tensor of the latents' `shape`, `[N, C, (T,) H, W]`) and a 0/1 `mask`
   * over the same entries. The pipeline writes them into the starting latents and again after every
   * sampler step (`samplerKind` lets the adapter refuse a sampler its conditioning is not defined for);
   * telling the model about them is the adapter's own business (`condition`). Absent or null: every entry
   * is generated.
   */
  given?(options: Options, shape: readonly number[], samplerKind: string): GivenLatents | null;
  /** Latents `[N, C, (T,) H, W]` → images/frames in `[-1, 1]`, when the model can decode. */
  decode?(latents: Tensor): Promise<Tensor>;
  /** Releases sessions and buffers. */
  dispose(): Promise<void>;
}

/** What {@link DenoiserModel.given} returns: values of the latents' shape and a 0/1 mask of the given entries. */
export interface GivenLatents {
  readonly values: Tensor;
  readonly mask: Uint8Array;
}

/** One sample's latent: channels, optional frames, height and width. */
export interface LatentSpec {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly frames?: number;
}

/** The dispatcher's entry point a model calls for each attention layer. */
export type Attend = (layer: number, hooks: AttentionHooks) => Promise<Tensor>;

/** The latent tensor shape of `n` samples: `[n, C, H, W]`, or `[n, C, T, H, W]` with frames. */
export function latentShape(latent: LatentSpec, n: number): number[] {
  return latent.frames === undefined ? [n, latent.channels, latent.height, latent.width] : [n, latent.channels, latent.frames, latent.height, latent.width];
}
