import {
  type AttentionHooks,
  type AttentionLayer,
  CacheManager,
  type CacheProvider,
  type CfgLayout,
  type CfgOrder,
  type ComputeDtype,
  InvalidArgumentError,
  type KernelBackend,
  type LayerSpec,
  type PlanView,
  ShapeMismatchError,
  type StrategyEvent,
  type StrategyLookup,
  type Tensor,
  type WindowSpec,
  createReferenceBackend,
  defineLayers,
  describeValue,
  expectInteger,
  fullStrategy,
  strategySet,
  tensor,
  throwIfAborted,
  uniformPlanView,
} from '@ditfa/core';
import { ModelDisposedError } from '@ditfa/models-dit';
import { type OrtModule, type OrtSession, type OrtTensor, type SessionOptions, createSession, loadOrt } from '@ditfa/ort-graph';
import { type Attend, createDispatcher, newTally } from '@ditfa/pipeline';
import { type OpenSoraConfig, architectureOf, headDim, outChannels } from './config.js';
import { positionEmbedding2D, positionScale, ropeTables, timestepFrequencies } from './embeddings.js';
import { buildCaption, buildEmbed, buildFinal, buildLinear, buildMlp, buildSelfPost, buildSelfPre, unpatchify } from './graphs.js';
import type { CrossAttentionWeights, OpenSoraWeights, SelfAttentionWeights } from './weights.js';

/** A number for every batch row, or one for all rows. */
export type PerRow = number | ArrayLike<number>;

/**
 * What one model evaluation is conditioned on, per batch row (both CFG halves included): the caption
 * embeddings and their mask, and the micro-conditions as the official `forward` takes them (pixel
 * `height`/`width`, `fps`; STDiT2 also `frames` (`num_frames`) and `ar`, default `height / width`).
 */
export interface OpenSoraCondition {
  /** `[B, L, captionChannels]` (or `[B, 1, L, captionChannels]` as the official code passes it). */
  readonly captions: Tensor;
  /** `[B·L]` 1/0 (1 = valid token); all valid when absent. Tokens need not be a prefix. */
  readonly mask?: ArrayLike<number>;
  readonly height: PerRow;
  readonly width: PerRow;
  readonly fps: PerRow;
  /** STDiT2 only: `num_frames` (pixel frames). */
  readonly frames?: PerRow;
  /** STDiT2 only: aspect ratio `height / width` (the default). */
  readonly ar?: PerRow;
  /**
   * `[B·T']` over the token frames, 1 = the frame uses timestep `t`, 0 = it uses the `t = 0` modulation
   * (official `x_mask`); absent = every frame uses `t`.
   */
  readonly xMask?: ArrayLike<number | boolean>;
}

export interface LoadOptions extends SessionOptions {
  /** Also output intermediates from the graphs (golden tests, debugging; slower). */
  readonly taps?: boolean;
  /** `sha256:…` of the weights, for plan fingerprints. */
  readonly weightsHash?: string;
}

/** Token grid of a latent: `T' × H' × W'` after padding to whole patches. */
export interface TokenGrid {
  readonly frames: number;
  readonly rows: number;
  readonly cols: number;
  /** Tokens per frame, `H'·W'`. */
  readonly spatial: number;
  /** All tokens, `T'·H'·W'`. */
  readonly tokens: number;
}

/** Windows of the window methods per site. */
export interface SiteWindows {
  /** Spatial attention: `'1d'` (`floor(S/8)` tokens per side, the default), `'2d'` (a square neighbourhood on the frame grid), a window, or null. */
  readonly spatial?: '1d' | '2d' | WindowSpec | null;
  /** Temporal attention: frames per side of a 1-D window, a window, or null (the default: no window methods). */
  readonly temporal?: number | WindowSpec | null;
}

/**
 * The state between attention layers of one step: the layer it enters, the hidden state `[B, T'·S, C]`
 * and (hidden) the step's conditioning. Immutable; made by {@link OpenSoraModel.embed} and `runLayers`.
 */
export interface OpenSoraState {
  readonly layer: number;
  readonly batch: number;
  /** Latent frames, height and width (unpadded; the output is cropped back to them). */
  readonly size: readonly [number, number, number];
  readonly grid: TokenGrid;
  /** Milliseconds inside onnxruntime's `run` since `embed`. */
  readonly ortMs: number;
  /** The hidden state entering `layer`, `[B, T'·S, C]`; never written to. */
  readonly hidden: Tensor;
}

export interface ForwardOptions {
  /** Denoising step for strategies and the plan (default 0). */
  readonly step?: number;
  /** The plan strategies see (default: every layer `full` for `step + 1` steps). */
  readonly plan?: PlanView;
  /** Per-layer method overrides (the planner's trials). */
  readonly methodFor?: (layer: number) => string | undefined;
  /** Strategies by name (default: core's `full`). */
  readonly strategies?: StrategyLookup;
  /** Kernel backend (default: core's reference backend). */
  readonly backend?: KernelBackend;
  readonly cache?: CacheProvider;
  /** CFG layout of the batch (`null`: not a CFG batch; default). */
  readonly cfg?: CfgLayout | null;
  readonly windows?: SiteWindows;
  readonly compute?: ComputeDtype;
  readonly onEvent?: (event: StrategyEvent) => void;
  /** Receives intermediates by the official module names (`spatial_block.0.attn.q`, `block.0.cross_attn.core`, `final_tokens`, …). */
  readonly trace?: (name: string, value: Tensor) => void;
  readonly signal?: AbortSignal;
}

export interface ForwardResult {
  /** `[B, out, T, H, W]`; with `predSigma`, channels `0…in−1` are the prediction. */
  readonly output: Tensor;
  readonly timings: { readonly attentionMs: number; readonly otherMs: number; readonly ortMs: number };
}

interface CrossKv {
  readonly k: Tensor;
  readonly v: Tensor;
  readonly keyLengths: readonly number[];
}

/** A condition's caption work, cached: the projected captions, every cross site's k/v (valid tokens first), the valid token indices per row. */
interface CaptionPrep {
  readonly captions: Tensor;
  readonly mask: ArrayLike<number> | undefined;
  readonly value: CrossKv[];
  readonly yEmb: Tensor;
  readonly lengths: number[];
  readonly packed: number[][];
}

interface Embedded {
  /** Modulation of every modulation site, `[B, Tm, k·C]`. */
  readonly mods: readonly OrtTensor[];
  readonly finalMod: OrtTensor;
  readonly finalMod0: OrtTensor | null;
  readonly keep: OrtTensor | null;
  readonly cos: OrtTensor;
  readonly sin: OrtTensor;
  readonly cross: readonly CrossKv[];
}

interface StateInternals {
  readonly emb: Embedded;
  readonly hidden: OrtTensor;
}
const stateInternals = new WeakMap<OpenSoraState, StateInternals>();

function makeState(fields: Omit<OpenSoraState, 'hidden'>, emb: Embedded, hidden: OrtTensor): OpenSoraState {
  const { grid } = fields;
  const state: OpenSoraState = Object.freeze({ ...fields, hidden: tensor(hidden.data as Float32Array, [fields.batch, grid.tokens, hidden.dims[3]!]) });
  stateInternals.set(state, { emb, hidden });
  return state;
}

function internals(state: OpenSoraState): StateInternals {
  const s = stateInternals.get(state);
  if (!s) throw new InvalidArgumentError(`Expected a state made by this model's embed() or runLayers() but received ${describeValue(state)}`);
  return s;
}

/** What one attention layer of the model does: a self-attention (spatial or temporal layout) or a cross-attention, and the dense work after it. */
type LayerProgram =
  | {
      readonly kind: 'self';
      readonly block: number;
      readonly site: string;
      readonly layout: 'spatial' | 'temporal';
      readonly pre: OrtSession;
      readonly out: OrtSession;
      readonly post: OrtSession;
      /** Index of its modulation in `Embedded.mods`. */
      readonly mod: number;
      readonly trace: string;
      /** Trace name of the block input when this layer starts a block. */
      readonly inTrace: string | null;
    }
  | {
      readonly kind: 'cross';
      readonly block: number;
      readonly site: string;
      readonly q: OrtSession;
      readonly out: OrtSession;
      readonly mlp: OrtSession;
      readonly mod: number;
      /** Index of its k/v among the caption graph's outputs. */
      readonly kv: number;
      readonly trace: string;
    };

const asTensor = (t: OrtTensor, shape?: readonly number[]): Tensor => tensor(t.data as Float32Array, shape ?? t.dims);

/** A view (no copy) of batch rows `[start, end)` of a batch-first ORT tensor. */
function rowsOf(ort: OrtModule, t: OrtTensor, start: number, end: number): OrtTensor {
  const dims = t.dims;
  const row = dims.slice(1).reduce((a, b) => a * b, 1);
  return new ort.Tensor('float32', (t.data as Float32Array).subarray(start * row, end * row), [end - start, ...dims.slice(1)]);
}

/** `v` as `B` finite numbers (one given for all rows, or one per row). */
function perRow(name: string, v: PerRow | undefined, B: number): number[] {
  if (v === undefined) throw new InvalidArgumentError(`Expected the micro-condition ${name} but received undefined`);
  const values = typeof v === 'number' ? new Array<number>(B).fill(v) : Array.from(v);
  if (values.length !== B) throw new ShapeMismatchError(`Expected ${B} values of ${name} (one per batch row) but received ${values.length}`);
  values.forEach((x, i) => {
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new InvalidArgumentError(`Expected finite numbers for ${name} but received ${describeValue(x)} at ${i}`);
  });
  return values;
}

/**
 * An Open-Sora STDiT2 or STDiT3 model on onnxruntime-node: the dense layers run as ONNX graphs built
 * from the weights (sessions created once), each attention layer — spatial, temporal and cross — goes
 * to the strategy the plan names for each (step, layer). Create it with {@link OpenSoraModel.create} or
 * `loadModel`; release it with {@link OpenSoraModel.dispose}.
 */
export class OpenSoraModel {
  readonly config: OpenSoraConfig;
  /** Official batch order under CFG: `[cond, null]`. */
  readonly cfgOrder: CfgOrder = 'cond-first';
  readonly weightsHash: string;
  /** The learned null caption `[modelMaxLength, captionChannels]`, or null when the checkpoint has none. */
  readonly nullCaption: Tensor | null;
  readonly #ort: OrtModule;
  readonly #embed: OrtSession;
  readonly #caption: OrtSession;
  readonly #final: OrtSession;
  readonly #finalMasked: OrtSession;
  readonly #program: readonly LayerProgram[];
  /** Per modulation site: its table (`[k·C]`) and which conditioning vector it adds to. */
  readonly #modSites: ReadonlyArray<{ table: Float32Array; source: 't_mlp' | 't_tmp_mlp' }>;
  readonly #sessions: readonly OrtSession[];
  readonly #ropeFreqs: Float32Array;
  readonly #taps: boolean;
  #ortClock = 0;
  #captionCache: CaptionPrep | null = null;
  #ropeCache = new Map<number, { cos: OrtTensor; sin: OrtTensor }>();
  #disposed = false;

  private constructor(init: {
    config: OpenSoraConfig;
    ort: OrtModule;
    embed: OrtSession;
    caption: OrtSession;
    final: OrtSession;
    finalMasked: OrtSession;
    program: LayerProgram[];
    modSites: Array<{ table: Float32Array; source: 't_mlp' | 't_tmp_mlp' }>;
    sessions: OrtSession[];
    ropeFreqs: Float32Array;
    taps: boolean;
    weightsHash: string;
    nullCaption: Tensor | null;
  }) {
    this.config = init.config;
    this.#ort = init.ort;
    this.#embed = init.embed;
    this.#caption = init.caption;
    this.#final = init.final;
    this.#finalMasked = init.finalMasked;
    this.#program = init.program;
    this.#modSites = init.modSites;
    this.#sessions = init.sessions;
    this.#ropeFreqs = init.ropeFreqs;
    this.#taps = init.taps;
    this.weightsHash = init.weightsHash;
    this.nullCaption = init.nullCaption;
  }

  /** Builds every graph and session from canonical weights (see `canonicalWeights`). */
  static async create(config: OpenSoraConfig, weights: OpenSoraWeights, options: LoadOptions = {}): Promise<OpenSoraModel> {
    if (weights.version !== config.version) throw new InvalidArgumentError(`Expected ${config.version} weights for a ${config.version} config but received ${weights.version} weights`);
    const ort = await loadOrt();
    const taps = options.taps ?? false;
    const sessions: OrtSession[] = [];
    // onnxruntime's intra-op threads spin after every run by default; with a session per block piece and
    // the attention kernels' own pool on the same cores that made a bundled-model generation 2.5× slower
    // (5 clips × 8 steps: 3.2 s without spinning, 6.9–9.1 s with it). Spinning stays available as an option.
    const sessionOptions: SessionOptions = { ...options, spinning: options.spinning ?? false };
    const make = async (bytes: Uint8Array): Promise<OrtSession> => {
      const s = await createSession(bytes, sessionOptions);
      sessions.push(s);
      return s;
    };
    const posts = new Map<string, Promise<OrtSession>>();
    const post = (layout: 'spatial' | 'temporal', chunks: 6 | 3): Promise<OrtSession> => {
      const key = `${layout}/${chunks}`;
      if (!posts.has(key)) posts.set(key, make(buildSelfPost(config, { layout, chunks })));
      return posts.get(key)!;
    };
    try {
      const ropeOrder = config.version === 'stdit3' ? 'after-norm' : 'before-norm';
      const program: LayerProgram[] = [];
      const modSites: Array<{ table: Float32Array; source: 't_mlp' | 't_tmp_mlp' }> = [];
      const crossSites: CrossAttentionWeights[] = [];
      const selfLayer = async (block: number, site: string, layout: 'spatial' | 'temporal', w: SelfAttentionWeights, chunks: 6 | 3, mod: number, trace: string, inTrace: string | null): Promise<LayerProgram> => ({
        kind: 'self',
        block,
        site,
        layout,
        pre: await make(buildSelfPre(config, w, { layout, chunks, ropeOrder, taps })),
        out: await make(buildLinear(`${site}.out`, w.proj)),
        post: await post(layout, chunks),
        mod,
        trace,
        inTrace,
      });
      const crossLayer = async (block: number, site: string, w: CrossAttentionWeights, mlp: Parameters<typeof buildMlp>[1], mod: number, trace: string): Promise<LayerProgram> => {
        crossSites.push(w);
        return { kind: 'cross', block, site, q: await make(buildLinear(`${site}.q`, w.q)), out: await make(buildLinear(`${site}.out`, w.proj)), mlp: await make(buildMlp(config, mlp, { taps })), mod, kv: crossSites.length - 1, trace };
      };
      if (weights.version === 'stdit3') {
        for (let i = 0; i < config.depth; i++) {
          for (const [kind, b] of [['spatial', weights.spatial[i]!], ['temporal', weights.temporal[i]!]] as const) {
            const mod = modSites.push({ table: b.table, source: 't_mlp' }) - 1;
            const trace = `${kind}_block.${i}`;
            program.push(await selfLayer(i, kind, kind, b.attn, 6, mod, `${trace}.attn`, `${trace}.in`));
            program.push(await crossLayer(i, `${kind}-cross`, b.cross, b.mlp, mod, trace));
          }
        }
      } else {
        for (let i = 0; i < config.depth; i++) {
          const b = weights.blocks[i]!;
          const mod6 = modSites.push({ table: b.table, source: 't_mlp' }) - 1;
          const mod3 = modSites.push({ table: b.tableTemporal, source: 't_tmp_mlp' }) - 1;
          program.push(await selfLayer(i, 'spatial', 'spatial', b.attn, 6, mod6, `block.${i}.spatial_attn`, `block.${i}.in`));
          program.push(await selfLayer(i, 'temporal', 'temporal', b.attnTemp, 3, mod3, `block.${i}.temporal_attn`, null));
          program.push(await crossLayer(i, 'cross', b.cross, b.mlp, mod6, `block.${i}`));
        }
      }
      const embed = await make(buildEmbed(config, weights, { taps }));
      const caption = await make(buildCaption(config, weights, crossSites));
      const final = await make(buildFinal(config, weights, { xMask: false }));
      const finalMasked = await make(buildFinal(config, weights, { xMask: true }));
      const nullCaption = weights.nullCaption ? tensor(weights.nullCaption, [weights.nullCaption.length / config.captionChannels, config.captionChannels]) : null;
      return new OpenSoraModel({ config, ort, embed, caption, final, finalMasked, program, modSites, sessions, ropeFreqs: weights.ropeFreqs, taps, weightsHash: options.weightsHash ?? 'sha256:unknown', nullCaption });
    } catch (error) {
      await Promise.all(sessions.map((s) => s.release()));
      throw error;
    }
  }

  /** Attention layers per step: STDiT3 4 per block pair, STDiT2 3 per block. */
  get numLayers(): number {
    return this.#program.length;
  }

  get numHeads(): number {
    return this.config.numHeads;
  }

  get headDim(): number {
    return headDim(this.config);
  }

  /** Architecture string for plan fingerprints. */
  get architecture(): string {
    return architectureOf(this.config);
  }

  /** True when the graphs also output intermediates. */
  get tapsEnabled(): boolean {
    return this.#taps;
  }

  /** The token grid of a latent `T × H × W` (each side padded to whole patches, as `PatchEmbed3D` does). */
  tokenGrid(frames: number, height: number, width: number): TokenGrid {
    const [pt, ph, pw] = this.config.patchSize;
    const g = { frames: Math.ceil(frames / pt), rows: Math.ceil(height / ph), cols: Math.ceil(width / pw) };
    return { ...g, spatial: g.rows * g.cols, tokens: g.frames * g.rows * g.cols };
  }

  /**
   * The attention layers of a batch of `batch` rows (both CFG halves) on a latent `frames × height ×
   * width`, in the order the official forward runs them, with their default windows:
   * STDiT3 block pair `i`: `i.spatial` (rows `B·T'`, `S` tokens), `i.spatial-cross` (rows `B`, `T'·S`
   * tokens, `modelMaxLength` keys), `i.temporal` (rows `B·S`, `T'` tokens), `i.temporal-cross`;
   * STDiT2 block `i`: `i.spatial`, `i.temporal`, `i.cross`.
   */
  attentionLayers(frames: number, height: number, width: number, batch: number, cfg: boolean, windows: SiteWindows = {}): readonly AttentionLayer[] {
    const g = this.tokenGrid(frames, height, width);
    const heads = this.numHeads;
    const hd = this.headDim;
    const spatialWindow = resolveSpatialWindow(windows.spatial === undefined ? '1d' : windows.spatial, g);
    const t = windows.temporal ?? null;
    const temporalWindow: WindowSpec | null = typeof t === 'number' ? { kind: '1d', size: expectInteger('temporal window', t, 0) } : t;
    const specs: LayerSpec[] = this.#program.map((p) => {
      if (p.kind === 'cross') return { block: p.block, site: p.site, batch, tokens: g.tokens, kvTokens: this.config.modelMaxLength, heads, headDim: hd, cfg, window: null };
      return p.layout === 'spatial'
        ? { block: p.block, site: p.site, batch: batch * g.frames, tokens: g.spatial, heads, headDim: hd, cfg, window: spatialWindow }
        : { block: p.block, site: p.site, batch: batch * g.spatial, tokens: g.frames, heads, headDim: hd, cfg, window: temporalWindow };
    });
    return defineLayers(specs);
  }

  #check(): void {
    if (this.#disposed) throw new ModelDisposedError('Open-Sora model');
  }

  #checkLatent(x: Tensor): { B: number; T: number; H: number; W: number } {
    if (!x || !(x.data instanceof Float32Array)) throw new InvalidArgumentError(`Expected a float32 latent Tensor but received ${describeValue(x?.data ?? x)}`);
    const c = this.config;
    if (x.shape.length !== 5 || x.shape[1] !== c.inChannels) {
      throw new ShapeMismatchError(`Expected a latent video of shape [B, ${c.inChannels}, T, H, W] but received [${x.shape.join(', ')}]`);
    }
    const [B, , T, H, W] = x.shape as [number, number, number, number, number];
    if (B === 0 || T === 0 || H === 0 || W === 0) throw new ShapeMismatchError(`Expected a non-empty latent video but received [${x.shape.join(', ')}]`);
    return { B, T, H, W };
  }

  #captionShape(captions: Tensor, B: number): { L: number } {
    const c = this.config;
    if (!captions || !(captions.data instanceof Float32Array)) throw new InvalidArgumentError(`Expected float32 caption embeddings but received ${describeValue(captions?.data ?? captions)}`);
    const s = captions.shape;
    const ok = (s.length === 3 && s[0] === B && s[2] === c.captionChannels) || (s.length === 4 && s[0] === B && s[1] === 1 && s[3] === c.captionChannels);
    if (!ok) throw new ShapeMismatchError(`Expected captions of shape [${B}, L, ${c.captionChannels}] (or [${B}, 1, L, ${c.captionChannels}]) but received [${s.join(', ')}]`);
    return { L: s[s.length - 2]! };
  }

  /** Caption projection and every cross site's k/v with each row's valid tokens moved to the front (cached per captions and mask). */
  async #prepareCaption(captions: Tensor, mask: ArrayLike<number> | undefined, B: number): Promise<CaptionPrep> {
    const cached = this.#captionCache;
    if (cached && cached.captions === captions && cached.mask === mask) return cached;
    const { L } = this.#captionShape(captions, B);
    const C = this.config.hiddenSize;
    const packed: number[][] = [];
    if (mask !== undefined && mask.length !== B * L) throw new ShapeMismatchError(`Expected a caption mask of ${B}×${L} = ${B * L} values but received ${mask.length}`);
    for (let b = 0; b < B; b++) {
      const rows: number[] = [];
      for (let j = 0; j < L; j++) {
        const m = mask === undefined ? 1 : mask[b * L + j];
        if (m !== 0 && m !== 1) throw new InvalidArgumentError(`Expected caption mask values 0 or 1 but received ${describeValue(m)} at ${b * L + j}`);
        if (m === 1) rows.push(j);
      }
      if (rows.length === 0) throw new InvalidArgumentError(`Expected at least one valid caption token in row ${b} but its mask is all zeros`);
      packed.push(rows);
    }
    const lengths = packed.map((r) => r.length);
    const prefix = packed.every((r) => r.every((j, i) => j === i));
    const r0 = performance.now();
    const out = await this.#caption.run({ y: new this.#ort.Tensor('float32', captions.data, [B, L, this.config.captionChannels]) });
    this.#ortClock += performance.now() - r0;
    const H = this.numHeads;
    const hd = this.headDim;
    const pack = (t: OrtTensor): Tensor => {
      if (prefix) return asTensor(t, [B, L, H, hd]);
      const src = t.data as Float32Array;
      const dst = new Float32Array(src.length);
      packed.forEach((rows, b) => rows.forEach((j, i) => dst.set(src.subarray((b * L + j) * C, (b * L + j + 1) * C), (b * L + i) * C)));
      return tensor(dst, [B, L, H, hd]);
    };
    const value = this.#program.filter((p) => p.kind === 'cross').map((_, i) => ({ k: pack(out[`k_${i}`]!), v: pack(out[`v_${i}`]!), keyLengths: lengths }));
    this.#captionCache = { captions, mask, value, yEmb: asTensor(out.y_emb!), lengths, packed };
    return this.#captionCache;
  }

  #rope(frames: number): { cos: OrtTensor; sin: OrtTensor } {
    let r = this.#ropeCache.get(frames);
    if (!r) {
      const { cos, sin } = ropeTables(this.#ropeFreqs, frames, this.numHeads);
      const dims = [frames, this.config.hiddenSize];
      r = { cos: new this.#ort.Tensor('float32', cos, dims), sin: new this.#ort.Tensor('float32', sin, dims) };
      this.#ropeCache.set(frames, r);
    }
    return r;
  }

  /**
   * Embeds one step's input: `x [B, in, T, H, W]` at timesteps `t` (one for all rows, or one per row)
   * with condition `cond`. The returned state enters layer 0; it is immutable, so one state can start
   * several `runLayers` trials.
   */
  async embed(x: Tensor, t: PerRow, cond: OpenSoraCondition, options: { trace?: ForwardOptions['trace'] } = {}): Promise<OpenSoraState> {
    this.#check();
    this.#ortClock = 0;
    const trace = options.trace;
    const { B, T, H, W } = this.#checkLatent(x);
    const c = this.config;
    const ort = this.#ort;
    const C = c.hiddenSize;
    const grid = this.tokenGrid(T, H, W);
    const [pt, ph, pw] = c.patchSize;
    const padded = padLatent(x, [grid.frames * pt, grid.rows * ph, grid.cols * pw]);
    const heights = perRow('height', cond.height, B);
    const widths = perRow('width', cond.width, B);
    const fps = perRow('fps', cond.fps, B);
    const { scale, baseSize } = positionScale(heights[0]!, widths[0]!, c.inputSqSize, grid.rows, grid.cols);
    const pos = positionEmbedding2D(C, grid.rows, grid.cols, scale, baseSize);
    const timesteps = perRow('timestep', t, B);
    const freq = (v: number[]): OrtTensor => new ort.Tensor('float32', timestepFrequencies(v), [v.length, 256]);
    const feeds: Record<string, OrtTensor> = {
      x: new ort.Tensor('float32', padded.data, padded.shape),
      pos: new ort.Tensor('float32', pos, [1, 1, grid.spatial, C]),
      tfreq: freq(timesteps),
      tfreq0: freq(new Array<number>(B).fill(0)),
      fpsfreq: freq(fps),
    };
    if (c.version === 'stdit2') {
      const frames = perRow('frames', cond.frames, B);
      const ar = cond.ar === undefined ? heights.map((h, i) => h / widths[i]!) : perRow('ar', cond.ar, B);
      feeds.hwfreq = new ort.Tensor('float32', timestepFrequencies(heights.flatMap((h, i) => [h, widths[i]!])), [B, 2, 256]);
      feeds.arfreq = freq(ar);
      feeds.flfreq = freq(frames);
    }
    let keep: boolean[] | null = null;
    if (cond.xMask !== undefined) {
      if (cond.xMask.length !== B * grid.frames) throw new ShapeMismatchError(`Expected x_mask of ${B}×${grid.frames} = ${B * grid.frames} values (batch rows × token frames) but received ${cond.xMask.length}`);
      keep = Array.from(cond.xMask, (m, i) => {
        if (m !== 0 && m !== 1 && m !== true && m !== false) throw new InvalidArgumentError(`Expected x_mask values 0/1 or booleans but received ${describeValue(m)} at ${i}`);
        return m === 1 || m === true;
      });
    }
    const caption = await this.#prepareCaption(cond.captions, cond.mask, B);
    const r0 = performance.now();
    const out = await this.#embed.run(feeds);
    this.#ortClock += performance.now() - r0;
    const Tm = keep ? grid.frames : 1;
    const mods = this.#modSites.map(({ table, source }) => {
      const width = table.length;
      const tm = out[source]!.data as Float32Array;
      const tm0 = out[`${source}0`]!.data as Float32Array;
      const m = new Float32Array(B * Tm * width);
      for (let b = 0; b < B; b++) {
        for (let f = 0; f < Tm; f++) {
          const src = !keep || keep[b * grid.frames + f] ? tm : tm0;
          const o = (b * Tm + f) * width;
          for (let i = 0; i < width; i++) m[o + i] = table[i]! + src[b * width + i]!;
        }
      }
      return new ort.Tensor('float32', m, [B, Tm, width]);
    });
    const rope = this.#rope(grid.frames);
    const emb: Embedded = {
      mods,
      finalMod: out.final_mod!,
      finalMod0: keep ? out.final_mod0! : null,
      keep: keep ? new ort.Tensor('bool', Uint8Array.from(keep, (k) => (k ? 1 : 0)), [B, grid.frames, 1, 1]) : null,
      cos: rope.cos,
      sin: rope.sin,
      cross: caption.value,
    };
    if (trace) {
      const N = grid.tokens;
      if (out.x_patch) trace('x_patch', asTensor(out.x_patch, [B, N, C]));
      trace('pos_emb', tensor(pos, [1, grid.spatial, C]));
      trace('t_freq', asTensor(feeds.tfreq!));
      trace('t_freq.call1', asTensor(feeds.tfreq0!));
      trace('t_emb', asTensor(out.t_emb!));
      trace('t_emb.call1', asTensor(out.t_emb0!));
      trace('fps_emb', asTensor(out.fps_emb!));
      trace('t_mlp', asTensor(out.t_mlp!));
      trace('t_mlp.call1', asTensor(out.t_mlp0!));
      for (const n of ['csize_emb', 'ar_emb', 'fl_emb', 't_tmp_mlp']) if (out[n]) trace(n, asTensor(out[n]!));
      if (out.t_tmp_mlp0) trace('t_tmp_mlp.call1', asTensor(out.t_tmp_mlp0));
      trace('y_emb', caption.yEmb);
      trace('tokens', asTensor(out.tokens!, [B, N, C]));
    }
    return makeState({ layer: 0, batch: B, size: [T, H, W], grid, ortMs: this.#ortClock }, emb, out.tokens!);
  }

  /** The packed valid caption tokens of every row, `[1, Σ lengths, width]` (the official `cond_packed` / `kv_lin` layout), from `[B, L, width]` rows. */
  #packed(rows: readonly Float32Array[], width: number): Tensor {
    const cache = this.#captionCache!;
    const L = rows[0]!.length / width / cache.lengths.length;
    const M = cache.lengths.reduce((a, b) => a + b, 0);
    const out = new Float32Array(M * width * rows.length);
    let o = 0;
    cache.packed.forEach((tokens, b) =>
      tokens.forEach((j) => {
        rows.forEach((r, part) => out.set(r.subarray((b * L + j) * width, (b * L + j + 1) * width), (o * rows.length + part) * width));
        o += 1;
      }),
    );
    return tensor(out, [1, M, width * rows.length]);
  }

  /**
   * Runs from the state entering layer `from` to the state entering layer `to` (`to = numLayers` runs
   * through the last block), calling `attend(i, hooks)` — the pipeline's dispatcher — for each attention
   * layer with its dense work as hooks. `state` is not modified.
   */
  async runLayers(
    state: OpenSoraState,
    from: number,
    to: number,
    attend: Attend,
    options: { trace?: ForwardOptions['trace']; signal?: AbortSignal; cfgOrder?: CfgOrder } = {},
  ): Promise<OpenSoraState> {
    this.#check();
    const ort = this.#ort;
    const trace = options.trace;
    const { emb, hidden } = internals(state);
    if (from !== state.layer) throw new InvalidArgumentError(`Expected runLayers to start at the state's layer ${state.layer} but received from = ${describeValue(from)}`);
    expectInteger('to', to, from, this.numLayers);
    const B = state.batch;
    const g = state.grid;
    const C = this.config.hiddenSize;
    const heads = this.numHeads;
    const hd = this.headDim;
    const half = B / 2;
    const condStart = (options.cfgOrder ?? this.cfgOrder) === 'cond-first' ? 0 : half;
    const range = (rows: 'all' | 'conditional'): [number, number] => {
      if (rows === 'all') return [0, B];
      if (B % 2 !== 0) throw new ShapeMismatchError(`Expected an even batch for a CFG batch but received batch ${B}`);
      return [condStart, condStart + half];
    };
    let h: OrtTensor = hidden;
    let ortMs = 0;
    const run = async (s: OrtSession, feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>> => {
      const t0 = performance.now();
      const out = await s.run(feeds);
      ortMs += performance.now() - t0;
      return out as Record<string, OrtTensor>;
    };
    for (let j = from; j < to; j++) {
      throwIfAborted(options.signal, 'The forward pass');
      const p = this.#program[j]!;
      const mod = emb.mods[p.mod]!;
      const current = h;
      if (p.kind === 'self') {
        const spatial = p.layout === 'spatial';
        const A = spatial ? g.frames : g.spatial;
        const L = spatial ? g.spatial : g.frames;
        if (trace && p.inTrace) trace(p.inTrace, asTensor(current, [B, g.tokens, C]));
        const hooks: AttentionHooks = {
          qkv: async (rows) => {
            const [r0, r1] = range(rows);
            const feeds: Record<string, OrtTensor> = { x: rowsOf(ort, current, r0, r1), mod: rowsOf(ort, mod, r0, r1) };
            if (!spatial) Object.assign(feeds, { cos: emb.cos, sin: emb.sin });
            const out = await run(p.pre, feeds);
            const shape = [(r1 - r0) * A, L, heads, hd];
            const qkv = { q: asTensor(out.q!, shape), k: asTensor(out.k!, shape), v: asTensor(out.v!, shape) };
            if (trace) {
              if (out.attn_in) trace(`${p.trace}.in`, asTensor(out.attn_in, [(r1 - r0) * A, L, C]));
              for (const [name, key] of [['q', 'q_raw'], ['k', 'k_raw'], ['v', 'v'], ['q_normed', 'q_normed'], ['k_normed', 'k_normed'], ['q_rope', 'q_rope'], ['k_rope', 'k_rope']] as const) {
                if (out[key]) trace(`${p.trace}.${name}`, asTensor(out[key]!, shape));
              }
            }
            return qkv;
          },
          project: async (attention) => {
            const R = attention.shape[0]!;
            trace?.(`${p.trace}.core`, tensor(attention.data, [R, L, C]));
            const y = (await run(p.out, { a: new ort.Tensor('float32', attention.data, [R, L, C]) })).y!;
            return asTensor(y, [R, L, C]);
          },
        };
        const projected = await attend(j, hooks);
        trace?.(`${p.trace}.out`, projected);
        const attn = new ort.Tensor('float32', projected.data, spatial ? [B, g.frames, g.spatial, C] : [B, g.spatial, g.frames, C]);
        h = (await run(p.post, { x: current, attn, mod })).out!;
      } else {
        const kv = emb.cross[p.kv]!;
        const N = g.tokens;
        trace?.(`${p.trace}.cross_attn.in`, asTensor(current, [B, N, C]));
        if (trace && this.#captionCache) {
          trace(`${p.trace}.cross_attn.cond_packed`, this.#packed([this.#captionCache.yEmb.data], C));
          trace(`${p.trace}.cross_attn.kv_lin`, this.#packedKv(kv, B, C));
        }
        const hooks: AttentionHooks = {
          qkv: async (rows) => {
            const [r0, r1] = range(rows);
            const x = rowsOf(ort, current, r0, r1);
            const q = (await run(p.q, { a: new ort.Tensor('float32', x.data as Float32Array, [r1 - r0, N, C]) })).y!;
            trace?.(`${p.trace}.cross_attn.q_lin`, asTensor(q, [r1 - r0, N, C]));
            const rowsOfT = (t: Tensor): Tensor => (r0 === 0 && r1 === B ? t : tensor(t.data.subarray(r0 * (t.data.length / B), r1 * (t.data.length / B)), [r1 - r0, ...t.shape.slice(1)]));
            return { q: asTensor(q, [r1 - r0, N, heads, hd]), k: rowsOfT(kv.k), v: rowsOfT(kv.v), keyLengths: kv.keyLengths.slice(r0, r1) };
          },
          project: async (attention) => {
            const R = attention.shape[0]!;
            trace?.(`${p.trace}.cross_attn.core`, tensor(attention.data, [R, N, C]));
            return asTensor((await run(p.out, { a: new ort.Tensor('float32', attention.data, [R, N, C]) })).y!, [R, N, C]);
          },
        };
        const projected = await attend(j, hooks);
        trace?.(`${p.trace}.cross_attn.out`, projected);
        const out = await run(p.mlp, { x: current, cross: new ort.Tensor('float32', projected.data, [B, g.frames, g.spatial, C]), mod });
        if (trace) {
          if (out.mlp_in) trace(`${p.trace}.mlp_in`, asTensor(out.mlp_in, [B, N, C]));
          if (out.mlp_out) trace(`${p.trace}.mlp_out`, asTensor(out.mlp_out, [B, N, C]));
          trace(`${p.trace}.out`, asTensor(out.out!, [B, N, C]));
        }
        h = out.out!;
      }
    }
    return makeState({ ...state, layer: to, ortMs: state.ortMs + ortMs }, emb, h);
  }

  /** A cross site's packed k/v as `[1, Σ lengths, 2C]` (k then v per token, the official `kv_lin`). */
  #packedKv(kv: CrossKv, B: number, C: number): Tensor {
    const M = kv.keyLengths.reduce((a, b) => a + b, 0);
    const L = kv.k.shape[1]!;
    const out = new Float32Array(M * 2 * C);
    let o = 0;
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < kv.keyLengths[b]!; i++) {
        out.set(kv.k.data.subarray((b * L + i) * C, (b * L + i + 1) * C), o * 2 * C);
        out.set(kv.v.data.subarray((b * L + i) * C, (b * L + i + 1) * C), o * 2 * C + C);
        o += 1;
      }
    }
    return tensor(out, [1, M, 2 * C]);
  }

  /** `runLayers` with a dispatcher made from `options` (outside a pipeline: golden tests, benches). */
  async runWith(state: OpenSoraState, from: number, to: number, options: ForwardOptions & { tally?: { attentionMs: number } } = {}): Promise<OpenSoraState> {
    const step = expectInteger('step', options.step ?? 0, 0);
    const cfg = options.cfg ?? null;
    if (cfg && state.batch % 2 !== 0) throw new ShapeMismatchError(`Expected an even batch for a CFG batch but received batch ${state.batch}`);
    const plan = options.plan ?? uniformPlanView(step + 1, this.numLayers, 'full');
    const [T, H, W] = state.size;
    const layers = this.attentionLayers(T, H, W, state.batch, cfg !== null, options.windows);
    const tally = newTally();
    const attend = createDispatcher({
      step,
      numSteps: plan.numSteps,
      layers,
      plan,
      ...(options.methodFor ? { methodFor: options.methodFor } : {}),
      strategies: options.strategies ?? defaultStrategies(),
      backend: options.backend ?? createReferenceBackend(),
      cache: options.cache ?? new CacheManager(),
      cfg,
      compute: options.compute ?? 'fp32',
      tally,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    });
    const out = await this.runLayers(state, from, to, attend, { ...(options.trace ? { trace: options.trace } : {}), ...(options.signal ? { signal: options.signal } : {}), ...(cfg ? { cfgOrder: cfg.order } : {}) });
    if (options.tally) options.tally.attentionMs += tally.attentionMs;
    return out;
  }

  /** The model output `[B, out, T, H, W]` from the state after the last layer (before guidance). */
  async output(state: OpenSoraState, options: { trace?: ForwardOptions['trace'] } = {}): Promise<Tensor> {
    this.#check();
    if (state.layer !== this.numLayers) throw new InvalidArgumentError(`Expected a state after the last layer (${this.numLayers}) but received one entering layer ${state.layer}`);
    const { emb, hidden } = internals(state);
    const feeds: Record<string, OrtTensor> = { x: hidden, final_mod: emb.finalMod };
    if (emb.keep) Object.assign(feeds, { final_mod0: emb.finalMod0!, keep: emb.keep });
    const fin = (await (emb.keep ? this.#finalMasked : this.#final).run(feeds)).tokens!;
    const g = state.grid;
    const out = outChannels(this.config);
    const per = fin.dims[3]!;
    options.trace?.('final_tokens', asTensor(fin, [state.batch, g.tokens, per]));
    const [T, H, W] = state.size;
    return tensor(unpatchify(fin.data as Float32Array, state.batch, [g.frames, g.rows, g.cols], this.config.patchSize, out, state.size), [state.batch, out, T, H, W]);
  }

  /** One model evaluation: `embed`, every layer through a dispatcher made from `options`, `output`. */
  async forward(x: Tensor, t: PerRow, cond: OpenSoraCondition, options: ForwardOptions = {}): Promise<ForwardResult> {
    const started = performance.now();
    let state = await this.embed(x, t, cond, options);
    const tally = { attentionMs: 0 };
    state = await this.runWith(state, 0, this.numLayers, { ...options, tally });
    const r0 = performance.now();
    const output = await this.output(state, options);
    const ortMs = state.ortMs + performance.now() - r0;
    return { output, timings: { attentionMs: tally.attentionMs, otherMs: performance.now() - started - tally.attentionMs, ortMs } };
  }

  /** Releases every session and cached condition. Idempotent. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#captionCache = null;
    this.#ropeCache.clear();
    await Promise.all(this.#sessions.map((s) => s.release()));
  }
}

/** The spatial window for a token grid: 1-D `floor(S/8)` per side, or a square neighbourhood of about as many keys. */
export function resolveSpatialWindow(w: '1d' | '2d' | WindowSpec | null, g: Pick<TokenGrid, 'rows' | 'cols' | 'spatial'>): WindowSpec | null {
  if (w === null) return null;
  const size = Math.floor(g.spatial / 8);
  if (w === '1d') return { kind: '1d', size };
  if (w === '2d') return { kind: '2d', rows: g.rows, cols: g.cols, radius: Math.max(1, Math.round((Math.sqrt(2 * size + 1) - 1) / 2)) };
  return w;
}

/** Zero-pads `[B, C, T, H, W]` at the end of T, H and W to `size` (a copy only when needed). */
export function padLatent(x: Tensor, size: readonly [number, number, number]): Tensor {
  const [B, C, T, H, W] = x.shape as [number, number, number, number, number];
  const [Tp, Hp, Wp] = size;
  if (Tp === T && Hp === H && Wp === W) return x;
  const out = new Float32Array(B * C * Tp * Hp * Wp);
  for (let bc = 0; bc < B * C; bc++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const src = ((bc * T + t) * H + h) * W;
        out.set(x.data.subarray(src, src + W), ((bc * Tp + t) * Hp + h) * Wp);
      }
    }
  }
  return tensor(out, [B, C, Tp, Hp, Wp]);
}

let defaults: StrategyLookup | undefined;
function defaultStrategies(): StrategyLookup {
  defaults ??= strategySet([fullStrategy()]);
  return defaults;
}
