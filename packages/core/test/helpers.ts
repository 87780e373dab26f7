import { defineStrategy, tensor, type AttentionStrategy, type PlanView, type StrategySpec, type Tensor } from '../src/index.js';

/** Deterministic pseudo-random numbers in [-1, 1) (mulberry32), for test inputs only. */
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

export function randomTensor(shape: number[], seed: number, scale = 1): Tensor {
  const r = rng(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = r() * scale;
  return tensor(data, shape);
}

export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A plan view over `steps[step][layer]` written by hand; `undefined` entries are undecided. */
export function planOf(steps: readonly (readonly (string | undefined)[])[]): PlanView {
  return {
    numSteps: steps.length,
    numLayers: steps[0]?.length ?? 0,
    methodAt: (step, layer) => steps[step]?.[layer],
  };
}

/** A strategy that only declares caches and FLOPs (run is never called in look-ahead tests). */
export function declaredStrategy(name: string, caches: StrategySpec['caches'] = {}, flops: StrategySpec['flops'] = () => 0): AttentionStrategy {
  return defineStrategy({
    name,
    caches,
    needs: () => 'all',
    run: async () => {
      throw new Error(`${name}.run is not part of this test`);
    },
    flops,
  });
}
