import type { AttentionLayer, PlanDocument } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { siteFractions } from '../src/commands/demo-video.js';

const layer = (index: number, site: string, tokens: number, kvTokens?: number): AttentionLayer =>
  ({ id: `${index}.${site}`, index, block: index, site, batch: 2, tokens, ...(kvTokens === undefined ? {} : { kvTokens }), heads: 2, headDim: 4, cfg: true, window: null }) as AttentionLayer;

describe('siteFractions', () => {
  it('weights each (step, layer) entry by that layer\'s full-attention FLOPs, per site', () => {
    // spatial: two layers of 8 and 4 tokens (FLOPs ∝ 64 and 16); cross: one layer of 8 queries × 2 keys (∝ 16)
    const layers = [layer(0, 'spatial', 8), layer(1, 'spatial', 4), layer(2, 'cross', 8, 2)];
    const e = (f: number) => ({ method: 'x', loss: null, flopsFraction: f });
    const plan = { steps: [[e(1), e(1), e(1)], [e(0.5), e(0), e(0.25)]] } as unknown as PlanDocument;
    const f = siteFractions(layers, plan);
    // spatial: (64·1 + 16·1 + 64·0.5 + 16·0) / (2·(64 + 16)) = 112 / 160
    expect(f.spatial).toBeCloseTo(112 / 160, 12);
    expect(f.cross).toBeCloseTo((1 + 0.25) / 2, 12);
    expect(siteFractions(layers, null)).toEqual({ spatial: 1, cross: 1 });
  });
});
