import type { Tensor } from '@ditfa/core';

/** Deterministic uniform [-1, 1) numbers (mulberry32), so a failing case can be rerun exactly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

export function randomTensor(shape: readonly number[], next: () => number, amplitude = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = next() * amplitude;
  return { data, shape: [...shape] };
}

/** Largest absolute value (the output scale that errors are measured against). */
export function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

/** max |a − b| / scale, with `scale` the expected output's magnitude (1 when it is all zeros). */
export function relError(actual: Float32Array, expected: Float32Array, scale = maxAbs(expected)): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let m = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= m)) m = d; // NaN propagates as a failure
  }
  return m / (scale > 0 ? scale : 1);
}
