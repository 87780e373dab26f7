import { type BuiltinSamplerFactory, samplerFactory } from '@ditfa/samplers';
import type { VideoSize } from './adapter.js';
import type { OpenSoraConfig } from './config.js';

/** What a generation needs to sample as the official inference configs do. */
export interface OfficialSampling {
  readonly sampler: BuiltinSamplerFactory;
  readonly steps: number;
  readonly guidanceScale: number;
  readonly guidanceChannels: number | 'all';
}

/**
 * The official sampling of each version (`configs/opensora-v1-1/inference/sample.py`,
 * `configs/opensora-v1-2/inference/sample.py`):
 * - v1.1: IDDPM with Open-Sora's float32 tables (`iddpm-opensora`), 100 steps, CFG 7 on the first 3
 *   channels (`cfg_channel=3`; channel 3 and the variance channels come from the conditional half);
 * - v1.2: rectified flow with the timestep transform from the pixel height, width and frames, 30 steps,
 *   CFG 7 on the velocity (its sigma half is dropped).
 * Pass the fields to `generate()`: `{ ...officialSampling(config, size), captions, ... }`.
 */
export function officialSampling(config: Pick<OpenSoraConfig, 'version'>, size: VideoSize): OfficialSampling {
  if (config.version === 'stdit2') return { sampler: samplerFactory({ kind: 'iddpm', iddpmVariant: 'opensora' }), steps: 100, guidanceScale: 7, guidanceChannels: 3 };
  return {
    sampler: samplerFactory({ kind: 'rflow', timestepTransform: { height: size.height, width: size.width, frames: size.frames } }),
    steps: 30,
    guidanceScale: 7,
    guidanceChannels: 'all',
  };
}
