import type { CheckpointTensor } from '@ditfa/checkpoint';
import { type OpenSoraConfig, headDim } from './config.js';
import { expectedKeys, ropeFrequencies } from './weights.js';

/**
 * A random-weight checkpoint of any config with the official key names, for benchmarks at real sizes
 * and tests that need no fixture: matrices ~ N(0, 1/fan_in) (scale-shift tables too), vectors
 * ~ N(0, 0.05²), RMSNorm weights 1 + N(0, 0.1²), `rope.freqs` as constructed and the null caption
 * ~ N(0, 1/captionChannels) — the golden fixtures' initialisation — from a seeded generator.
 */
export function randomCheckpoint(config: OpenSoraConfig, options: { seed?: number } = {}): Map<string, CheckpointTensor> {
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
  const normal = (data: Float32Array, mean: number, std: number): void => {
    for (let i = 0; i < data.length; i += 2) {
      const r = Math.sqrt(-2 * Math.log(uniform()));
      const a = 2 * Math.PI * uniform();
      data[i] = mean + r * Math.cos(a) * std;
      if (i + 1 < data.length) data[i + 1] = mean + r * Math.sin(a) * std;
    }
  };
  const out = new Map<string, CheckpointTensor>();
  for (const spec of expectedKeys(config)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (spec.key === 'rope.freqs') data = ropeFrequencies(headDim(config));
    else {
      data = new Float32Array(n);
      if (spec.key.endsWith('_norm.weight')) normal(data, 1, 0.1);
      else if (spec.key === 'y_embedder.y_embedding') normal(data, 0, 1 / Math.sqrt(config.captionChannels));
      else normal(data, 0, spec.shape.length >= 2 ? 1 / Math.sqrt(spec.shape.slice(1).reduce((a, b) => a * b, 1)) : 0.05);
    }
    out.set(spec.key, { dtype: 'F32', shape: [...spec.shape], bytes: new Uint8Array(data.buffer) });
  }
  return out;
}
