import {
  type AttentionLayer,
  type AttentionStrategy,
  type CacheEvent,
  CacheManager,
  type CacheStats,
  type CalibrationTarget,
  type CfgLayout,
  type ComputeDtype,
  ErrorCode,
  InvalidArgumentError,
  type KernelBackend,
  type PlanDocument,
  type PlanDocumentV1,
  type PlanFingerprint,
  type PlanView,
  ShapeMismatchError,
  type StrategyEvent,
  type StrategyLookup,
  type Tensor,
  type WindowSpec,
  checkPlanFingerprint,
  checkStrategySet,
  concatBatch,
  createReferenceBackend,
  defineLayers,
  describeFailures,
  describeValue,
  expectFinite,
  expectInteger,
  fullStrategy,
  planView,
  resolveBackendDetailed,
  strategyRegistry,
  strategySet,
  tensor,
  throwIfAborted,
  uniformPlanView,
  validatePlan,
} from '@ditfa/core';
import { encodePng, tensorToImages } from '@ditfa/image';
import { type Rng, type Sampler, type SamplerFactory, type SamplerKind, createRng, createSampler, guide, splitLearnedSigma, validateSampler } from '@ditfa/samplers';
import { type AttentionWork, type DispatcherInit, type RunTally, attentionWork, createDispatcher, newTally } from './dispatcher.js';
import type { Attend, DenoiserModel, GivenLatents, LatentSpec } from './model.js';
import { latentShape } from './model.js';
import { NumericalFaultError, firstNonFinite } from './numerics.js';
import { PipelineDisposedError } from './errors.js';

export type PipelineEvent =
  | StrategyEvent
  | CacheEvent
  | {
      readonly type: 'backend';
      /** The kernel backend the pipeline runs on. */
      readonly name: string;
      /**
       * Why a backend the registry ranks higher was not used (one line per backend passed over, with its
       * cause and remedy), or why there is no registered backend at all. Absent when the first choice worked.
       */
      readonly fallbackReason?: string;
    }
  | {
      readonly type: 'step';
      /** Steps done (1-based). */
      readonly step: number;
      readonly steps: number;
      readonly timestep: number;
      readonly attentionMs: number;
      readonly otherMs: number;
    };

export type StepEvent = Extract<PipelineEvent, { type: 'step' }>;

export interface PipelineOptions {
  /** Strategies by name, side-effect-free. Default: core's registry (plus core's `full`). */
  readonly strategies?: readonly AttentionStrategy[];
  /** Kernel backend. Default: `resolveBackend()` from core's registry, else core's reference backend (a `backend` event says why). */
  readonly backend?: KernelBackend;
  /** Byte budget of each generation's caches (refused puts fall back to full attention). Unlimited when absent. */
  readonly cacheBudgetBytes?: number;
  /**
   * Window of window methods: one window for every layer that has one by default, or a function giving
   * each layer's window (`null`: no window methods on that layer). Default: the model's windows.
   */
  readonly window?: WindowSpec | ((layer: AttentionLayer) => WindowSpec | null);
  readonly compute?: ComputeDtype;
  /** Check every step's model output for NaN/Inf and name the step and layer of a fault (default true). */
  readonly checkFinite?: boolean;
  /** Cache, fallback, backend and step events. */
  readonly onEvent?: (event: PipelineEvent) => void;
  /** Dispose the model with the pipeline (default true). */
  readonly ownsModel?: boolean;
}

/** What every generation takes, whatever the model; adapters add their conditioning fields. */
export interface GenerateOptionsBase {
  readonly seed: number;
  readonly steps: number;
  /** Guidance scale; `<= 1` (or absent) runs without CFG. */
  readonly guidanceScale?: number;
  /** Channels to guide: `'all'` (default) or a count (DiT's original `forward_with_cfg` guides 3). */
  readonly guidanceChannels?: number | 'all';
  /** A sampler kind of `@ditfa/samplers`, or a factory from any package. Default `dpmpp-2m`. */
  readonly sampler?: SamplerKind | SamplerFactory;
  /** A plan made for this model and configuration (refused otherwise; version 1 is upgraded); default: raw (`full` everywhere). */
  readonly plan?: PlanDocument | PlanDocumentV1;
  readonly onProgress?: (event: StepEvent) => void;
  readonly signal?: AbortSignal;
  /** Decode images (default: when the model can decode). */
  readonly images?: boolean;
  /** Starting noise of the latent's shape instead of the seed's (reproducing another implementation's run). */
  readonly noise?: Tensor;
}

/** The parts of the generate options a plan fingerprint depends on (plus the adapter's size fields). */
export type FingerprintOptions = Pick<GenerateOptionsBase, 'steps' | 'guidanceScale' | 'sampler'>;

export interface GenerateResult {
  /** Final latents `[N, C, (T,) H, W]`. */
  readonly latents: Tensor;
  /** Decoded images `[N, C, H', W']` (or frames) in `[-1, 1]`, when decoded. */
  readonly images?: Tensor;
  /** One PNG per sample, when decoded 4-D images. */
  readonly png?: readonly Uint8Array[];
  readonly timings: { readonly attentionMs: number; readonly otherMs: number; readonly decodeMs: number };
  readonly cache: CacheStats;
  /**
   * Attention FLOPs of what ran, counted like the planner counts a plan (each method's `flops`, told
   * which caches it writes for later steps) but with the method a strategy fell back to in place of
   * the planned one. Without fallbacks `fraction` equals the plan's `totals.attentionFlopsFraction`.
   */
  readonly attention: AttentionWork;
  /** The sampler's name (as in plan fingerprints). */
  readonly sampler: string;
}

/** A lookup that always knows `full` (the raw model), with one `full` object for the pipeline's lifetime. */
function withFull(base: StrategyLookup): StrategyLookup {
  const full = fullStrategy();
  return {
    get: (name) => base.get(name) ?? (name === 'full' ? full : undefined),
    names: () => (base.names().includes('full') ? base.names() : [...base.names(), 'full']),
  };
}

/** Everything one generation (or calibration run) owns: nothing of it is shared with another. */
interface Run<Cond> {
  readonly n: number;
  readonly cond: Cond;
  readonly cfg: CfgLayout | null;
  readonly scale: number;
  readonly channels: number | 'all';
  readonly latent: LatentSpec;
  readonly layers: readonly AttentionLayer[];
  readonly sampler: Sampler;
  readonly cache: CacheManager;
  readonly tally: RunTally;
  rng: Rng;
  x: Tensor;
  /** Entries the adapter gives (restored after every step), or null. */
  readonly given: GivenLatents | null;
}

/**
 * The denoising pipeline over a model adapter ({@link DenoiserModel}): the sampler loop with
 * classifier-free guidance in the adapter's batch order, the plan's fingerprint check, one attention
 * dispatcher per step (the method for each (step, layer), fallbacks, FLOPs), NaN/Inf detection, and
 * the planner's calibration target on the same run object. Every generation owns its caches, sampler
 * and RNG, so concurrent `generate()` calls on one pipeline equal the same calls made in turn.
 */
export class Pipeline<Cond = unknown, State = unknown, Options = unknown> {
  readonly model: DenoiserModel<Cond, State, Options>;
  readonly #options: PipelineOptions;
  readonly #strategies: StrategyLookup;
  #backend: Promise<KernelBackend> | undefined;
  #disposed = false;

  constructor(model: DenoiserModel<Cond, State, Options>, options: PipelineOptions = {}) {
    this.model = model;
    this.#options = options;
    this.#strategies = withFull(options.strategies ? strategySet(options.strategies) : strategyRegistry);
    if (options.cacheBudgetBytes !== undefined) expectInteger('cacheBudgetBytes', options.cacheBudgetBytes, 0);
    if (options.strategies) checkStrategySet(this.#strategies);
  }

  /** The strategies this pipeline runs and notifies. */
  get strategies(): StrategyLookup {
    return this.#strategies;
  }

  /**
   * The kernel backend (resolved once): the option's, else the registry's highest-priority backend that
   * can be created, else core's reference backend. The `backend` event names it and, when it is not the
   * registry's first choice (a native addon that did not build, say), carries the reason.
   */
  backend(): Promise<KernelBackend> {
    this.#backend ??= (async () => {
      if (this.#options.backend) return this.#options.backend;
      try {
        const { backend, failures } = await resolveBackendDetailed();
        const fallbackReason = failures.length === 0 ? undefined : `Using the "${backend.name}" kernel backend because:\n${describeFailures(failures)}`;
        this.#options.onEvent?.({ type: 'backend', name: backend.name, ...(fallbackReason ? { fallbackReason } : {}) });
        return backend;
      } catch (error) {
        // By code, not class: the registry may belong to another copy of @ditfa/core.
        if ((error as { code?: unknown })?.code !== ErrorCode.BackendUnavailable) throw error;
        const b = createReferenceBackend();
        this.#options.onEvent?.({ type: 'backend', name: b.name, fallbackReason: (error as Error).message });
        return b;
      }
    })();
    return this.#backend;
  }

  #check(): void {
    if (this.#disposed) throw new PipelineDisposedError();
  }

  /**
   * The attention layers of a generation with these options, windows applied: for `batch` rows (both
   * CFG halves), by default the rows the options' conditioning gives (one sample when it has none).
   */
  layers(options: FingerprintOptions & Partial<Options>, batch?: number): readonly AttentionLayer[] {
    const cfg = (options.guidanceScale ?? 1) > 1;
    const latent = this.model.latent(options);
    const rows = batch ?? (cfg ? 2 : 1) * this.#samples(options, cfg);
    const base = this.model.attentionLayers(latent, rows, cfg);
    const w = this.#options.window;
    if (w === undefined) return base;
    return defineLayers(base.map(({ id: _id, index: _index, ...l }) => ({ ...l, window: typeof w === 'function' ? w({ ...l, id: _id, index: _index }) : l.window === null ? null : w })));
  }

  /** Samples the options' conditioning holds, or 1 when they hold none (fingerprints do not depend on it). */
  #samples(options: Partial<Options>, cfg: boolean): number {
    try {
      return this.model.condition(options as Options, cfg).n;
    } catch {
      return 1;
    }
  }

  #sampler(options: FingerprintOptions): Sampler {
    const steps = expectInteger('steps', options.steps, 1);
    const s = options.sampler ?? 'dpmpp-2m';
    if (typeof s === 'string') return createSampler({ kind: s, steps });
    if (!s || typeof (s as SamplerFactory).create !== 'function') {
      throw new InvalidArgumentError(`Expected a sampler kind or a SamplerFactory { create(options) } but received ${describeValue(s)}`);
    }
    const made = validateSampler((s as SamplerFactory).create({ steps }));
    if (made.steps !== steps) throw new InvalidArgumentError(`Expected the sampler factory to make a ${steps}-step sampler but it made one of ${made.steps} steps`);
    return made;
  }

  /** What a plan for a generation with these options must have been made for. */
  fingerprint(options: FingerprintOptions & Partial<Options>): PlanFingerprint {
    const cfg = (options.guidanceScale ?? 1) > 1;
    const latent = this.model.latent(options);
    return this.#fingerprint(options, latent, this.layers(options), this.#sampler(options), cfg);
  }

  #fingerprint(options: Pick<GenerateOptionsBase, 'steps' | 'guidanceScale'>, latent: LatentSpec, layers: readonly AttentionLayer[], sampler: Sampler, cfg: boolean): PlanFingerprint {
    return {
      model: { architecture: this.model.architecture, weightsHash: this.model.weightsHash },
      latent: { ...latent },
      steps: options.steps,
      sampler: sampler.name,
      guidance: cfg ? options.guidanceScale! : null,
      cfgOrder: cfg ? this.model.cfgOrder : 'none',
      layers: layers.map((l) => ({ id: l.id, window: l.window })),
    };
  }

  /** A fresh run: conditioning, layers, sampler, RNG, starting noise and caches of its own. */
  #newRun(options: Options & GenerateOptionsBase): Run<Cond> & { fingerprint: PlanFingerprint } {
    this.#check();
    expectInteger('seed', options.seed, 0);
    const steps = expectInteger('steps', options.steps, 1);
    const scale = options.guidanceScale ?? 1;
    expectFinite('guidanceScale', scale);
    const cfg = scale > 1;
    const channels = options.guidanceChannels ?? 'all';
    const sampler = this.#sampler({ ...options, steps });
    const m = this.model;
    if (sampler.prediction !== m.prediction) {
      throw new InvalidArgumentError(`Expected a sampler for ${m.prediction} prediction (what this model predicts) but the ${sampler.name} sampler takes ${sampler.prediction}`);
    }
    if (sampler.wantsVariance && !m.learnSigma) {
      throw new InvalidArgumentError(`Expected a learned-sigma model for the ${sampler.name} sampler but this model predicts ${m.prediction} only`);
    }
    const latent = m.latent(options);
    const { cond, n } = m.condition(options, cfg);
    expectInteger('batch size', n, 1);
    const layers = this.layers(options, cfg ? 2 * n : n);
    const fingerprint = this.#fingerprint(options, latent, layers, sampler, cfg);
    const rng = createRng(options.seed);
    const shape = latentShape(latent, n);
    const given = checkGiven(m.given?.(options, shape, sampler.kind) ?? null, shape);
    const x = withGiven(initialNoise(rng, sampler, shape, options.noise), given);
    const cache = new CacheManager({
      ...(this.#options.cacheBudgetBytes === undefined ? {} : { budgetBytes: this.#options.cacheBudgetBytes }),
      onEvent: (e) => this.#options.onEvent?.(e),
    });
    checkStrategySet(this.#strategies);
    return { n, cond, cfg: cfg ? { order: m.cfgOrder } : null, scale, channels, latent, layers, sampler, cache, tally: newTally(), rng, x, given, fingerprint };
  }

  /** The plan view of a generation: the plan (validated against this run) or `full` everywhere. */
  #planView(run: { layers: readonly AttentionLayer[]; fingerprint: PlanFingerprint; sampler: Sampler }, plan: PlanDocument | PlanDocumentV1 | undefined): PlanView {
    if (!plan) return uniformPlanView(run.sampler.steps, run.layers.length, 'full');
    const doc = validatePlan(plan, { methods: this.#strategies });
    checkPlanFingerprint(doc, run.fingerprint);
    return planView(doc);
  }

  /** The dispatcher of `run` at `step` (the plan view, or a planner trial's `methodFor` and caches in `extra`). */
  async #dispatcher(run: Run<Cond>, step: number, view: PlanView, extra: Partial<DispatcherInit> = {}): Promise<Attend> {
    return createDispatcher({
      step,
      numSteps: run.sampler.steps,
      layers: run.layers,
      plan: view,
      strategies: this.#strategies,
      backend: await this.backend(),
      cache: run.cache,
      cfg: run.cfg,
      compute: this.#options.compute ?? 'fp32',
      onEvent: (e) => this.#options.onEvent?.(e),
      ...extra,
    });
  }

  /** One model evaluation of `run` at `step`: embed, every layer through the dispatcher, output. */
  async #forward(run: Run<Cond>, step: number, view: PlanView, signal: AbortSignal | undefined): Promise<Tensor> {
    const attend = await this.#dispatcher(run, step, view, { tally: run.tally, ...(signal ? { signal } : {}) });
    const state = await this.model.embed(this.#modelInput(run), run.sampler.timesteps[step]!, run.cond);
    return this.model.output(await this.model.runLayers(state, 0, run.layers.length, attend));
  }

  #modelInput(run: Run<Cond>): Tensor {
    return run.cfg ? concatBatch([run.x, run.x]) : run.x;
  }

  /**
   * Re-runs `step` layer by layer with every attention output and every state checked, and throws a
   * {@link NumericalFaultError} naming the first layer whose output is not finite. Caches are those of
   * the failed run: the generation is over either way.
   */
  async #locateFault(run: Run<Cond>, step: number, view: PlanView, output: Tensor): Promise<never> {
    // No events: the re-run repeats what the failed step already reported.
    const attend = await this.#dispatcher(run, step, view, { checkFinite: true, onEvent: () => {} });
    const inspect = (state: State, layer: string | null, where: string): void => {
      for (const t of this.model.inspect?.(state) ?? []) {
        const bad = firstNonFinite(t.data);
        if (bad >= 0) throw new NumericalFaultError({ step, layer, where, index: bad, value: t.data[bad]! });
      }
    };
    let state = await this.model.embed(this.#modelInput(run), run.sampler.timesteps[step]!, run.cond);
    inspect(state, null, 'the state entering the first attention layer (the embedding)');
    for (let i = 0; i < run.layers.length; i++) {
      state = await this.model.runLayers(state, i, i + 1, attend);
      inspect(state, run.layers[i]!.id, 'the state after the layer (its attention and the dense work up to the next layer)');
    }
    const bad = firstNonFinite(output.data);
    throw new NumericalFaultError({ step, layer: null, where: 'the model output', index: Math.max(bad, 0), value: output.data[Math.max(bad, 0)]! });
  }

  /** What the sampler consumes from a model output: guidance in the adapter's order, the prediction alone unless the sampler wants the variance. */
  #prediction(run: Run<Cond>, output: Tensor): Tensor {
    const guided = run.cfg ? guide(output, { order: run.cfg.order, scale: run.scale, channels: run.channels }) : output;
    return !run.sampler.wantsVariance && this.model.learnSigma ? splitLearnedSigma(guided).eps : guided;
  }

  /** Sampler step from a model output. */
  #advance(run: Run<Cond>, step: number, output: Tensor): void {
    const modelOut = this.#prediction(run, output);
    const x = run.x;
    run.x = withGiven(run.sampler.step(modelOut, step, x, run.sampler.needsNoise(step) ? run.rng.randn(x.shape) : undefined), run.given);
  }

  /** Runs one generation. */
  async generate(options: Options & GenerateOptionsBase): Promise<GenerateResult> {
    const run = this.#newRun(options);
    const view = this.#planView(run, options.plan);
    const steps = run.sampler.steps;
    let otherMs = 0;
    const checkFinite = this.#options.checkFinite ?? true;
    for (let i = 0; i < steps; i++) {
      throwIfAborted(options.signal, 'The generation');
      const attention0 = run.tally.attentionMs;
      const t0 = performance.now();
      const output = await this.#forward(run, i, view, options.signal);
      if (checkFinite && firstNonFinite(output.data) >= 0) await this.#locateFault(run, i, view, output);
      this.#advance(run, i, output);
      const stepAttention = run.tally.attentionMs - attention0;
      const stepOther = performance.now() - t0 - stepAttention;
      otherMs += stepOther;
      const event: StepEvent = { type: 'step', step: i + 1, steps, timestep: run.sampler.timesteps[i]!, attentionMs: stepAttention, otherMs: stepOther };
      options.onProgress?.(event);
      this.#options.onEvent?.(event);
    }
    const stats = run.cache.stats();
    const base = { latents: run.x, cache: stats, attention: attentionWork(run.tally), sampler: run.sampler.name };
    const decode = options.images ?? this.model.decode !== undefined;
    if (!decode) return { ...base, timings: { attentionMs: run.tally.attentionMs, otherMs, decodeMs: 0 } };
    if (!this.model.decode) {
      throw new InvalidArgumentError('Expected a model that can decode latents (images: true) but this model has no decoder; a latent-space model needs its VAE decoder (models-dit: the `vae` option)');
    }
    const d0 = performance.now();
    const images = await this.model.decode(run.x);
    const png = images.shape.length === 4 ? tensorToImages(images).map((img) => new Uint8Array(encodePng(img))) : undefined;
    return { ...base, images, ...(png ? { png } : {}), timings: { attentionMs: run.tally.attentionMs, otherMs, decodeMs: performance.now() - d0 } };
  }

  /**
   * The planner's calibration target (core's `CalibrationTarget`): the same run as {@link generate} —
   * conditioning, sampler, guidance, caches — driven step by step over ranges of attention layers.
   * Guidance must be on (`guidanceScale > 1`) for ASC candidates to mean anything. `latents()` gives the
   * current sample (after the last `advance`).
   */
  calibrationTarget(options: Options & GenerateOptionsBase): CalibrationTarget<State> & { latents(): Tensor | null } {
    let run = this.#newRun(options);
    const layers = run.layers;
    let started = false;
    const embedInput = (): Tensor => this.#modelInput(run);
    return {
      numSteps: run.sampler.steps,
      layers,
      fingerprint: run.fingerprint,
      strategies: this.#strategies,
      begin: async () => {
        run = this.#newRun(options);
        started = true;
        return { cache: run.cache };
      },
      embed: async (step) => {
        if (!started) throw new InvalidArgumentError('Expected begin() before embed()');
        return this.model.embed(embedInput(), run.sampler.timesteps[step]!, run.cond);
      },
      runLayers: async (state, from, to, r) => {
        const attend = await this.#dispatcher(run, r.step, r.plan, { methodFor: r.methodFor, cache: r.cache });
        return this.model.runLayers(state, from, to, attend);
      },
      output: async (state) => this.model.output(state),
      prediction: async (output) => this.#prediction(run, output),
      advance: async (step, output) => {
        if (!started) throw new InvalidArgumentError('Expected begin() before advance()');
        this.#advance(run, step, output);
      },
      latents: () => (started ? run.x : null),
    };
  }

  /** Releases the model (when owned). Generations in flight finish with errors from the model. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
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

/** Checks what an adapter's `given` returned against the latents' shape. */
function checkGiven(given: GivenLatents | null, shape: readonly number[]): GivenLatents | null {
  if (given === null) return null;
  const v = given.values;
  if (!v || !(v.data instanceof Float32Array) || v.shape.join() !== shape.join()) {
    throw new ShapeMismatchError(`Expected the given latents of shape [${shape.join(', ')}] but received ${describeValue(v?.shape ?? v)}`);
  }
  if (!(given.mask instanceof Uint8Array) || given.mask.length !== v.data.length) {
    throw new ShapeMismatchError(`Expected a Uint8Array mask of ${v.data.length} given-entry flags but received ${describeValue(given.mask?.length ?? given.mask)}`);
  }
  for (let i = 0; i < v.data.length; i++) {
    if (given.mask[i] && !Number.isFinite(v.data[i]!)) throw new InvalidArgumentError(`Expected finite given latents but entry ${i} is ${v.data[i]}`);
  }
  return given;
}

/** `x` with the given entries written in (a new tensor; `x` itself when nothing is given). */
function withGiven(x: Tensor, given: GivenLatents | null): Tensor {
  if (given === null) return x;
  const out = Float32Array.from(x.data);
  const { mask } = given;
  const values = given.values.data;
  for (let i = 0; i < out.length; i++) if (mask[i]) out[i] = values[i]!;
  return tensor(out, x.shape);
}

/** A pipeline over a model adapter (see {@link Pipeline}). */
export function createPipeline<Cond, State, Options>(model: DenoiserModel<Cond, State, Options>, options: PipelineOptions = {}): Pipeline<Cond, State, Options> {
  return new Pipeline(model, options);
}
