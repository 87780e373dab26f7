import { describe, expect, it } from 'vitest';
import { ErrorCode, defineLayers, layerChannels, layerId, layerShape, parseLayerId, rawAttentionFlops, type LayerSpec } from '../src/index.js';

/** One Open-Sora-like block: spatial self-attention per frame, temporal per position, cross-attention to 6 text tokens. */
function openSoraBlock(block: number): LayerSpec[] {
  // 2 samples under CFG (4 rows), 3 frames of a 2×4 token grid
  return [
    { block, site: 'spatial', batch: 4 * 3, tokens: 8, heads: 2, headDim: 4, cfg: true, window: { kind: '2d', rows: 2, cols: 4, radius: 1 } },
    { block, site: 'temporal', batch: 4 * 8, tokens: 3, heads: 2, headDim: 4, cfg: true, window: { kind: '1d', size: 1 } },
    { block, site: 'cross', batch: 4, tokens: 24, kvTokens: 6, heads: 2, headDim: 4, cfg: true, window: null },
  ];
}

const self = (over: Partial<LayerSpec> = {}): LayerSpec => ({
  block: 0,
  site: 'self',
  batch: 2,
  tokens: 16,
  heads: 2,
  headDim: 8,
  cfg: true,
  window: { kind: '1d', size: 2 },
  ...over,
});

const codeOf = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return (e as { code?: unknown }).code;
  }
  return 'no error';
};

describe('defineLayers', () => {
  it('numbers the layers in model order and names them <block>.<site>', () => {
    const layers = defineLayers([...openSoraBlock(0), ...openSoraBlock(1)]);
    expect(layers.map((l) => l.id)).toEqual(['0.spatial', '0.temporal', '0.cross', '1.spatial', '1.temporal', '1.cross']);
    expect(layers.map((l) => l.index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(layers[4]).toEqual({ ...openSoraBlock(1)[1], id: '1.temporal', index: 4 });
    expect(layers[5]!.kvTokens).toBe(6);
    expect(layers[0]!.kvTokens).toBeUndefined();
    expect(defineLayers([])).toEqual([]);
  });

  it('freezes the list and every layer', () => {
    const layers = defineLayers([self()]);
    expect(Object.isFrozen(layers)).toBe(true);
    expect(Object.isFrozen(layers[0])).toBe(true);
    expect(() => {
      (layers[0] as { tokens: number }).tokens = 3;
    }).toThrow(TypeError);
    expect(() => (layers as unknown as LayerSpec[]).push(self({ block: 1 }))).toThrow(TypeError);
  });

  it('does not keep the caller\'s spec objects', () => {
    const spec = self();
    const [layer] = defineLayers([spec]);
    (spec as { tokens: number }).tokens = 99;
    expect(layer!.tokens).toBe(16);
  });

  it('rejects duplicate ids', () => {
    expect(() => defineLayers([self(), self({ tokens: 4, window: null })])).toThrow(/Expected unique layer ids but "0\.self" appears twice/);
    expect(codeOf(() => defineLayers([self(), self({ block: 1 }), self({ block: 1 })]))).toBe(ErrorCode.InvalidArgument);
    // the same site in two blocks is two layers
    expect(defineLayers([self(), self({ block: 1 })]).map((l) => l.id)).toEqual(['0.self', '1.self']);
  });

  it.each(['Self', '', '1x', 'self attn', 'a.b', '_self', 7])('rejects the site name %j', (site) => {
    expect(codeOf(() => defineLayers([self({ site: site as string })]))).toBe(ErrorCode.InvalidArgument);
  });

  it('accepts site names of lowercase words, digits, - and _', () => {
    expect(defineLayers([self({ site: 'temporal_2' }), self({ site: 'x-attn' })]).map((l) => l.id)).toEqual(['0.temporal_2', '0.x-attn']);
  });

  it('rejects an odd batch on a CFG layer only', () => {
    expect(() => defineLayers([self({ batch: 3 })])).toThrow(/Expected an even batch for CFG layer 0\.self but received 3/);
    expect(codeOf(() => defineLayers([self({ batch: 3 })]))).toBe(ErrorCode.InvalidArgument);
    expect(defineLayers([self({ batch: 3, cfg: false })])[0]!.batch).toBe(3);
  });

  it.each<[string, Partial<LayerSpec>]>([
    ['block', { block: -1 }],
    ['block', { block: 0.5 }],
    ['batch', { batch: 0 }],
    ['batch', { batch: Number.NaN }],
    ['tokens', { tokens: 1.5 }],
    ['heads', { heads: 0 }],
    ['headDim', { headDim: -8 }],
    ['kvTokens', { kvTokens: 2.5, window: null }],
    ['tokens', { tokens: '16' as never }],
  ])('rejects a bad %s with a coded error naming it', (field, over) => {
    expect(codeOf(() => defineLayers([self(), self({ block: 1, ...over })]))).toBe(ErrorCode.InvalidArgument);
    expect(() => defineLayers([self(), self({ block: 1, ...over })])).toThrow(`layers[1].${field}`);
  });

  it('says what it expected and what it received', () => {
    expect(() => defineLayers([self({ tokens: 1.5 })])).toThrow('Expected a positive integer for layers[0].tokens but received 1.5 (number)');
    expect(() => defineLayers([self({ block: -1 })])).toThrow('Expected a non-negative integer for layers[0].block but received -1 (number)');
  });

  it.each<[string, Partial<LayerSpec>]>([
    ['a negative 1-D window', { window: { kind: '1d', size: -1 } }],
    ['a 2-D grid that does not hold the tokens', { window: { kind: '2d', rows: 3, cols: 4, radius: 1 } }],
    ['an unknown window kind', { window: { kind: '3d' } as never }],
    ['a missing window (null is the way to say none)', { window: undefined as never }],
    ['a window on cross-attention', { kvTokens: 6 }],
  ])('rejects %s', (_name, over) => {
    expect(codeOf(() => defineLayers([self(over)]))).toBe(ErrorCode.InvalidArgument);
    expect(() => defineLayers([self(over)])).toThrow(/fits layer 0\.self/);
  });

  it('accepts a window as wide as the sequence and a layer without a window', () => {
    expect(defineLayers([self({ window: { kind: '1d', size: 100 } })])[0]!.window).toEqual({ kind: '1d', size: 100 });
    expect(defineLayers([self({ window: { kind: '2d', rows: 4, cols: 4, radius: 0 } })])[0]!.window).toEqual({ kind: '2d', rows: 4, cols: 4, radius: 0 });
    expect(defineLayers([self({ window: null, kvTokens: 6 })])[0]!.window).toBeNull();
  });
});

describe('layer ids', () => {
  it('parses <block>.<site> and round-trips with layerId', () => {
    expect(parseLayerId('3.self')).toEqual({ block: 3, site: 'self' });
    expect(parseLayerId('12.temporal')).toEqual({ block: 12, site: 'temporal' });
    expect(parseLayerId('0.x-attn_2')).toEqual({ block: 0, site: 'x-attn_2' });
    expect(layerId(7, 'cross')).toBe('7.cross');
    for (const l of defineLayers(openSoraBlock(4))) expect(parseLayerId(l.id)).toEqual({ block: l.block, site: l.site });
  });

  it.each(['self', '3', '3.', '.self', '3.Self', 'a.self', '-1.self', '3.self.x', ' 3.self', 3, null])('rejects %j with a coded error', (id) => {
    expect(codeOf(() => parseLayerId(id as string))).toBe(ErrorCode.InvalidArgument);
    expect(() => parseLayerId(id as string)).toThrow(/Expected a layer id "<block>\.<site>" like "3\.self" but received/);
  });
});

describe('layer shapes', () => {
  it('gives channels H·D and the FLOP-counting shape, kv tokens included', () => {
    const [spatial, temporal, cross] = defineLayers(openSoraBlock(0));
    expect(layerChannels(spatial!)).toBe(8);
    expect(layerShape(spatial!)).toEqual({ batch: 12, tokens: 8, channels: 8, cfg: true, window: { kind: '2d', rows: 2, cols: 4, radius: 1 } });
    expect('kvTokens' in layerShape(temporal!)).toBe(false);
    expect(layerShape(cross!)).toEqual({ batch: 4, tokens: 24, kvTokens: 6, channels: 8, cfg: true, window: null });
    // 4·B·Lq·Lkv·C
    expect(rawAttentionFlops(layerShape(spatial!))).toBe(4 * 12 * 8 * 8 * 8);
    expect(rawAttentionFlops(layerShape(temporal!))).toBe(4 * 32 * 3 * 3 * 8);
    expect(rawAttentionFlops(layerShape(cross!))).toBe(4 * 4 * 24 * 6 * 8);
  });
});
