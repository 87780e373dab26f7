import {
  type DenseDtype,
  type DenseKernels,
  type KernelBackend,
  type PackedLinear,
  type SampleVectors,
  type Tensor,
  tensor,
} from '@ditfa/core';
import type { ModelConfig } from './config.js';
import { LN_EPS } from './graphs.js';
import type { BlockWeights } from './weights.js';

/**
 * The transformer blocks' dense work on a kernel backend's dense kernels (`KernelBackend.dense`) instead
 * of onnxruntime sessions: per block three calls around self-attention, each fusing what the ONNX graphs
 * run as separate ops and passes over memory.
 *
 * - `qkv`:  LayerNorm + adaLN modulate (prologue) → q/k/v projection, written straight into three
 *           `[R, L, C]` tensors (no split copy).
 * - `project`: the attention out-projection.
 * - `post`: gate + residual; PixArt cross-attention (q projection, masked attention on the backend's
 *           attention kernel, out-projection added in place); LayerNorm + modulate → fc1 + GELU
 *           (epilogue) → fc2 + gated residual (epilogue, in place).
 *
 * Every tensor handed to a strategy or returned is freshly allocated (strategies may keep them); only
 * the MLP's hidden activation lives in a recycled workspace.
 */

/** Per-block packed weights. */
interface PackedBlock {
  readonly qkv: PackedLinear;
  readonly proj: PackedLinear;
  readonly fc1: PackedLinear;
  readonly fc2: PackedLinear;
  readonly crossQ?: PackedLinear;
  readonly crossProj?: PackedLinear;
}

/** PixArt cross-attention keys and values of one block for one caption batch: per batch row, its unmasked keys. */
export interface CrossKv {
  /** `[1, Lk_b, H, D]` per batch row (views when the row has no masked key). */
  readonly k: readonly Tensor[];
  readonly v: readonly Tensor[];
}

export interface NativeTrace {
  (name: string, value: Tensor): void;
}

/**
 * The rows of a caption batch whose mask keeps them, per batch row: indices of kept keys (all keys when
 * a row keeps none, which softmax over the unmasked scores then equals; onnxruntime's additive −1e9
 * bias instead averages the values uniformly there — a caption with no token is not a real input).
 */
export function keptKeys(mask: ArrayLike<number> | undefined, B: number, Lt: number): number[][] {
  return Array.from({ length: B }, (_, b) => {
    const kept: number[] = [];
    for (let j = 0; j < Lt; j++) if (mask === undefined || mask[b * Lt + j] === 1) kept.push(j);
    return kept.length === 0 ? Array.from({ length: Lt }, (_, j) => j) : kept;
  });
}

/** Gathers rows `kept` of `[Lt, C]` row `b` of `x [B, Lt, C]` as `[1, |kept|, H, D]` (a view when all are kept). */
export function gatherKeys(x: Float32Array, b: number, Lt: number, C: number, kept: readonly number[], heads: number): Tensor {
  const base = b * Lt * C;
  if (kept.length === Lt) return tensor(x.subarray(base, base + Lt * C), [1, Lt, heads, C / heads]);
  const out = new Float32Array(kept.length * C);
  kept.forEach((j, i) => out.set(x.subarray(base + j * C, base + (j + 1) * C), i * C));
  return tensor(out, [1, kept.length, heads, C / heads]);
}

export class NativeBlocks {
  readonly dtype: DenseDtype;
  readonly #dense: DenseKernels;
  readonly #backend: KernelBackend;
  readonly #config: ModelConfig;
  readonly #blocks: PackedBlock[];
  readonly #taps: boolean;
  /** Free MLP workspaces (`[rows, mlpHidden]`), reused by calls that do not overlap. */
  readonly #free: Float32Array[] = [];

  constructor(init: { backend: KernelBackend; config: ModelConfig; blocks: readonly BlockWeights[]; dtype: DenseDtype; taps: boolean }) {
    const dense = init.backend.dense!;
    this.#dense = dense;
    this.#backend = init.backend;
    this.#config = init.config;
    this.dtype = init.dtype;
    this.#taps = init.taps;
    const pack = (w: BlockWeights['qkv']): PackedLinear => dense.pack(w, init.dtype);
    this.#blocks = init.blocks.map((b) => ({
      qkv: pack(b.qkv),
      proj: pack(b.proj),
      fc1: pack(b.fc1),
      fc2: pack(b.fc2),
      ...(b.crossQ ? { crossQ: pack(b.crossQ) } : {}),
      ...(b.crossProj ? { crossProj: pack(b.crossProj) } : {}),
    }));
  }

  /** Bytes of the packed weights. */
  get packedBytes(): number {
    let n = 0;
    for (const b of this.#blocks) for (const p of Object.values(b) as PackedLinear[]) n += p.data.byteLength;
    return n;
  }

  /** The backend these blocks run on (dense kernels and PixArt's cross-attention). */
  get backend(): KernelBackend {
    return this.#backend;
  }

  #mod(mod: Tensor, chunk: number, tokens: number): SampleVectors {
    return { table: mod, offset: chunk * this.#config.hiddenSize, rowsPerSample: tokens };
  }

  /** q, k, v `[R, L, C]` of block `b` from hidden rows `x [R, L, C]` and their adaLN vectors `mod [R, 6C]`. */
  async qkv(b: number, x: Tensor, mod: Tensor, tokens: number, trace?: NativeTrace): Promise<[Tensor, Tensor, Tensor]> {
    const shift = this.#mod(mod, 0, tokens);
    const scale = this.#mod(mod, 1, tokens);
    if (this.#taps && trace) trace(`block.${b}.attn_in`, await this.#dense.layerNormModulate(x, shift, scale, LN_EPS));
    const [q, k, v] = await this.#dense.linear(x, this.#blocks[b]!.qkv, { normModulate: { shift, scale, eps: LN_EPS }, split: 3 });
    return [q!, k!, v!];
  }

  /** The attention out-projection of block `b`: `[R, L, C] → [R, L, C]`, into `out` when given (`R·L·C` floats). */
  async project(b: number, attention: Tensor, out?: Tensor): Promise<Tensor> {
    const [y] = await this.#dense.linear(attention, this.#blocks[b]!.proj, out ? { out: [out] } : {});
    return y!;
  }

  /**
   * Everything after self-attention in block `b`: `x + gate·attn`, PixArt's cross-attention (with `cross`),
   * the MLP branch with its gated residual. Returns the hidden state entering block `b + 1` (`[B, L, C]`).
   */
  async post(b: number, x: Tensor, attn: Tensor, mod: Tensor, tokens: number, cross: CrossKv | null, trace?: NativeTrace): Promise<Tensor> {
    const c = this.#config;
    const C = c.hiddenSize;
    const dense = this.#dense;
    const block = this.#blocks[b]!;
    const rows = x.data.length / C;
    const taps = this.#taps && trace !== undefined;
    const h = await dense.gatedAdd(x, attn, this.#mod(mod, 2, tokens));
    if (cross) {
      if (taps) trace(`block.${b}.cross_in`, tensor(h.data.slice(), h.shape));
      const [q] = await dense.linear(h, block.crossQ!);
      if (taps) trace(`block.${b}.cross_q`, q!);
      const B = rows / tokens;
      const heads = c.numHeads;
      // every row's attention writes its whole span: a recycled workspace, not fresh zeroed memory
      const core = this.#take(rows * C);
      try {
        for (let r = 0; r < B; r++) {
          const span = (a: Float32Array): Float32Array => a.subarray(r * tokens * C, (r + 1) * tokens * C);
          await this.#backend.attention(tensor(span(q!.data), [1, tokens, heads, C / heads]), cross.k[r]!, cross.v[r]!, {
            out: tensor(span(core), [1, tokens, heads, C / heads]),
          });
        }
        const coreT = tensor(core, [rows, C]);
        if (taps) {
          trace(`block.${b}.cross_core`, tensor(core.slice(), [rows, C]));
          const [out] = await dense.linear(coreT, block.crossProj!);
          trace(`block.${b}.cross_out`, out!);
          await dense.gatedAdd(h, out!, undefined, { out: h });
        } else {
          await dense.linear(coreT, block.crossProj!, { residual: { tensor: h }, out: [h] });
        }
      } finally {
        this.#give(core);
      }
    }
    const shift = this.#mod(mod, 3, tokens);
    const scale = this.#mod(mod, 4, tokens);
    const gate = this.#mod(mod, 5, tokens);
    if (taps) trace(`block.${b}.mlp_in`, await dense.layerNormModulate(h, shift, scale, LN_EPS));
    const hidden = block.fc1.outFeatures;
    const work = this.#take(rows * hidden);
    try {
      const u = tensor(work, [rows, hidden]);
      await dense.linear(h, block.fc1, { normModulate: { shift, scale, eps: LN_EPS }, activation: 'gelu-tanh', out: [u] });
      if (taps) {
        const [mlp] = await dense.linear(u, block.fc2);
        trace(`block.${b}.mlp_out`, mlp!);
        await dense.gatedAdd(h, mlp!, gate, { out: h });
      } else {
        await dense.linear(u, block.fc2, { residual: { tensor: h, gate }, out: [h] });
      }
    } finally {
      this.#give(work);
    }
    return tensor(h.data, x.shape);
  }

  #take(length: number): Float32Array {
    const i = this.#free.findIndex((w) => w.length >= length);
    const w = i >= 0 ? this.#free.splice(i, 1)[0]! : new Float32Array(length);
    return w.length === length ? w : w.subarray(0, length);
  }

  #give(work: Float32Array): void {
    // Keep the whole buffer (a subarray's parent) and at most two of them.
    const whole = new Float32Array(work.buffer, 0, work.buffer.byteLength / 4);
    this.#free.push(whole);
    this.#free.sort((a, b) => a.length - b.length);
    if (this.#free.length > 2) this.#free.shift();
  }

  /** Drops the workspaces. */
  release(): void {
    this.#free.length = 0;
  }
}
