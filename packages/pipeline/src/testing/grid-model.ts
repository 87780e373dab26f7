import {
  type AttentionHooks,
  type AttentionLayer,
  type CfgOrder,
  InvalidArgumentError,
  ShapeMismatchError,
  type Tensor,
  defineLayers,
  describeValue,
  expectInteger,
  tensor,
} from '@ditfa/core';
import type { Attend, DenoiserModel, LatentSpec } from '../model.js';

/**
 * A small pure-TypeScript model on the pipeline, for tests, examples and teaching: a DiT-like ε model
 * on an `H × W` grid of tokens with one or more attention *sites* per block —
 * `self` (all `H·W` tokens, one row per sample), `rows` (along each grid row: `B·H` rows of `W` tokens)
 * and `cols` (along each grid column: `B·W` rows of `H` tokens) — followed by a tanh MLP. Weights are
 * deterministic from a seed. It has what a real adapter has (CFG batches in a stated order, class
 * conditioning with a null class, per-layer windows, immutable states, a decoder) and nothing else.
 */
export interface GridModelConfig {
  readonly blocks: number;
  readonly height: number;
  readonly width: number;
  readonly heads: number;
  readonly headDim: number;
  /** Attention sites of every block, in order (default `['self']`). */
  readonly sites?: readonly GridSite[];
  /** Latent channels (default 4). */
  readonly channels?: number;
  /** Classes (the null class is `classes`; default 10). */
  readonly classes?: number;
  readonly seed?: number;
  readonly cfgOrder?: CfgOrder;
  /** Per-layer weight overrides for tests, e.g. a NaN in one block's MLP: `(block, name, weights) => void`. */
  readonly tamper?: (block: number, name: 'wq' | 'wk' | 'wv' | 'wo' | 'wm', weights: Float32Array) => void;
}

export type GridSite = 'self' | 'rows' | 'cols';

export interface GridOptions {
  /** One class per sample. */
  readonly classLabels: readonly number[];
}

interface GridCondition {
  readonly labels: readonly number[];
}

/** State between attention layers: the hidden state `[B, H·W, C]` entering `layer`, and the step's conditioning. */
export interface GridState {
  readonly layer: number;
  readonly hidden: Tensor;
  /** Per-row conditioning vector `[B, C]` (time + class). */
  readonly condVec: Float32Array;
}

function uniforms(n: number, seed: number, scale: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1) * scale;
  }
  return out;
}

/** `x · w` for `x` of rows of `cin` and `w` `[cin, cout]` row-major. */
function matmul(x: Float32Array, w: Float32Array, cin: number, cout: number): Float32Array {
  const n = x.length / cin;
  const out = new Float32Array(n * cout);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < cin; i++) {
      const xi = x[r * cin + i]!;
      for (let j = 0; j < cout; j++) out[r * cout + j]! += xi * w[i * cout + j]!;
    }
  }
  return out;
}

interface GridBlock {
  readonly sites: ReadonlyArray<{ wq: Float32Array; wk: Float32Array; wv: Float32Array; wo: Float32Array }>;
  readonly wm: Float32Array;
}

/** Token index of grid cell `(r, c)` of a sample. */
const cellIndex = (r: number, c: number, W: number): number => r * W + c;

/** The rows (sequences) of one site: for each sequence, its token indices within a sample. */
function sequences(site: GridSite, H: number, W: number): number[][] {
  if (site === 'self') return [Array.from({ length: H * W }, (_, i) => i)];
  if (site === 'rows') return Array.from({ length: H }, (_, r) => Array.from({ length: W }, (_, c) => cellIndex(r, c, W)));
  return Array.from({ length: W }, (_, c) => Array.from({ length: H }, (_, r) => cellIndex(r, c, W)));
}

export class GridModel implements DenoiserModel<GridCondition, GridState, GridOptions> {
  readonly architecture: string;
  readonly weightsHash: string;
  readonly cfgOrder: CfgOrder;
  readonly prediction = 'eps' as const;
  readonly learnSigma = false;
  readonly config: Required<Omit<GridModelConfig, 'tamper'>>;
  readonly #blocks: GridBlock[];
  readonly #win: Float32Array;
  readonly #wout: Float32Array;
  readonly #classEmb: Float32Array;
  readonly #timeFreq: Float32Array;
  #disposed = false;

  constructor(config: GridModelConfig) {
    const blocks = expectInteger('blocks', config.blocks, 1);
    const height = expectInteger('height', config.height, 1);
    const width = expectInteger('width', config.width, 1);
    const heads = expectInteger('heads', config.heads, 1);
    const headDim = expectInteger('headDim', config.headDim, 1);
    const channels = expectInteger('channels', config.channels ?? 4, 1);
    const classes = expectInteger('classes', config.classes ?? 10, 1);
    const seed = expectInteger('seed', config.seed ?? 1, 0);
    const sites = config.sites ?? ['self'];
    if (!Array.isArray(sites) || sites.length === 0 || sites.some((s) => s !== 'self' && s !== 'rows' && s !== 'cols') || new Set(sites).size !== sites.length) {
      throw new InvalidArgumentError(`Expected sites to be distinct names among 'self', 'rows', 'cols' but received ${describeValue(sites)}`);
    }
    const cfgOrder = config.cfgOrder ?? 'cond-first';
    this.config = { blocks, height, width, heads, headDim, channels, classes, seed, sites, cfgOrder };
    this.cfgOrder = cfgOrder;
    const C = heads * headDim;
    const sc = Math.sqrt(3 / C);
    this.#blocks = Array.from({ length: blocks }, (_, b) => {
      const s = seed * 1000 + b * 20;
      const mk = (k: number, name: 'wq' | 'wk' | 'wv' | 'wo' | 'wm', scale = sc): Float32Array => {
        const w = uniforms(C * C, s + k, scale);
        config.tamper?.(b, name, w);
        return w;
      };
      return {
        sites: sites.map((_, j) => ({ wq: mk(4 * j + 1, 'wq'), wk: mk(4 * j + 2, 'wk'), wv: mk(4 * j + 3, 'wv'), wo: mk(4 * j + 4, 'wo', sc * 0.5) })),
        wm: mk(19, 'wm', sc * 0.5),
      };
    });
    this.#win = uniforms(channels * C, seed * 1000 - 1, Math.sqrt(3 / channels));
    this.#wout = uniforms(C * channels, seed * 1000 - 2, sc);
    this.#classEmb = uniforms((classes + 1) * C, seed * 1000 - 3, 0.5);
    this.#timeFreq = Float32Array.from({ length: C }, (_, i) => Math.exp((-Math.log(1000) * i) / C));
    this.architecture = `grid-toy blocks=${blocks} heads=${heads} headDim=${headDim} sites=${sites.join('+')} channels=${channels}`;
    this.weightsHash = `toy:seed=${seed}${config.tamper ? '+tampered' : ''}`;
  }

  get numLayers(): number {
    return this.config.blocks * this.config.sites.length;
  }

  latent(options: GridOptions): LatentSpec {
    void options;
    return { channels: this.config.channels, height: this.config.height, width: this.config.width };
  }

  condition(options: GridOptions, cfg: boolean): { cond: GridCondition; n: number } {
    const labels = options?.classLabels;
    if (!Array.isArray(labels) || labels.length === 0) throw new InvalidArgumentError(`Expected a non-empty array of class labels but received ${describeValue(labels)}`);
    labels.forEach((l, i) => expectInteger(`classLabels[${i}]`, l, 0, this.config.classes - 1));
    const n = labels.length;
    if (!cfg) return { n, cond: { labels: [...labels] } };
    const nulls = new Array<number>(n).fill(this.config.classes);
    return { n, cond: { labels: this.cfgOrder === 'cond-first' ? [...labels, ...nulls] : [...nulls, ...labels] } };
  }

  attentionLayers(latent: LatentSpec, batch: number, cfg: boolean): readonly AttentionLayer[] {
    const { height: H, width: W } = latent;
    const { heads, headDim, blocks, sites } = this.config;
    const specs = [];
    for (let block = 0; block < blocks; block++) {
      for (const site of sites) {
        const tokens = site === 'self' ? H * W : site === 'rows' ? W : H;
        const rows = site === 'self' ? batch : site === 'rows' ? batch * H : batch * W;
        specs.push({ block, site, batch: rows, tokens, heads, headDim, cfg, window: { kind: '1d' as const, size: Math.max(1, Math.floor(tokens / 4)) } });
      }
    }
    return defineLayers(specs);
  }

  #check(): void {
    if (this.#disposed) throw new InvalidArgumentError('Expected a live grid model but it was disposed');
  }

  async embed(x: Tensor, t: number, cond: GridCondition): Promise<GridState> {
    this.#check();
    const { channels: Cin, height: H, width: W, heads, headDim } = this.config;
    const C = heads * headDim;
    if (x.shape.length !== 4 || x.shape[1] !== Cin || x.shape[2] !== H || x.shape[3] !== W) {
      throw new ShapeMismatchError(`Expected a latent [B, ${Cin}, ${H}, ${W}] but received [${x.shape.join(', ')}]`);
    }
    const B = x.shape[0]!;
    if (cond.labels.length !== B) throw new ShapeMismatchError(`Expected ${B} class labels (one per row) but received ${cond.labels.length}`);
    const L = H * W;
    // tokens [B, L, Cin] from [B, Cin, H, W]
    const tok = new Float32Array(B * L * Cin);
    for (let b = 0; b < B; b++) for (let c = 0; c < Cin; c++) for (let i = 0; i < L; i++) tok[(b * L + i) * Cin + c] = x.data[(b * Cin + c) * L + i]!;
    const hidden = matmul(tok, this.#win, Cin, C);
    const condVec = new Float32Array(B * C);
    for (let b = 0; b < B; b++) {
      const label = cond.labels[b]!;
      for (let j = 0; j < C; j++) condVec[b * C + j] = this.#classEmb[label * C + j]! + 0.5 * Math.sin(t * this.#timeFreq[j]!);
    }
    for (let b = 0; b < B; b++) for (let i = 0; i < L; i++) for (let j = 0; j < C; j++) hidden[(b * L + i) * C + j]! += condVec[b * C + j]!;
    return Object.freeze({ layer: 0, hidden: tensor(hidden, [B, L, C]), condVec });
  }

  async runLayers(state: GridState, from: number, to: number, attend: Attend): Promise<GridState> {
    this.#check();
    if (from !== state.layer) throw new InvalidArgumentError(`Expected runLayers to start at the state's layer ${state.layer} but received from = ${describeValue(from)}`);
    expectInteger('to', to, from, this.numLayers);
    const { height: H, width: W, heads, headDim, sites } = this.config;
    const C = heads * headDim;
    const B = state.hidden.shape[0]!;
    const L = H * W;
    let h = state.hidden.data;
    for (let j = from; j < to; j++) {
      const block = Math.floor(j / sites.length);
      const s = j % sites.length;
      const site = sites[s]!;
      const w = this.#blocks[block]!.sites[s]!;
      const seqs = sequences(site, H, W);
      const T = seqs[0]!.length;
      const R = B * seqs.length;
      const current = h;
      // Gather the site's sequences: row (b, q) holds sample b's tokens seqs[q], [R, T, C].
      const gather = (rows: number, offset: number): Float32Array => {
        const out = new Float32Array(rows * T * C);
        for (let r = 0; r < rows; r++) {
          const b = Math.floor((offset + r) / seqs.length);
          const seq = seqs[(offset + r) % seqs.length]!;
          for (let i = 0; i < T; i++) out.set(current.subarray((b * L + seq[i]!) * C, (b * L + seq[i]!) * C + C), (r * T + i) * C);
        }
        return out;
      };
      const half = B / 2;
      const condStart = this.cfgOrder === 'cond-first' ? 0 : half;
      const hooks: AttentionHooks = {
        qkv: async (rows) => {
          const sub = rows === 'conditional';
          const count = sub ? R / 2 : R;
          const x = gather(count, sub ? condStart * seqs.length : 0);
          const shape = [count, T, heads, headDim];
          return { q: tensor(matmul(x, w.wq, C, C), shape), k: tensor(matmul(x, w.wk, C, C), shape), v: tensor(matmul(x, w.wv, C, C), shape) };
        },
        project: async (attention, rows) => {
          const count = rows === 'conditional' ? R / 2 : R;
          return tensor(matmul(attention.data, w.wo, C, C), [count, T, C]);
        },
      };
      const projected = await attend(j, hooks);
      // Scatter back and add the residual branch.
      const next = Float32Array.from(current);
      for (let r = 0; r < R; r++) {
        const b = Math.floor(r / seqs.length);
        const seq = seqs[r % seqs.length]!;
        for (let i = 0; i < T; i++) {
          const dst = (b * L + seq[i]!) * C;
          const src = (r * T + i) * C;
          for (let c = 0; c < C; c++) next[dst + c]! += projected.data[src + c]!;
        }
      }
      h = next;
      if (s === sites.length - 1) {
        const m = matmul(h, this.#blocks[block]!.wm, C, C);
        const out = new Float32Array(h.length);
        for (let i = 0; i < h.length; i++) out[i] = h[i]! + Math.tanh(m[i]!);
        h = out;
      }
    }
    return Object.freeze({ layer: to, hidden: tensor(h, state.hidden.shape), condVec: state.condVec });
  }

  async output(state: GridState): Promise<Tensor> {
    this.#check();
    if (state.layer !== this.numLayers) throw new InvalidArgumentError(`Expected a state after the last layer (${this.numLayers}) but received one entering layer ${state.layer}`);
    const { channels: Cin, height: H, width: W, heads, headDim } = this.config;
    const C = heads * headDim;
    const B = state.hidden.shape[0]!;
    const L = H * W;
    const tok = matmul(state.hidden.data, this.#wout, C, Cin);
    const out = new Float32Array(B * Cin * L);
    for (let b = 0; b < B; b++) for (let i = 0; i < L; i++) for (let c = 0; c < Cin; c++) out[(b * Cin + c) * L + i] = 0.1 * tok[(b * L + i) * Cin + c]!;
    return tensor(out, [B, Cin, H, W]);
  }

  inspect(state: GridState): readonly Tensor[] {
    return [state.hidden];
  }

  async decode(latents: Tensor): Promise<Tensor> {
    // The first latent channel as a grey image, clipped to [-1, 1].
    const [N, Cin, H, W] = latents.shape as [number, number, number, number];
    const out = new Float32Array(N * H * W);
    for (let n = 0; n < N; n++) for (let i = 0; i < H * W; i++) out[n * H * W + i] = Math.max(-1, Math.min(1, latents.data[n * Cin * H * W + i]!));
    return tensor(out, [N, 1, H, W]);
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
  }
}

/** A {@link GridModel}. */
export function createGridModel(config: GridModelConfig): GridModel {
  return new GridModel(config);
}
