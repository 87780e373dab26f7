import {
  type AttentionHooks,
  type AttentionLayer,
  type CacheProvider,
  CacheManager,
  type CfgLayout,
  type CfgOrder,
  type ComputeDtype,
  type DenseDtype,
  InvalidArgumentError,
  type KernelBackend,
  type PlanView,
  ShapeMismatchError,
  type StrategyEvent,
  type StrategyLookup,
  type Tensor,
  type WindowSpec,
  createReferenceBackend,
  defineLayers,
  describeValue,
  resolveBackend,
  expectInteger,
  fullStrategy,
  strategySet,
  tensor,
  throwIfAborted,
  uniformPlanView,
} from '@ditfa/core';
import { type Attend, createDispatcher, newTally } from '@ditfa/pipeline';
import { type OrtModule, type OrtSession, type OrtTensor, type SessionOptions, createSession, loadOrt } from '@ditfa/ort-graph';
import { type ModelConfig, type PixartConfig, architectureOf, outChannels } from './config.js';
import { sincosPosEmbed, timestepFrequencies } from './embeddings.js';
import { ModelDisposedError, ModelDenseUnavailableError } from './errors.js';
import { type CrossKv, NativeBlocks, gatherKeys, keptKeys } from './native-blocks.js';
import { blockFeeds, buildDitEmbed, buildFinal, buildOut, buildPixartCaption, buildPixartEmbed, buildPost, buildPre, unpatchify } from './graphs.js';
import type { ModelWeights } from './weights.js';

/** DiT: one class label per batch row (`numClasses` = the null class). */
export interface DitCondition {
  readonly classLabels: ArrayLike<number>;
}

/** PixArt: caption embeddings `[B, Lt, captionChannels]` (e.g. T5 states) and their 1/0 mask `[B·Lt]` (all valid when absent). */
export interface PixartCondition {
  readonly captions: Tensor;
  readonly mask?: ArrayLike<number>;
}

export type Condition = DitCondition | PixartCondition;

/** Who runs the transformer blocks' dense layers. */
export type DenseEngine = 'native' | 'onnxruntime';

export interface LoadOptions extends SessionOptions {
  /** Also output intermediates from the graphs (for golden tests and debugging; slower). */
  readonly taps?: boolean;
  /** `sha256:…` of the weights, for plan fingerprints. */
  readonly weightsHash?: string;
  /**
   * Precision of the blocks' linear layers (q/k/v, out-projection, MLP, PixArt's cross-attention
   * projections). Default `'fp32'`. `'bf16'` rounds each layer's input and weights to bfloat16 and sums
   * in float32 (what PyTorch's bf16 autocast does for a linear layer); it needs the native engine on a
   * CPU with AMX-BF16 or AVX512-BF16 and is never chosen silently. Embedding and final layers stay fp32.
   */
  readonly dense?: DenseDtype;
  /**
   * Who runs the blocks' dense layers: `'native'` (the kernel backend's dense kernels, e.g.
   * `@ditfa/kernels-cpu` on AVX-512), `'onnxruntime'` (one ONNX graph per block piece), or `'auto'`
   * (default): native when the backend has dense kernels for the dtype, else onnxruntime.
   */
  readonly denseEngine?: DenseEngine | 'auto';
  /** The kernel backend whose dense kernels the native engine uses (default: core's `resolveBackend()`). */
  readonly backend?: KernelBackend;
  /**
   * The onnxruntime engine's block sessions: `'shared'` (default) builds each block piece (`pre`, `out`,
   * `post`) once with the weights as inputs and feeds every block its own — one memory arena and one
   * thread pool per piece instead of one per block piece, and no second copy of the weights inside
   * onnxruntime; `'per-block'` builds one session per block piece with the weights as initializers
   * (prepacked, as before issue 16).
   */
  readonly ortBlocks?: 'shared' | 'per-block';
}

/**
 * The state between blocks of one step: which block it enters, the hidden state `[B, L, C]` and (hidden)
 * the step's conditioning. Immutable; made by {@link TransformerModel.embed} and `runBlocks`.
 */
export interface StepState {
  /** Index of the block this state enters (`numBlocks` after the last). */
  readonly block: number;
  readonly batch: number;
  readonly height: number;
  readonly width: number;
  readonly tokens: number;
  /** Milliseconds in the dense layers (onnxruntime's `run`, or the native engine's dense kernels) since `embed` (the rest of a step is attention and JS glue). */
  readonly ortMs: number;
  /** The hidden state entering `block`, `[B, L, C]`; never written to. */
  readonly hidden: Tensor;
}

export type BlockRunOptions = Omit<ForwardOptions, 'startBlock' | 'hiddenIn'> & {
  /** Method of each block (the planner's `methodFor`); wins over `methods` and the plan. */
  readonly methodFor?: (block: number) => string | undefined;
  /** Adds attention milliseconds (dense hooks excluded) to `attentionMs`. */
  readonly tally?: { attentionMs: number };
};

export interface ForwardOptions {
  /** Denoising step index, for strategies and the plan (default 0). */
  readonly step?: number;
  /** The plan strategies see (default: every block `full` for `step + 1` steps). */
  readonly plan?: PlanView;
  /** Per-block method overrides for this step (`undefined` entries use the plan). The planner's "try method m at block i". */
  readonly methods?: ReadonlyArray<string | undefined>;
  /** Strategies by name (default: core's `full` only). Every one of them observes projected outputs. */
  readonly strategies?: StrategyLookup;
  /** Kernel backend strategies use (default: core's reference backend). */
  readonly backend?: KernelBackend;
  /** Caches of the current generation: a CacheManager, or a CacheOverlay for planner trials (default: a fresh manager for this call). */
  readonly cache?: CacheProvider;
  /** CFG layout of the batch (`null`: not a CFG batch). Default `null`. */
  readonly cfg?: CfgLayout | null;
  /** Window for window methods (default 1-D, `L/8` tokens per side). */
  readonly window?: WindowSpec;
  readonly compute?: ComputeDtype;
  /** Start at this block with `hiddenIn` as its input hidden state (prefix reuse). */
  readonly startBlock?: number;
  readonly hiddenIn?: Tensor;
  /** Called with the hidden state entering each block `i` (and `numBlocks` for the final layer's input); never written to afterwards. */
  readonly onHidden?: (block: number, hidden: Tensor) => void;
  readonly onEvent?: (event: StrategyEvent) => void;
  /** Receives intermediates by name (`tokens`, `c`, `mod.0`, `block.0.q`, `block.0.attn_core`, `final_tokens`, …). */
  readonly trace?: (name: string, value: Tensor) => void;
  readonly signal?: AbortSignal;
}

export interface ForwardTimings {
  /** Milliseconds inside `strategy.run` (attention kernels). */
  readonly attentionMs: number;
  /** Milliseconds in everything else (dense graphs, copies). */
  readonly otherMs: number;
  /** Part of `otherMs` in the dense layers (onnxruntime's `run` or the native engine's dense kernels); `otherMs − ortMs` is JS glue (views, copies, unpatchify). */
  readonly ortMs: number;
}

export interface ForwardResult {
  /** `[B, outChannels, H, W]`; with learned sigma, channels `0…in−1` are ε. */
  readonly output: Tensor;
  readonly timings: ForwardTimings;
}

interface BlockSessions {
  readonly pre: OrtSession;
  readonly out: OrtSession;
  readonly post: OrtSession;
  /** The block's weights, for sessions built with weight inputs (shared by every block). */
  readonly feeds?: Readonly<Record<'pre' | 'out' | 'post', Record<string, OrtTensor>>>;
}

/** Picks the dense engine; throws when the options ask for something the backend cannot run. */
async function chooseEngine(options: LoadOptions): Promise<{ engine: DenseEngine; backend: KernelBackend | null; dtype: DenseDtype }> {
  const dtype = options.dense ?? 'fp32';
  if (dtype !== 'fp32' && dtype !== 'bf16') throw new InvalidArgumentError(`Expected dense 'fp32' or 'bf16' but received ${describeValue(dtype)}`);
  const want = options.denseEngine ?? 'auto';
  if (want !== 'auto' && want !== 'native' && want !== 'onnxruntime') {
    throw new InvalidArgumentError(`Expected denseEngine 'auto', 'native' or 'onnxruntime' but received ${describeValue(want)}`);
  }
  if (want === 'onnxruntime') {
    if (dtype !== 'fp32') throw new ModelDenseUnavailableError(`dense '${dtype}' runs on the native engine only; onnxruntime's CPU provider has no bf16 MatMul`, []);
    return { engine: 'onnxruntime', backend: null, dtype };
  }
  let backend = options.backend ?? null;
  const reasons: string[] = [];
  if (!backend) {
    try {
      backend = await resolveBackend();
    } catch (error) {
      reasons.push(`no kernel backend resolved: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  const dense = backend?.dense;
  if (backend && !dense) reasons.push(`the kernel backend '${backend.name}' has no dense kernels`);
  if (dense && !dense.capabilities().dtypes.includes(dtype)) {
    reasons.push(`the kernel backend '${backend!.name}' runs dense ${dense.capabilities().dtypes.join(', ')} here, not ${dtype}`);
  }
  if (reasons.length === 0) return { engine: 'native', backend, dtype };
  if (want === 'auto' && dtype === 'fp32') return { engine: 'onnxruntime', backend: null, dtype };
  throw new ModelDenseUnavailableError(`dense '${dtype}' on the ${want === 'auto' ? 'native' : want} engine is unavailable`, reasons);
}

interface Embedded {
  readonly tokens: OrtTensor;
  readonly mods: readonly OrtTensor[];
  readonly finalMod: OrtTensor;
  readonly cross: ReadonlyArray<Record<string, OrtTensor>> | null;
  readonly nativeCross: readonly CrossKv[] | null;
}

interface StateInternals {
  readonly emb: Embedded;
  readonly hidden: OrtTensor;
}
const stateInternals = new WeakMap<StepState, StateInternals>();

function makeState(fields: Omit<StepState, 'hidden'>, emb: Embedded, hidden: OrtTensor): StepState {
  const state: StepState = Object.freeze({ ...fields, hidden: asTensor(hidden) });
  stateInternals.set(state, { emb, hidden });
  return state;
}

function internals(state: StepState): StateInternals {
  const s = stateInternals.get(state);
  if (!s) throw new InvalidArgumentError(`Expected a step state made by this model's embed() or runBlocks() but received ${describeValue(state)}`);
  return s;
}

const asTensor = (t: OrtTensor, shape?: readonly number[]): Tensor => tensor(t.data as Float32Array, shape ?? t.dims);

/**
 * A DiT or PixArt-Σ model on onnxruntime-node: the dense layers run as ONNX graphs built from the
 * weights (sessions created once), self-attention goes to the strategy the plan names for each
 * (step, block). Create it with {@link TransformerModel.create} or the loaders; release it with
 * {@link TransformerModel.dispose}.
 */
export class TransformerModel {
  readonly config: ModelConfig;
  /** Which CFG half is conditional in this adapter's batches: DiT cond-first, diffusers PixArt cond-second. */
  readonly cfgOrder: CfgOrder;
  readonly weightsHash: string;
  /** PixArt original checkpoints: the learned null caption `[Lt, captionChannels]` (a CFG fallback). */
  readonly nullCaption: Tensor | null;
  readonly #ort: OrtModule;
  readonly #embed: OrtSession;
  readonly #caption: OrtSession | null;
  readonly #blocks: BlockSessions[];
  readonly #native: NativeBlocks | null;
  readonly #final: OrtSession;
  readonly #taps: boolean;
  #ortClock = 0;
  #captionCache: { captions: Tensor; mask: ArrayLike<number> | undefined; value: Record<string, OrtTensor>[]; native: CrossKv[] | null; proj: OrtTensor } | null = null;
  #disposed = false;

  private constructor(init: {
    config: ModelConfig;
    ort: OrtModule;
    embed: OrtSession;
    caption: OrtSession | null;
    blocks: BlockSessions[];
    native: NativeBlocks | null;
    final: OrtSession;
    taps: boolean;
    weightsHash: string;
    nullCaption: Tensor | null;
  }) {
    this.config = init.config;
    this.cfgOrder = init.config.family === 'dit' ? 'cond-first' : 'cond-second';
    this.#ort = init.ort;
    this.#embed = init.embed;
    this.#caption = init.caption;
    this.#blocks = init.blocks;
    this.#native = init.native;
    this.#final = init.final;
    this.#taps = init.taps;
    this.weightsHash = init.weightsHash;
    this.nullCaption = init.nullCaption;
  }

  /** Builds every graph and session (or packs the native engine's weights) from canonical weights (see `canonicalWeights`). */
  static async create(config: ModelConfig, weights: ModelWeights, options: LoadOptions = {}): Promise<TransformerModel> {
    if (weights.family !== config.family) {
      throw new InvalidArgumentError(`Expected ${config.family} weights for a ${config.family} config but received ${weights.family} weights`);
    }
    const ort = await loadOrt();
    const taps = options.taps ?? false;
    const { engine, backend, dtype } = await chooseEngine(options);
    const sessions: OrtSession[] = [];
    // Intra-op threads that spin after each run compete with the kernel backend's own pool on the same
    // cores (measured: bench/results/e2e-*.json); they sleep unless asked otherwise.
    const sessionOptions: SessionOptions = { ...options, spinning: options.spinning ?? false };
    const make = async (bytes: Uint8Array): Promise<OrtSession> => {
      const s = await createSession(bytes, sessionOptions);
      sessions.push(s);
      return s;
    };
    try {
      const embed = await make(weights.family === 'dit' ? buildDitEmbed(config, weights, { taps }) : buildPixartEmbed(config, weights, { taps }));
      const caption = weights.family === 'pixart' ? await make(buildPixartCaption(config as PixartConfig, weights)) : null;
      const blocks: BlockSessions[] = [];
      let native: NativeBlocks | null = null;
      if (engine === 'native') {
        native = new NativeBlocks({ backend: backend!, config, blocks: weights.blocks, dtype, taps });
      } else if ((options.ortBlocks ?? 'shared') === 'shared') {
        const first = weights.blocks[0]!;
        const shared = {
          pre: await make(buildPre(config, first, { taps, weightInputs: true })),
          out: await make(buildOut(config, first, { weightInputs: true })),
          post: await make(buildPost(config, first, { taps, weightInputs: true })),
        };
        const toOrt = (f: Record<string, { data: Float32Array; dims: readonly number[] }>): Record<string, OrtTensor> =>
          Object.fromEntries(Object.entries(f).map(([k, v]) => [k, new ort.Tensor('float32', v.data, v.dims)]));
        for (const b of weights.blocks) {
          const f = blockFeeds(config, b);
          blocks.push({ ...shared, feeds: { pre: toOrt(f.pre), out: toOrt(f.out), post: toOrt(f.post) } });
        }
      } else {
        for (const b of weights.blocks) {
          blocks.push({ pre: await make(buildPre(config, b, { taps })), out: await make(buildOut(config, b)), post: await make(buildPost(config, b, { taps })) });
        }
      }
      const final = await make(buildFinal(config, weights));
      const nullCaption =
        weights.family === 'pixart' && weights.nullCaption
          ? tensor(weights.nullCaption, [weights.nullCaption.length / (config as PixartConfig).captionChannels, (config as PixartConfig).captionChannels])
          : null;
      return new TransformerModel({ config, ort, embed, caption, blocks, native, final, taps, weightsHash: options.weightsHash ?? 'sha256:unknown', nullCaption });
    } catch (error) {
      await Promise.all(sessions.map((s) => s.release()));
      throw error;
    }
  }

  /** Who runs the blocks' dense layers. */
  get denseEngine(): DenseEngine {
    return this.#native ? 'native' : 'onnxruntime';
  }

  /** Precision of the blocks' dense layers. */
  get denseDtype(): DenseDtype {
    return this.#native?.dtype ?? 'fp32';
  }

  /** The kernel backend of the native engine (null on onnxruntime). */
  get denseBackend(): KernelBackend | null {
    return this.#native?.backend ?? null;
  }

  get numBlocks(): number {
    return this.config.depth;
  }

  get numHeads(): number {
    return this.config.numHeads;
  }

  get headDim(): number {
    return this.config.hiddenSize / this.config.numHeads;
  }

  /** Architecture string for plan fingerprints. */
  get architecture(): string {
    return architectureOf(this.config);
  }

  /** Token grid of a latent `H × W`. */
  tokenGrid(height: number, width: number): { rows: number; cols: number; tokens: number } {
    const p = this.config.patchSize;
    return { rows: height / p, cols: width / p, tokens: (height / p) * (width / p) };
  }

  /** The default window of window methods: 1-D, `floor(L/8)` tokens per side (METHOD.md). */
  defaultWindow(height: number, width: number): WindowSpec {
    return { kind: '1d', size: Math.floor(this.tokenGrid(height, width).tokens / 8) };
  }

  #check(): void {
    if (this.#disposed) throw new ModelDisposedError('model');
  }

  #checkLatent(x: Tensor): { B: number; H: number; W: number } {
    if (!x || !(x.data instanceof Float32Array)) throw new InvalidArgumentError(`Expected a float32 latent Tensor but received ${describeValue(x?.data ?? x)}`);
    const c = this.config;
    if (x.shape.length !== 4) throw new ShapeMismatchError(`Expected a latent of shape [B, ${c.inChannels}, H, W] but received [${x.shape.join(', ')}]`);
    const [B, C, H, W] = x.shape as [number, number, number, number];
    if (C !== c.inChannels) throw new ShapeMismatchError(`Expected ${c.inChannels} latent channels but received [${x.shape.join(', ')}]`);
    if (c.family === 'dit' && (H !== c.inputSize || W !== c.inputSize)) {
      throw new ShapeMismatchError(`Expected a ${c.inputSize}×${c.inputSize} latent for this DiT but received ${H}×${W} (shape [${x.shape.join(', ')}])`);
    }
    if (H % c.patchSize !== 0 || W % c.patchSize !== 0 || H === 0 || W === 0 || B === 0) {
      throw new ShapeMismatchError(`Expected a non-empty latent whose height and width are multiples of patch size ${c.patchSize} but received [${x.shape.join(', ')}]`);
    }
    return { B, H, W };
  }

  #timesteps(t: number | ArrayLike<number>, B: number): Float32Array {
    const values = typeof t === 'number' ? new Array(B).fill(t) : Array.from(t);
    if (values.length !== B) throw new ShapeMismatchError(`Expected ${B} timesteps (one per batch row) but received ${values.length}`);
    for (const v of values) if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidArgumentError(`Expected finite timesteps but received ${describeValue(v)}`);
    return timestepFrequencies(values);
  }

  async #prepareCaption(cond: PixartCondition, B: number): Promise<{ value: Record<string, OrtTensor>[]; native: CrossKv[] | null; proj: OrtTensor }> {
    const c = this.config as PixartConfig;
    const cached = this.#captionCache;
    if (cached && cached.captions === cond.captions && cached.mask === cond.mask) return cached;
    const y = cond.captions;
    if (!y || !(y.data instanceof Float32Array)) throw new InvalidArgumentError(`Expected float32 caption embeddings but received ${describeValue(y?.data ?? y)}`);
    if (y.shape.length !== 3 || y.shape[0] !== B || y.shape[2] !== c.captionChannels) {
      throw new ShapeMismatchError(`Expected captions of shape [${B}, Lt, ${c.captionChannels}] but received [${y.shape.join(', ')}]`);
    }
    const Lt = y.shape[1]!;
    const bias = new Float32Array(B * Lt);
    if (cond.mask !== undefined) {
      if (cond.mask.length !== B * Lt) throw new ShapeMismatchError(`Expected a caption mask of ${B}×${Lt} = ${B * Lt} values but received ${cond.mask.length}`);
      for (let i = 0; i < bias.length; i++) {
        const m = cond.mask[i];
        if (m !== 0 && m !== 1) throw new InvalidArgumentError(`Expected caption mask values 0 or 1 but received ${describeValue(m)} at ${i}`);
        bias[i] = m === 1 ? 0 : -1e9;
      }
    }
    const r0 = performance.now();
    const out = await this.#caption!.run({ y: new this.#ort.Tensor('float32', y.data, y.shape) });
    this.#ortClock += performance.now() - r0;
    const biasT = new this.#ort.Tensor('float32', bias, [B, 1, 1, Lt]);
    const value = Array.from({ length: c.depth }, (_, i) => ({ ck: out[`ck_${i}`]!, cv: out[`cv_${i}`]!, bias: biasT }));
    let native: CrossKv[] | null = null;
    if (this.#native) {
      const kept = keptKeys(cond.mask, B, Lt);
      const C = c.hiddenSize;
      native = value.map(({ ck, cv }) => ({
        k: kept.map((keys, b) => gatherKeys(ck.data as Float32Array, b, Lt, C, keys, c.numHeads)),
        v: kept.map((keys, b) => gatherKeys(cv.data as Float32Array, b, Lt, C, keys, c.numHeads)),
      }));
    }
    this.#captionCache = { captions: cond.captions, mask: cond.mask, value, native, proj: out.y_proj! };
    return this.#captionCache;
  }

  async #embedStep(x: Tensor, t: number | ArrayLike<number>, cond: Condition, trace: ForwardOptions['trace']): Promise<Embedded> {
    const { B, H, W } = this.#checkLatent(x);
    const c = this.config;
    const ort = this.#ort;
    const { rows, cols, tokens } = this.tokenGrid(H, W);
    const pos = c.family === 'dit' ? sincosPosEmbed(c.hiddenSize, rows, cols) : sincosPosEmbed(c.hiddenSize, rows, cols, { baseSize: c.sampleSize / c.patchSize, interpolationScale: c.interpolationScale });
    const feeds: Record<string, OrtTensor> = {
      x: new ort.Tensor('float32', x.data, x.shape),
      pos: new ort.Tensor('float32', pos, [1, tokens, c.hiddenSize]),
      tfreq: new ort.Tensor('float32', this.#timesteps(t, B), [B, 256]),
    };
    let cross: Record<string, OrtTensor>[] | null = null;
    let nativeCross: CrossKv[] | null = null;
    if (c.family === 'dit') {
      const labels = (cond as DitCondition).classLabels;
      if (!labels || labels.length !== B) throw new ShapeMismatchError(`Expected ${B} class labels (one per batch row) but received ${describeValue(labels)}`);
      const y = new BigInt64Array(B);
      for (let i = 0; i < B; i++) y[i] = BigInt(expectInteger(`classLabels[${i}]`, labels[i], 0, c.numClasses));
      feeds.y = new ort.Tensor('int64', y, [B]);
    } else {
      const prepared = await this.#prepareCaption(cond as PixartCondition, B);
      cross = prepared.value;
      nativeCross = prepared.native;
      if (trace) {
        trace('y_proj', asTensor(prepared.proj));
        prepared.value.forEach((v, i) => {
          trace(`block.${i}.cross_k`, asTensor(v.ck!));
          trace(`block.${i}.cross_v`, asTensor(v.cv!));
        });
      }
    }
    const r0 = performance.now();
    const out = await this.#embed.run(feeds);
    this.#ortClock += performance.now() - r0;
    if (trace) {
      if (out.x_patch) trace('x_patch', asTensor(out.x_patch));
      trace('pos_embed', tensor(pos, [1, tokens, c.hiddenSize]));
      trace('t_freq', asTensor(feeds.tfreq!));
      for (const name of ['tokens', 't_emb', 'y_emb', 'c', 't_mod', 'final_mod']) if (out[name]) trace(name, asTensor(out[name]!));
      for (let i = 0; i < c.depth; i++) trace(`mod.${i}`, asTensor(out[`mod_${i}`]!));
    }
    return { tokens: out.tokens!, mods: Array.from({ length: c.depth }, (_, i) => out[`mod_${i}`]!), finalMod: out.final_mod!, cross, nativeCross };
  }

  /**
   * Embeds one step's input: `x [B, in, H, W]` at timesteps `t` with condition `cond`. The returned
   * state enters block 0; it is immutable, so one state can start several {@link runBlocks} trials.
   */
  async embed(x: Tensor, t: number | ArrayLike<number>, cond: Condition, options: { trace?: ForwardOptions['trace'] } = {}): Promise<StepState> {
    this.#check();
    const started = performance.now();
    this.#ortClock = 0;
    const emb = await this.#embedStep(x, t, cond, options.trace);
    const [B, , H, W] = x.shape as [number, number, number, number];
    void started;
    return makeState({ block: 0, batch: B, height: H, width: W, tokens: this.tokenGrid(H, W).tokens, ortMs: this.#ortClock }, emb, emb.tokens);
  }

  /** The same step state with another hidden state entering `block` (prefix reuse from a stored `[B, L, C]`). */
  withHidden(state: StepState, block: number, hidden: Tensor): StepState {
    const { emb } = internals(state);
    expectInteger('block', block, 0, this.config.depth);
    const shape = [state.batch, state.tokens, this.config.hiddenSize];
    checkShape('hidden state', hidden, shape);
    return makeState({ ...state, block }, emb, new this.#ort.Tensor('float32', hidden.data, shape));
  }

  /**
   * The attention layers of a batch of `batch` rows on an `height × width` latent: one `self` layer per
   * block (`b.self`), `L = (H/p)·(W/p)` tokens, with `window` (default 1-D, `floor(L/8)` per side).
   */
  attentionLayers(height: number, width: number, batch: number, cfg: boolean, window?: WindowSpec): readonly AttentionLayer[] {
    const { tokens } = this.tokenGrid(height, width);
    const w = window ?? this.defaultWindow(height, width);
    return defineLayers(Array.from({ length: this.config.depth }, (_, block) => ({ block, site: 'self', batch, tokens, heads: this.numHeads, headDim: this.headDim, cfg, window: w })));
  }

  /**
   * Runs blocks `from … to−1` on `state` (which must enter block `from`) and returns the state entering
   * block `to` (layer `i` is block `i`'s self-attention). Each block's self-attention goes through
   * `attend(i, hooks)` — the pipeline's dispatcher — with the block's q/k/v and out-projection as hooks.
   * `state` is not modified.
   */
  async runLayers(
    state: StepState,
    from: number,
    to: number,
    attend: Attend,
    options: {
      trace?: ForwardOptions['trace'];
      onHidden?: ForwardOptions['onHidden'];
      signal?: AbortSignal;
      /** Which CFG half the hooks project for `'conditional'` (default the model's {@link cfgOrder}); must be the dispatcher's `cfg.order`. */
      cfgOrder?: CfgOrder;
    } = {},
  ): Promise<StepState> {
    this.#check();
    const c = this.config;
    const ort = this.#ort;
    const trace = options.trace;
    const { emb, hidden } = internals(state);
    if (from !== state.block) throw new InvalidArgumentError(`Expected runLayers to start at the state's block ${state.block} but received from = ${describeValue(from)}`);
    expectInteger('to', to, from, c.depth);
    const B = state.batch;
    const L = state.tokens;
    const C = c.hiddenSize;
    const heads = this.numHeads;
    const D = this.headDim;
    const cfgOrder = options.cfgOrder ?? this.cfgOrder;
    const half = B / 2;
    const condStart = cfgOrder === 'cond-first' ? 0 : half;

    let h: OrtTensor = hidden;
    let ortMs = 0;
    for (let b = from; b < to; b++) {
      throwIfAborted(options.signal, 'The forward pass');
      options.onHidden?.(b, asTensor(h));
      const mod = emb.mods[b]!;
      if (this.#native) {
        h = await this.#nativeBlock(b, h, mod, emb, { B, L, half, condStart, trace }, attend, (ms) => (ortMs += ms));
        continue;
      }
      const sessions = this.#blocks[b]!;
      const hooks: AttentionHooks = {
        qkv: async (rowSel) => {
          const d0 = performance.now();
          const subset = rowSel === 'conditional';
          if (subset && B % 2 !== 0) throw new ShapeMismatchError(`Expected an even batch for a CFG batch but received batch ${B}`);
          const R = subset ? half : B;
          const qkv = await sessions.pre.run({ ...sessions.feeds?.pre, x: subset ? rowsOf(ort, h, condStart, condStart + half) : h, mod: subset ? rowsOf(ort, mod, condStart, condStart + half) : mod });
          const shape = [R, L, heads, D];
          const out = { q: asTensor(qkv.q!, shape), k: asTensor(qkv.k!, shape), v: asTensor(qkv.v!, shape) };
          if (trace) {
            if (qkv.attn_in) trace(`block.${b}.attn_in`, asTensor(qkv.attn_in));
            for (const n of ['q', 'k', 'v'] as const) trace(`block.${b}.${n}`, out[n]);
          }
          ortMs += performance.now() - d0;
          return out;
        },
        project: async (attention, rowSel) => {
          const d0 = performance.now();
          const R = rowSel === 'conditional' ? half : B;
          trace?.(`block.${b}.attn_core`, attention);
          const y = (await sessions.out.run({ ...sessions.feeds?.out, a: new ort.Tensor('float32', attention.data, [R, L, C]) })).y!;
          ortMs += performance.now() - d0;
          return asTensor(y, [R, L, C]);
        },
      };
      const projectedTensor = await attend(b, hooks);
      const projected = new ort.Tensor('float32', projectedTensor.data, [B, L, C]);
      trace?.(`block.${b}.attn_out`, projectedTensor);
      const feeds: Record<string, OrtTensor> = { ...sessions.feeds?.post, x: h, attn: projected, mod, ...(emb.cross?.[b] ?? {}) };
      const p0 = performance.now();
      const post = await sessions.post.run(feeds);
      ortMs += performance.now() - p0;
      if (trace) for (const n of ['cross_in', 'cross_q', 'cross_core', 'cross_out', 'mlp_in', 'mlp_out']) if (post[n]) trace(`block.${b}.${n}`, asTensor(post[n]!));
      h = post.out!;
      trace?.(`block.${b}.out`, asTensor(h));
    }
    if (to === c.depth) options.onHidden?.(c.depth, asTensor(h));
    return makeState({ ...state, block: to, ortMs: state.ortMs + ortMs }, emb, h);
  }

  /** One block on the native engine: the same hooks and traces as the onnxruntime graphs, on the kernel backend's dense kernels. */
  async #nativeBlock(
    b: number,
    h: OrtTensor,
    mod: OrtTensor,
    emb: Embedded,
    at: { B: number; L: number; half: number; condStart: number; trace: ForwardOptions['trace'] },
    attend: Attend,
    addDense: (ms: number) => void,
  ): Promise<OrtTensor> {
    const native = this.#native!;
    const { B, L, half, condStart, trace } = at;
    const C = this.config.hiddenSize;
    const heads = this.numHeads;
    const D = this.headDim;
    const x = asTensor(h);
    const m = asTensor(mod);
    const hooks: AttentionHooks = {
      qkv: async (rowSel) => {
        const d0 = performance.now();
        const subset = rowSel === 'conditional';
        if (subset && B % 2 !== 0) throw new ShapeMismatchError(`Expected an even batch for a CFG batch but received batch ${B}`);
        const R = subset ? half : B;
        const xs = subset ? rowsOfTensor(x, condStart, condStart + half) : x;
        const ms = subset ? rowsOfTensor(m, condStart, condStart + half) : m;
        const [q, k, v] = await native.qkv(b, xs, ms, L, trace);
        const shape = [R, L, heads, D];
        const out = { q: tensor(q.data, shape), k: tensor(k.data, shape), v: tensor(v.data, shape) };
        if (trace) for (const n of ['q', 'k', 'v'] as const) trace(`block.${b}.${n}`, out[n]);
        addDense(performance.now() - d0);
        return out;
      },
      project: async (attention, rowSel, into) => {
        const d0 = performance.now();
        const R = rowSel === 'conditional' ? half : B;
        trace?.(`block.${b}.attn_core`, attention);
        // ASC: straight into the conditional rows of the layer's output (no copy of the half)
        const y = await native.project(b, tensor(attention.data, [R, L, C]), into);
        addDense(performance.now() - d0);
        return into ?? tensor(y.data, [R, L, C]);
      },
    };
    const projected = await attend(b, hooks);
    trace?.(`block.${b}.attn_out`, projected);
    const p0 = performance.now();
    const out = await native.post(b, x, tensor(projected.data, [B, L, C]), m, L, emb.nativeCross?.[b] ?? null, trace);
    addDense(performance.now() - p0);
    trace?.(`block.${b}.out`, out);
    return new this.#ort.Tensor('float32', out.data, [B, L, C]);
  }

  /**
   * {@link runLayers} with a dispatcher made from `options` (a plan or per-block methods, strategies,
   * backend, caches, CFG layout, window): what {@link forward} uses outside a pipeline (tests, benches).
   */
  async runBlocks(state: StepState, from: number, to: number, options: BlockRunOptions = {}): Promise<StepState> {
    const step = expectInteger('step', options.step ?? 0, 0);
    const c = this.config;
    const cfg = options.cfg ?? null;
    if (cfg && state.batch % 2 !== 0) throw new ShapeMismatchError(`Expected an even batch for a CFG batch but received batch ${state.batch}`);
    const plan = options.plan ?? uniformPlanView(step + 1, c.depth, 'full');
    const layers = this.attentionLayers(state.height, state.width, state.batch, cfg !== null, options.window);
    const tally = newTally();
    const attend = createDispatcher({
      step,
      numSteps: plan.numSteps,
      layers,
      plan,
      methodFor: (b) => options.methodFor?.(b) ?? options.methods?.[b],
      strategies: options.strategies ?? defaultStrategies(),
      backend: options.backend ?? createReferenceBackend(),
      cache: options.cache ?? new CacheManager(),
      cfg,
      compute: options.compute ?? 'fp32',
      tally,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    });
    // The hooks must take the conditional half the dispatcher's strategies were told about.
    const out = await this.runLayers(state, from, to, attend, { ...options, ...(cfg ? { cfgOrder: cfg.order } : {}) });
    if (options.tally) options.tally.attentionMs += tally.attentionMs;
    return out;
  }

  /** The model output `[B, out, H, W]` from the state after the last block (before guidance). */
  async output(state: StepState, options: { trace?: ForwardOptions['trace'] } = {}): Promise<Tensor> {
    this.#check();
    const c = this.config;
    if (state.block !== c.depth) throw new InvalidArgumentError(`Expected a state after the last block (${c.depth}) but received one entering block ${state.block}`);
    const { emb, hidden } = internals(state);
    const fin = (await this.#final.run({ x: hidden, final_mod: emb.finalMod })).tokens!;
    options.trace?.('final_tokens', asTensor(fin));
    const out = outChannels(c);
    const p = c.patchSize;
    return tensor(unpatchify(fin.data as Float32Array, state.batch, state.height / p, state.width / p, p, out), [state.batch, out, state.height, state.width]);
  }

  /**
   * One model evaluation: `x [B, in, H, W]` at timesteps `t` with condition `cond` → `[B, out, H, W]`
   * (`embed`, `runBlocks(0, depth)`, `output`). With `startBlock` and `hiddenIn`, starts from a stored
   * hidden state instead of block 0.
   */
  async forward(x: Tensor, t: number | ArrayLike<number>, cond: Condition, options: ForwardOptions = {}): Promise<ForwardResult> {
    const started = performance.now();
    const startBlock = expectInteger('startBlock', options.startBlock ?? 0, 0, this.config.depth);
    if (startBlock > 0 && !options.hiddenIn) throw new InvalidArgumentError(`Expected hiddenIn with startBlock ${startBlock} but received none`);
    let state = await this.embed(x, t, cond, options);
    if (options.hiddenIn) state = this.withHidden(state, startBlock, options.hiddenIn);
    const tally = { attentionMs: 0 };
    state = await this.runBlocks(state, startBlock, this.config.depth, { ...options, tally });
    const r0 = performance.now();
    const output = await this.output(state, options);
    const ortMs = state.ortMs + performance.now() - r0;
    const total = performance.now() - started;
    return { output, timings: { attentionMs: tally.attentionMs, otherMs: total - tally.attentionMs, ortMs } };
  }

  /** True when graphs also output intermediates. */
  get tapsEnabled(): boolean {
    return this.#taps;
  }

  /** Releases every session and cached condition. Idempotent. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#captionCache = null;
    this.#native?.release();
    const all = new Set([this.#embed, this.#final, ...(this.#caption ? [this.#caption] : []), ...this.#blocks.flatMap((b) => [b.pre, b.out, b.post])]);
    await Promise.all([...all].map((s) => s.release()));
  }
}

let defaults: StrategyLookup | undefined;
function defaultStrategies(): StrategyLookup {
  defaults ??= strategySet([fullStrategy()]);
  return defaults;
}

/** A view (no copy) of rows `[start, end)` of a batch-first tensor. */
function rowsOfTensor(t: Tensor, start: number, end: number): Tensor {
  const row = t.shape.slice(1).reduce((a, b) => a * b, 1);
  return tensor(t.data.subarray(start * row, end * row), [end - start, ...t.shape.slice(1)]);
}

/** A view (no copy) of rows `[start, end)` of a batch-first ORT tensor. */
function rowsOf(ort: OrtModule, t: OrtTensor, start: number, end: number): OrtTensor {
  const dims = t.dims;
  const row = dims.slice(1).reduce((a, b) => a * b, 1);
  return new ort.Tensor('float32', (t.data as Float32Array).subarray(start * row, end * row), [end - start, ...dims.slice(1)]);
}

function checkShape(what: string, t: Tensor, shape: readonly number[]): void {
  if (!t || !(t.data instanceof Float32Array)) throw new InvalidArgumentError(`Expected a float32 Tensor as the ${what} but received ${describeValue(t)}`);
  const ok = t.shape.length === shape.length && shape.every((s, i) => s === t.shape[i]);
  if (!ok) throw new ShapeMismatchError(`Expected the ${what} of shape [${shape.join(', ')}] but received [${t.shape.join(', ')}]`);
}
