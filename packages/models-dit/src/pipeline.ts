import {
  type AttentionShape,
  type AttentionStrategy,
  type CacheProvider,
  BackendUnavailableError,
  StrategyNotFoundError,
  blockAttentionFlops,
  type CacheEvent,
  CacheManager,
  type CfgLayout,
  type ComputeDtype,
  InvalidArgumentError,
  type KernelBackend,
  type PlanDocument,
  type PlanFingerprint,
  type PlanView,
  ShapeMismatchError,
  type StrategyEvent,
  type StrategyLookup,
  type Tensor,
  type WindowSpec,
  checkPlanFingerprint,
  concatBatch,
  createReferenceBackend,
  describeValue,
  expectFinite,
  expectInteger,
  fullStrategy,
  planView,
  rawAttentionFlops,
  resolveBackend,
  strategyRegistry,
  strategySet,
  tensor,
  throwIfAborted,
  uniformPlanView,
} from '@ditfa/core';
import { encodePng, tensorToImages } from '@ditfa/image';
import { type OrtSession, createSession, loadOrt } from '@ditfa/ort-graph';
import { type Rng, type Sampler, type SamplerKind, createRng, createSampler, guide, splitLearnedSigma } from '@ditfa/samplers';
import type { Condition, DitCondition, PixartCondition, StepState, TransformerModel } from './model.js';
import { ModelDisposedError } from './errors.js';

/**
 * `generate()` for DiT (class labels) and PixArt-Σ (caption embeddings and masks from the caller; no
 * text encoder): sampler loop with classifier-free guidance in the adapter's batch order, the plan's
 * method per (step, block), one CacheManager per pipeline reset for every generation, latents out and
 * images when a VAE decoder (ONNX, `latent_sample` → `sample`) is given or the model is pixel-space.
 */

export type PipelineEvent =
  | StrategyEvent
  | CacheEvent
  | { readonly type: 'backend'; readonly name: string; readonly fallbackReason?: string }
  | {
      readonly type: 'step';
      /** Steps done (1-based). */
      readonly step: number;
      readonly steps: number;
      readonly timestep: number;
      readonly attentionMs: number;
      readonly otherMs: number;
    };

export interface PipelineOptions {
  /** Strategies by name, side-effect-free. Default: core's registry (plus `full`). */
  readonly strategies?: readonly AttentionStrategy[];
  /** Kernel backend. Default: `resolveBackend()` from core's registry, else core's reference backend. */
  readonly backend?: KernelBackend;
  /** Byte budget of the caches (refused puts fall back to full attention). Unlimited when absent. */
  readonly cacheBudgetBytes?: number;
  /** ONNX VAE decoder (path or bytes) with input `latent_sample` and output `sample`. */
  readonly vae?: string | Uint8Array;
  /** Latent scale factor (default DiT 0.18215, PixArt-Σ 0.13025); the decoder receives `latent / scale`. */
  readonly vaeScale?: number;
  /** Threads of the VAE session. */
  readonly threads?: number;
  /** Window of window methods (default 1-D, `L/8` per side). */
  readonly window?: WindowSpec;
  readonly compute?: ComputeDtype;
  /** Cache, fallback, backend and step events. */
  readonly onEvent?: (event: PipelineEvent) => void;
  /** Dispose the model with the pipeline (default true). */
  readonly ownsModel?: boolean;
}

interface CommonGenerateOptions {
  readonly seed: number;
  readonly steps: number;
  /** Guidance scale; `<= 1` (or absent) runs without CFG. */
  readonly guidanceScale?: number;
  /** Channels to guide: `'all'` (default, diffusers) or e.g. 3 (DiT's original `forward_with_cfg`). */
  readonly guidanceChannels?: number | 'all';
  readonly sampler?: SamplerKind;
  /** A plan made for this model and configuration (refused otherwise); default: raw (`full` everywhere). */
  readonly plan?: PlanDocument;
  readonly onProgress?: (event: Extract<PipelineEvent, { type: 'step' }>) => void;
  readonly signal?: AbortSignal;
  /** Decode images (default: when a VAE is given or the model is pixel-space). */
  readonly images?: boolean;
  /** Starting noise `[N, in, H, W]` instead of the seed's (reproducing another implementation's run). */
  readonly noise?: Tensor;
}

export interface DitGenerateOptions extends CommonGenerateOptions {
  /** One class per sample; the batch size is their count. */
  readonly classLabels: readonly number[];
}

export interface PixartGenerateOptions extends CommonGenerateOptions {
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

export type GenerateOptions = DitGenerateOptions | PixartGenerateOptions;

/** The parts of {@link GenerateOptions} a plan fingerprint depends on. */
export interface FingerprintOptions {
  readonly steps: number;
  readonly guidanceScale?: number;
  readonly sampler?: SamplerKind;
  /** PixArt latent size (default the config's sample size). */
  readonly height?: number;
  readonly width?: number;
}

export interface GenerateResult {
  /** Final latents `[N, in, H, W]`. */
  readonly latents: Tensor;
  /** Decoded images `[N, C, H', W']` in `[-1, 1]`, when decoded. */
  readonly images?: Tensor;
  /** One PNG per sample, when decoded. */
  readonly png?: readonly Uint8Array[];
  readonly timings: { readonly attentionMs: number; readonly otherMs: number; readonly ortMs: number; readonly decodeMs: number };
  readonly cache: ReturnType<CacheManager['stats']>;
  /**
   * Attention FLOPs of what ran, counted like the planner counts a plan (each method's `flops`, with the
   * WA-RS residual refresh where a later step reads it) but with the method a strategy fell back to
   * (`fallback` events) in place of the planned one. Without fallbacks `fraction` equals the plan's
   * `totals.attentionFlopsFraction`.
   */
  readonly attention: AttentionWork;
}

/** Attention work of one generation. */
export interface AttentionWork {
  readonly flops: number;
  /** The same generation with full attention on every (step, block). */
  readonly rawFlops: number;
  /** `flops / rawFlops`. */
  readonly fraction: number;
  /** (step, block) calls that fell back to another method. */
  readonly fallbacks: number;
}

/** `@ditfa/planner`'s `CalibrationTarget`, restated structurally so this package does not depend on the planner. */
export interface CalibrationTargetLike<H> {
  readonly numBlocks: number;
  readonly numSteps: number;
  readonly fingerprint: PlanFingerprint;
  readonly strategies: StrategyLookup;
  attentionShape(block: number): AttentionShape;
  begin(): Promise<{ readonly cache: CacheManager }>;
  embed(step: number): Promise<H>;
  runBlocks(hidden: H, from: number, to: number, run: { readonly step: number; readonly methodFor: (block: number) => string; readonly plan: PlanView; readonly cache: CacheProvider }): Promise<H>;
  output(hidden: H, step: number): Promise<Tensor>;
  advance(step: number, output: Tensor): Promise<void>;
  /** The current sample (after the last `advance`); null before `begin`. Not part of the planner's interface. */
  latents(): Tensor | null;
}

export class Pipeline {
  readonly model: TransformerModel;
  readonly #options: PipelineOptions;
  readonly #strategies: StrategyLookup;
  readonly #cache: CacheManager;
  readonly #nullCaption: Tensor | null;
  #backend: Promise<KernelBackend> | undefined;
  #vae: Promise<OrtSession> | undefined;
  #disposed = false;

  constructor(model: TransformerModel, options: PipelineOptions = {}, extras: { nullCaption?: Tensor | null } = {}) {
    this.model = model;
    this.#options = options;
    this.#strategies = options.strategies ? withFull(strategySet(options.strategies)) : withFull(strategyRegistry);
    this.#cache = new CacheManager({
      ...(options.cacheBudgetBytes === undefined ? {} : { budgetBytes: options.cacheBudgetBytes }),
      onEvent: (e) => options.onEvent?.(e),
    });
    this.#nullCaption = extras.nullCaption ?? null;
    if (options.vaeScale !== undefined) expectFinite('vaeScale', options.vaeScale);
  }

  /** The strategies this pipeline runs and notifies. */
  get strategies(): StrategyLookup {
    return this.#strategies;
  }

  get cache(): CacheManager {
    return this.#cache;
  }

  /** The kernel backend (resolved once). */
  backend(): Promise<KernelBackend> {
    this.#backend ??= (async () => {
      if (this.#options.backend) return this.#options.backend;
      try {
        const b = await resolveBackend();
        this.#options.onEvent?.({ type: 'backend', name: b.name });
        return b;
      } catch (error) {
        if (!(error instanceof BackendUnavailableError)) throw error;
        const b = createReferenceBackend();
        this.#options.onEvent?.({ type: 'backend', name: b.name, fallbackReason: error.message });
        return b;
      }
    })();
    return this.#backend;
  }

  #latentSize(options: FingerprintOptions): { height: number; width: number } {
    const c = this.model.config;
    if (c.family === 'dit') return { height: c.inputSize, width: c.inputSize };
    return { height: options.height ?? c.sampleSize, width: options.width ?? c.sampleSize };
  }

  /** What a plan for this generation must have been made for. */
  fingerprint(options: FingerprintOptions): PlanFingerprint {
    const c = this.model.config;
    const { height, width } = this.#latentSize(options);
    const cfg = (options.guidanceScale ?? 1) > 1;
    return {
      model: { architecture: this.model.architecture, weightsHash: this.model.weightsHash },
      latent: { channels: c.inChannels, height, width },
      steps: options.steps,
      sampler: options.sampler ?? 'dpmpp-2m',
      guidance: cfg ? options.guidanceScale! : null,
      cfgOrder: cfg ? this.model.cfgOrder : 'none',
      window: this.#options.window ?? this.model.defaultWindow(height, width),
    };
  }

  #condition(options: GenerateOptions, cfg: boolean): { cond: Condition; n: number } {
    const c = this.model.config;
    if (c.family === 'dit') {
      const labels = (options as DitGenerateOptions).classLabels;
      if (!Array.isArray(labels) || labels.length === 0) throw new InvalidArgumentError(`Expected a non-empty array of class labels but received ${describeValue(labels)}`);
      labels.forEach((l, i) => expectInteger(`classLabels[${i}]`, l, 0, c.numClasses - 1));
      const n = labels.length;
      return { n, cond: { classLabels: cfg ? [...labels, ...new Array<number>(n).fill(c.numClasses)] : [...labels] } satisfies DitCondition };
    }
    const o = options as PixartGenerateOptions;
    const y = o.captions;
    if (!y || !(y.data instanceof Float32Array) || y.shape.length !== 3) {
      throw new ShapeMismatchError(`Expected captions as a float32 [N, Lt, ${c.captionChannels}] Tensor but received ${describeValue(y?.shape ?? y)}`);
    }
    const [n, Lt] = y.shape as [number, number, number];
    const mask = o.mask ?? new Array<number>(n * Lt).fill(1);
    if (!cfg) return { n, cond: { captions: y, mask } satisfies PixartCondition };
    let neg = o.negativeCaptions ?? this.#nullCaption;
    if (!neg) {
      throw new InvalidArgumentError('Expected negativeCaptions for classifier-free guidance (e.g. the text encoder applied to "") but received none, and the checkpoint has no learned null caption');
    }
    if (neg.shape.length === 2) neg = tensor(neg.data, [1, ...neg.shape]);
    if (neg.shape[1] !== Lt || neg.shape[2] !== y.shape[2] || (neg.shape[0] !== 1 && neg.shape[0] !== n)) {
      throw new ShapeMismatchError(`Expected negative captions of shape [1 or ${n}, ${Lt}, ${y.shape[2]}] but received [${neg.shape.join(', ')}]`);
    }
    const negRows = neg.shape[0] === n ? neg : concatBatch(new Array<Tensor>(n).fill(neg));
    const negMask = o.negativeMask ?? mask;
    // diffusers' PixArt order: [negative, prompt] (cond-second).
    return { n, cond: { captions: concatBatch([negRows, y]), mask: [...Array.from(negMask), ...Array.from(mask)] } satisfies PixartCondition };
  }

  /** Runs one generation. */
  async generate(options: GenerateOptions): Promise<GenerateResult> {
    if (this.#disposed) throw new ModelDisposedError('pipeline');
    const c = this.model.config;
    expectInteger('seed', options.seed, 0);
    const steps = expectInteger('steps', options.steps, 1);
    const scale = options.guidanceScale ?? 1;
    expectFinite('guidanceScale', scale);
    const cfg = scale > 1;
    const layout: CfgLayout | null = cfg ? { order: this.model.cfgOrder } : null;
    const { height, width } = this.#latentSize(options as FingerprintOptions);
    const expected = this.fingerprint(options as FingerprintOptions);
    let view: PlanView;
    if (options.plan) {
      checkPlanFingerprint(options.plan, expected);
      if (options.plan.numBlocks !== this.model.numBlocks) {
        throw new InvalidArgumentError(`Expected a plan for ${this.model.numBlocks} blocks but received one for ${options.plan.numBlocks}`);
      }
      view = planView(options.plan);
    } else view = uniformPlanView(steps, this.model.numBlocks, 'full');
    const sampler = createSampler({ kind: options.sampler ?? 'dpmpp-2m', steps });
    if (sampler.modelOutput === 'eps-and-variance' && !c.learnSigma) {
      throw new InvalidArgumentError(`Expected a learned-sigma model for the ${sampler.kind} sampler but this model predicts ε only`);
    }
    const { cond, n } = this.#condition(options, cfg);
    const backend = await this.backend();
    const rng = createRng(options.seed);
    let x = initialNoise(rng, sampler, [n, c.inChannels, height, width], options.noise);
    this.#cache.reset();
    let attentionMs = 0;
    let otherMs = 0;
    let ortMs = 0;
    const shape: AttentionShape = { batch: cfg ? 2 * n : n, tokens: this.model.tokenGrid(height, width).tokens, channels: c.hiddenSize, cfg, window: expected.window };
    const work = { flops: 0, rawFlops: 0, fallbacks: 0 };
    for (let i = 0; i < steps; i++) {
      throwIfAborted(options.signal, 'The generation');
      const t = sampler.timesteps[i]!;
      const input = cfg ? concatBatch([x, x]) : x;
      const fellBackTo = new Map<number, string>();
      const { output, timings } = await this.model.forward(input, t, cond, {
        step: i,
        plan: view,
        strategies: this.#strategies,
        backend,
        cache: this.#cache,
        cfg: layout,
        window: expected.window,
        compute: this.#options.compute ?? 'fp32',
        signal: options.signal,
        onEvent: (e) => {
          if (e.type === 'fallback' && e.step === i) fellBackTo.set(e.block, e.to);
          this.#options.onEvent?.(e);
        },
      });
      this.#countAttention(work, shape, view, i, steps, fellBackTo);
      const s0 = performance.now();
      x = samplerStep(sampler, rng, x, output, i, { layout, scale, channels: options.guidanceChannels ?? 'all', learnSigma: c.learnSigma });
      attentionMs += timings.attentionMs;
      ortMs += timings.ortMs;
      otherMs += timings.otherMs + performance.now() - s0;
      const event = { type: 'step', step: i + 1, steps, timestep: t, attentionMs: timings.attentionMs, otherMs: timings.otherMs } as const;
      options.onProgress?.(event);
      this.#options.onEvent?.(event);
    }
    const stats = this.#cache.stats();
    const attention: AttentionWork = { ...work, fraction: work.rawFlops === 0 ? 0 : work.flops / work.rawFlops };
    const decode = options.images ?? (this.#options.vae !== undefined || this.#pixelSpace());
    if (!decode) return { latents: x, timings: { attentionMs, otherMs, ortMs, decodeMs: 0 }, cache: stats, attention };
    const d0 = performance.now();
    const images = await this.decode(x);
    const png = tensorToImages(images).map((img) => new Uint8Array(encodePng(img)));
    return { latents: x, images, png, timings: { attentionMs, otherMs, ortMs, decodeMs: performance.now() - d0 }, cache: stats, attention };
  }

  /** Adds step `step`'s attention FLOPs (planned methods, or what they fell back to) to `work`. */
  #countAttention(work: { flops: number; rawFlops: number; fallbacks: number }, shape: AttentionShape, plan: PlanView, step: number, numSteps: number, fellBackTo: ReadonlyMap<number, string>): void {
    for (let block = 0; block < this.model.numBlocks; block++) {
      const method = fellBackTo.get(block) ?? plan.methodAt(step, block) ?? 'full';
      if (fellBackTo.has(block)) work.fallbacks += 1;
      const strategy = this.#strategies.get(method);
      if (!strategy) throw new StrategyNotFoundError(`Expected a strategy for method "${method}" (step ${step}, block ${block}) but the pipeline has: ${this.#strategies.names().join(', ')}`);
      work.flops += blockAttentionFlops(strategy, shape, { step, block, numSteps, plan, strategies: this.#strategies });
      work.rawFlops += rawAttentionFlops(shape);
    }
  }

  #pixelSpace(): boolean {
    return this.#options.vae === undefined && (this.model.config.inChannels === 1 || this.model.config.inChannels === 3);
  }

  /** Latents → images clipped to `[-1, 1]`: through the VAE decoder (latent / scale), or the samples themselves for a pixel-space model. */
  async decode(latents: Tensor): Promise<Tensor> {
    if (this.#options.vae === undefined) {
      if (this.#pixelSpace()) return clampImages(latents);
      throw new InvalidArgumentError('Expected a VAE decoder (options.vae) to decode latents of a latent-space model but received none');
    }
    this.#vae ??= (async () => {
      const v = this.#options.vae!;
      const bytes = typeof v === 'string' ? new Uint8Array(await (await import('node:fs/promises')).readFile(v)) : v;
      return createSession(bytes, { ...(this.#options.threads === undefined ? {} : { threads: this.#options.threads }) });
    })();
    const session = await this.#vae;
    const ort = await loadOrt();
    const scale = this.#options.vaeScale ?? (this.model.config.family === 'dit' ? 0.18215 : 0.13025);
    const scaled = latents.data.map((v) => v / scale);
    const out = await session.run({ latent_sample: new ort.Tensor('float32', scaled, latents.shape) });
    const sample = out.sample;
    if (!sample) throw new InvalidArgumentError(`Expected the VAE decoder to output "sample" but it outputs ${session.outputNames.join(', ')}`);
    return clampImages(tensor(sample.data as Float32Array, sample.dims));
  }

  /**
   * The calibration generation of the planner (`@ditfa/planner`'s `CalibrationTarget`, structurally):
   * the same sampling loop as {@link generate}, driven step by step, with block-level forwards on
   * immutable {@link StepState}s so trials can start from a stored prefix. Guidance must be on
   * (`guidanceScale > 1`) for ASC candidates to mean anything; the plan's fingerprint is this
   * generation's.
   */
  calibrationTarget(options: GenerateOptions): CalibrationTargetLike<StepState> {
    if (this.#disposed) throw new ModelDisposedError('pipeline');
    const c = this.model.config;
    const model = this.model;
    expectInteger('seed', options.seed, 0);
    const steps = expectInteger('steps', options.steps, 1);
    const scale = options.guidanceScale ?? 1;
    expectFinite('guidanceScale', scale);
    const cfg = scale > 1;
    const layout: CfgLayout | null = cfg ? { order: model.cfgOrder } : null;
    const { height, width } = this.#latentSize(options as FingerprintOptions);
    const fingerprint = this.fingerprint(options as FingerprintOptions);
    const { cond, n } = this.#condition(options, cfg);
    const sampler = createSampler({ kind: options.sampler ?? 'dpmpp-2m', steps });
    const strategies = this.#strategies;
    const cache = this.#cache;
    const grid = model.tokenGrid(height, width);
    let x: Tensor | null = null;
    let rng = createRng(options.seed);
    let backend: KernelBackend | null = null;
    return {
      numBlocks: model.numBlocks,
      numSteps: steps,
      fingerprint,
      strategies,
      attentionShape: () => ({ batch: cfg ? 2 * n : n, tokens: grid.tokens, channels: c.hiddenSize, cfg, window: fingerprint.window }),
      begin: async () => {
        backend = await this.backend();
        rng = createRng(options.seed);
        sampler.reset();
        x = initialNoise(rng, sampler, [n, c.inChannels, height, width], options.noise);
        cache.reset();
        return { cache };
      },
      embed: async (step) => {
        if (!x) throw new InvalidArgumentError('Expected begin() before embed()');
        return model.embed(cfg ? concatBatch([x, x]) : x, sampler.timesteps[step]!, cond);
      },
      runBlocks: (hidden, from, to, run) =>
        model.runBlocks(hidden, from, to, {
          step: run.step,
          methodFor: run.methodFor,
          plan: run.plan,
          cache: run.cache,
          strategies,
          backend: backend ?? createReferenceBackend(),
          cfg: layout,
          window: fingerprint.window,
          compute: this.#options.compute ?? 'fp32',
          onEvent: (e) => this.#options.onEvent?.(e),
        }),
      output: async (hidden) => (await model.output(hidden)).output,
      advance: async (step, output) => {
        if (!x) throw new InvalidArgumentError('Expected begin() before advance()');
        x = samplerStep(sampler, rng, x, output, step, { layout, scale, channels: options.guidanceChannels ?? 'all', learnSigma: c.learnSigma });
      },
      latents: () => x,
    };
  }

  /** Releases the VAE session, the caches and (when owned) the model's sessions. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#cache.reset();
    if (this.#vae) await (await this.#vae.catch(() => null))?.release();
    if (this.#options.ownsModel ?? true) await this.model.dispose();
  }
}

/**
 * The starting sample: a draw from the generation's RNG (always taken, so the stream stays aligned), or
 * the caller's noise of the same shape, scaled by the sampler's initial sigma.
 */
function initialNoise(rng: Rng, sampler: Sampler, shape: readonly number[], noise?: Tensor): Tensor {
  let x = rng.randn(shape);
  if (noise !== undefined) {
    if (!noise || !(noise.data instanceof Float32Array) || noise.shape.join() !== x.shape.join()) {
      throw new ShapeMismatchError(`Expected starting noise of shape [${x.shape.join(', ')}] but received ${describeValue(noise?.shape ?? noise)}`);
    }
    x = noise;
  }
  return sampler.initNoiseSigma === 1 ? x : tensor(x.data.map((v) => v * sampler.initNoiseSigma), x.shape);
}

/**
 * One sampler step from a model output: guidance in the adapter's batch order, ε alone from a
 * learned-sigma output when the sampler wants ε, and fresh noise when the sampler asks for it.
 */
function samplerStep(
  sampler: Sampler,
  rng: Rng,
  x: Tensor,
  output: Tensor,
  i: number,
  g: { readonly layout: CfgLayout | null; readonly scale: number; readonly channels: number | 'all'; readonly learnSigma: boolean },
): Tensor {
  const guided = g.layout ? guide(output, { order: g.layout.order, scale: g.scale, channels: g.channels }) : output;
  const modelOut = sampler.modelOutput === 'eps' && g.learnSigma ? splitLearnedSigma(guided).eps : guided;
  return sampler.step(modelOut, i, x, sampler.needsNoise(i) ? rng.randn(x.shape) : undefined);
}

/** Images are `[-1, 1]`: samples outside are clipped, as DiT's sampling script and diffusers' image processor do. */
function clampImages(images: Tensor): Tensor {
  return tensor(images.data.map((v) => (v < -1 ? -1 : v > 1 ? 1 : v)), images.shape);
}

/** A lookup that always knows `full` (the raw model), with one `full` object for the pipeline's lifetime. */
function withFull(base: StrategyLookup): StrategyLookup {
  const full = fullStrategy();
  return {
    get: (name) => base.get(name) ?? (name === 'full' ? full : undefined),
    names: () => (base.names().includes('full') ? base.names() : [...base.names(), 'full']),
  };
}

/** A pipeline over a model (see {@link Pipeline}). */
export function createPipeline(model: TransformerModel, options: PipelineOptions = {}): Pipeline {
  return new Pipeline(model, options, { nullCaption: model.nullCaption });
}
