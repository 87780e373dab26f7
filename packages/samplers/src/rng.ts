import { expectInteger, numel, tensor, type Tensor } from '@ditfa/core';

/**
 * A seeded random number generator: xoshiro128** (Blackman & Vigna) with its 128-bit state filled from
 * SplitMix64(seed) — two outputs, each split low word first. `uniform()` takes 53 bits from two draws
 * (`(a >>> 5)·2^26 + (b >>> 6)) / 2^53`, in [0, 1)); `normal()` is Box–Muller on `u1 = 1 − uniform()`
 * (in (0, 1]) and `u2 = uniform()`, returning `sqrt(−2 ln u1)·cos(2π u2)` then, on the next call,
 * the `sin` twin. The same seed gives the same stream on every platform.
 */
export interface Rng {
  /** The next 32-bit unsigned integer. */
  nextUint32(): number;
  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number;
  /** Standard normal N(0, 1). */
  normal(): number;
  /** A new float32 tensor of N(0, 1) samples, row-major. */
  randn(shape: readonly number[]): Tensor;
}

const MASK64 = (1n << 64n) - 1n;

function splitMix64(state: bigint): [bigint, bigint] {
  const s = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [s, z ^ (z >> 31n)];
}

export function createRng(seed: number): Rng {
  expectInteger('seed', seed, 0);
  let sm = BigInt(seed);
  const words: number[] = [];
  for (let k = 0; k < 2; k++) {
    const [next, out] = splitMix64(sm);
    sm = next;
    words.push(Number(out & 0xffffffffn), Number(out >> 32n));
  }
  let [s0, s1, s2, s3] = words as [number, number, number, number];
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
  let spare: number | undefined;
  const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;
  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    s2 = (s2 ^ s0) >>> 0;
    s3 = (s3 ^ s1) >>> 0;
    s1 = (s1 ^ s2) >>> 0;
    s0 = (s0 ^ s3) >>> 0;
    s2 = (s2 ^ t) >>> 0;
    s3 = rotl(s3, 11);
    return result;
  };
  const uniform = (): number => ((nextUint32() >>> 5) * 67108864 + (nextUint32() >>> 6)) / 9007199254740992;
  const normal = (): number => {
    if (spare !== undefined) {
      const z = spare;
      spare = undefined;
      return z;
    }
    const u1 = 1 - uniform();
    const u2 = uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  };
  return {
    nextUint32,
    uniform,
    normal,
    randn(shape) {
      const data = new Float32Array(numel(shape));
      for (let k = 0; k < data.length; k++) data[k] = normal();
      return tensor(data, shape);
    },
  };
}
