import type { CheckpointTensor } from '@ditfa/checkpoint';
import type { ModelConfig } from './config.js';
import { type Layout, expectedKeys } from './weights.js';

/**
 * A random-weight checkpoint of any config, in either key layout, for benchmarks at real sizes and for
 * tests that need no fixture: matrices ~ N(0, 1/fan_in), vectors ~ N(0, 0.05²) (the golden fixtures'
 * initialisation), from a seeded generator so runs repeat. Optional buffers are left out.
 */
export function randomCheckpoint(config: ModelConfig, options: { seed?: number; layout?: Layout; captionTokens?: number } = {}): Map<string, CheckpointTensor> {
  let s = (options.seed ?? 1) >>> 0 || 1;
  const uniform = (): number => {
    // xorshift32
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Map<string, CheckpointTensor>();
  for (const spec of expectedKeys(config, options.layout ?? 'original')) {
    if (spec.optional) continue;
    const shape = spec.shape.map((d) => (d < 0 ? (options.captionTokens ?? 1) : d));
    const n = shape.reduce((a, b) => a * b, 1);
    const std = shape.length >= 2 ? 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)) : 0.05;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      // Box–Muller, two values per draw
      const r = Math.sqrt(-2 * Math.log(uniform()));
      const a = 2 * Math.PI * uniform();
      data[i] = r * Math.cos(a) * std;
      if (i + 1 < n) data[i + 1] = r * Math.sin(a) * std;
    }
    out.set(spec.key, { dtype: 'F32', shape, bytes: new Uint8Array(data.buffer) });
  }
  return out;
}
