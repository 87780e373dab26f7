import {
  CacheManager,
  cfgHalves,
  concatBatch,
  createReferenceBackend,
  executeAttention,
  tensor,
  type AttentionShape,
  type KernelBackend,
  type PlanFingerprint,
  type StrategyLookup,
  type Tensor,
} from '@ditfa/core';
import type { BlockRun, CalibrationTarget } from '../src/index.js';

/**
 * A tiny transformer that follows the strategy contract through core's `executeAttention`, for
 * planner tests: tokens on a 4×4 grid, a CFG batch (cond first), a fake sampler that moves x slowly so
 * consecutive steps are similar. Not a model of anything; the real adapters live in models-dit.
 */
export interface ToyOptions {
  readonly strategies: StrategyLookup;
  readonly blocks?: number;
  readonly steps?: number;
  readonly samples?: number;
  readonly seed?: number;
  readonly backend?: KernelBackend;
}

const L = 16;
const H = 2;
const D = 4;
const C = H * D;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function linear(x: Float32Array, rows: number, w: Float32Array, inDim: number, outDim: number): Float32Array {
  const out = new Float32Array(rows * outDim);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * w[i * outDim + o]!;
      out[r * outDim + o] = s;
    }
  return out;
}

interface Hidden {
  readonly tokens: Tensor;
}

export class ToyTarget implements CalibrationTarget<Hidden> {
  readonly numBlocks: number;
  readonly numSteps: number;
  readonly strategies: StrategyLookup;
  readonly fingerprint: PlanFingerprint;
  readonly blockRuns: number[] = [];
  qkvRows = 0;
  readonly #backend: KernelBackend;
  readonly #samples: number;
  readonly #weights: { qkv: Float32Array; out: Float32Array; mlp: Float32Array }[];
  readonly #head: Float32Array;
  readonly #classes: Float32Array;
  readonly #seed: number;
  #x: Float32Array = new Float32Array(0);
  #cache = new CacheManager();
  readonly outputs: Tensor[] = [];

  constructor(options: ToyOptions) {
    this.numBlocks = options.blocks ?? 3;
    this.numSteps = options.steps ?? 8;
    this.#samples = options.samples ?? 2;
    this.#seed = options.seed ?? 3;
    this.strategies = options.strategies;
    this.#backend = options.backend ?? createReferenceBackend();
    const r = rng(1234);
    const mat = (n: number, scale: number) => Float32Array.from({ length: n }, () => r() * scale);
    this.#weights = Array.from({ length: this.numBlocks }, () => ({ qkv: mat(C * 3 * C, 0.6), out: mat(C * C, 0.3), mlp: mat(C * C, 0.3) }));
    this.#head = mat(C * C, 0.5);
    this.#classes = mat(3 * L * C, 0.5);
    this.fingerprint = {
      model: { architecture: `toy blocks=${this.numBlocks}`, weightsHash: 'sha256:toy' },
      latent: { channels: C, height: 4, width: 4 },
      steps: this.numSteps,
      sampler: 'toy',
      guidance: 2,
      cfgOrder: 'cond-first',
      window: { kind: '1d', size: 2 },
    };
  }

  attentionShape(): AttentionShape {
    return { batch: 2 * this.#samples, tokens: L, channels: C, cfg: true, window: this.fingerprint.window };
  }

  async begin(): Promise<{ cache: CacheManager }> {
    const r = rng(this.#seed);
    this.#x = Float32Array.from({ length: this.#samples * L * C }, () => r());
    this.#cache = new CacheManager();
    this.outputs.length = 0;
    return { cache: this.#cache };
  }

  async embed(step: number): Promise<Hidden> {
    const n = this.#samples;
    const rows = new Float32Array(2 * n * L * C);
    for (let half = 0; half < 2; half++)
      for (let s = 0; s < n; s++)
        for (let j = 0; j < L * C; j++) {
          const cls = half === 0 ? s % 2 : 2; // class 2 is the null class
          rows[(half * n + s) * L * C + j] = this.#x[s * L * C + j]! + this.#classes[cls * L * C + j]! + 0.1 * Math.sin(step + j);
        }
    return { tokens: tensor(rows, [2 * n, L, C]) };
  }

  async runBlocks(hidden: Hidden, from: number, to: number, run: BlockRun): Promise<Hidden> {
    let x = hidden.tokens;
    for (let b = from; b < to; b++) {
      this.blockRuns[b] = (this.blockRuns[b] ?? 0) + 1;
      const w = this.#weights[b]!;
      const method = run.methodFor(b);
      const strategy = this.strategies.get(method);
      if (!strategy) throw new Error(`no strategy ${method}`);
      const input = x;
      const ctx = {
        step: run.step,
        block: b,
        numSteps: this.numSteps,
        numBlocks: this.numBlocks,
        method,
        cfg: { order: 'cond-first' } as const,
        backend: this.#backend,
        plan: run.plan,
        cache: run.cache.scope(b),
        window: this.fingerprint.window,
        compute: 'fp32' as const,
        strategies: this.strategies,
        report: () => {},
      };
      const attn = await executeAttention(strategy, ctx, {
        qkv: async (rows) => {
          const src = rows === 'all' ? input : cfgHalves(input, ctx.cfg).cond;
          const B = src.shape[0]!;
          this.qkvRows += B;
          const qkv = linear(src.data, B * L, w.qkv, C, 3 * C);
          const part = (p: number) => {
            const t = new Float32Array(B * L * C);
            for (let r = 0; r < B * L; r++) for (let c = 0; c < C; c++) t[r * C + c] = qkv[r * 3 * C + p * C + c]!;
            return tensor(t, [B, L, H, D]);
          };
          return { q: part(0), k: part(1), v: part(2) };
        },
        project: async (a) => tensor(linear(a.data, a.shape[0]! * L, w.out, C, C), [a.shape[0]!, L, C]),
      });
      const y = new Float32Array(input.data.length);
      for (let i = 0; i < y.length; i++) y[i] = input.data[i]! + attn.data[i]!;
      const m = linear(y, input.shape[0]! * L, w.mlp, C, C);
      for (let i = 0; i < y.length; i++) y[i]! += 0.3 * Math.tanh(m[i]!);
      x = tensor(y, input.shape);
    }
    return { tokens: x };
  }

  async output(hidden: Hidden): Promise<Tensor> {
    const B = hidden.tokens.shape[0]!;
    return tensor(linear(hidden.tokens.data, B * L, this.#head, C, C), [B, L, C]);
  }

  async advance(_step: number, output: Tensor): Promise<void> {
    const { cond, uncond } = cfgHalves(output, { order: 'cond-first' });
    for (let i = 0; i < this.#x.length; i++) {
      const guided = uncond.data[i]! + 2 * (cond.data[i]! - uncond.data[i]!);
      this.#x[i] = 0.93 * this.#x[i]! + 0.07 * Math.tanh(guided);
    }
    this.outputs.push(concatBatch([output]));
  }

  /** The final sample of the last generation. */
  sample(): Float32Array {
    return Float32Array.from(this.#x);
  }
}
