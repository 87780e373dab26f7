import { expectInteger, tensor, type Tensor } from '@ditfa/core';

/** Deterministic uniform numbers in [-1, 1) (mulberry32). */
export function uniforms(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

/** A tensor of deterministic uniform values in `[-scale, scale)`. */
export function randomTensor(shape: readonly number[], seed: number, scale = 1): Tensor {
  const data = uniforms(
    shape.reduce((a, b) => a * b, 1),
    seed,
  );
  if (scale !== 1) for (let i = 0; i < data.length; i++) data[i]! *= scale;
  return tensor(data, shape);
}

export interface ToyModelConfig {
  readonly blocks: number;
  readonly tokens: number;
  readonly heads: number;
  readonly headDim: number;
  /** Seed of the weights. */
  readonly seed?: number;
}

export interface ToyBlock {
  readonly wq: Float32Array;
  readonly wk: Float32Array;
  readonly wv: Float32Array;
  readonly wo: Float32Array;
  readonly wm: Float32Array;
}

/**
 * A toy DiT-like model: `blocks` blocks of self-attention (random linear q/k/v/out projections of
 * `C = heads·headDim` channels) and a small tanh MLP, on `tokens` tokens. Its weights are deterministic.
 */
export interface ToyModel {
  readonly config: Required<ToyModelConfig>;
  readonly channels: number;
  readonly blocks: readonly ToyBlock[];
  /** Embedding of the "null" condition (the unconditional CFG half). */
  readonly nullCondition: Float32Array;
}

export function createToyModel(config: ToyModelConfig): ToyModel {
  const blocks = expectInteger('blocks', config.blocks, 1);
  const tokens = expectInteger('tokens', config.tokens, 1);
  const heads = expectInteger('heads', config.heads, 1);
  const headDim = expectInteger('headDim', config.headDim, 1);
  const seed = config.seed ?? 1;
  const C = heads * headDim;
  const scale = Math.sqrt(3 / C);
  const matrix = (s: number): Float32Array => randomTensor([C, C], s, scale).data;
  return {
    config: { blocks, tokens, heads, headDim, seed },
    channels: C,
    blocks: Array.from({ length: blocks }, (_, i) => {
      const s = seed * 1000 + i * 10;
      return { wq: matrix(s + 1), wk: matrix(s + 2), wv: matrix(s + 3), wo: matrix(s + 4), wm: matrix(s + 5) };
    }),
    nullCondition: randomTensor([C], seed * 1000 - 1, 0.5).data,
  };
}

/** `x · w` for `x` of `n` rows of `C` and `w` `[C, C]` (row-major, `out[r, j] = Σ_i x[r, i]·w[i, j]`). */
export function linear(x: Float32Array, w: Float32Array, C: number): Float32Array {
  const n = x.length / C;
  const out = new Float32Array(x.length);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < C; i++) {
      const xi = x[r * C + i]!;
      if (xi === 0) continue;
      for (let j = 0; j < C; j++) out[r * C + j]! += xi * w[i * C + j]!;
    }
  }
  return out;
}
