import { InvalidArgumentError, describeValue, expectInteger } from './errors.js';
import type { WindowSpec } from './kernel-backend.js';
import { validateWindow } from './validate-attention.js';

/**
 * Attention layers: the unit of plans and caches. A model has, per block, one or more attention
 * *sites* — DiT and PixArt-Σ one self-attention (`self`, plus PixArt's `cross`), an Open-Sora block a
 * spatial self-attention over each frame's tokens, a temporal self-attention over each position's
 * frames and a cross-attention. Each site of each block is one layer; layers are numbered in the
 * order the model runs them (model order), and plans decide a method per (step, layer).
 */

/** Where in a block an attention runs. Open to more: a model may name its own sites. */
export type AttentionSite = 'self' | 'spatial' | 'temporal' | 'cross' | (string & {});

/** One attention layer of a model for one latent shape and batch. */
export interface AttentionLayer {
  /** Stable id: `<block>.<site>`, e.g. `3.self`, `0.temporal`. */
  readonly id: string;
  /** Position in model order (`0 … numLayers−1`). */
  readonly index: number;
  readonly block: number;
  readonly site: AttentionSite;
  /** Rows of each attention call, both CFG halves included (e.g. `B·T` for spatial attention). */
  readonly batch: number;
  /** Query tokens per row. */
  readonly tokens: number;
  /** Key/value tokens per row (cross-attention); `tokens` when absent. */
  readonly kvTokens?: number;
  readonly heads: number;
  readonly headDim: number;
  /** True when the rows form a CFG batch: the two halves are contiguous along the outer batch. */
  readonly cfg: boolean;
  /** Window of window methods on this layer; `null` where no window method applies. */
  readonly window: WindowSpec | null;
}

const SITE = /^[a-z][a-z0-9_-]*$/;

/** The id of a block's site: `3.self`. */
export function layerId(block: number, site: AttentionSite): string {
  return `${block}.${site}`;
}

/** Parses a layer id into block and site, or throws a coded error. */
export function parseLayerId(id: string): { block: number; site: AttentionSite } {
  const m = typeof id === 'string' ? /^(\d+)\.([a-z][a-z0-9_-]*)$/.exec(id) : null;
  if (!m) throw new InvalidArgumentError(`Expected a layer id "<block>.<site>" like "3.self" but received ${describeValue(id)}`);
  return { block: Number(m[1]), site: m[2]! };
}

/** Input of {@link defineLayers}: one layer without its id and index (model order is the array order). */
export type LayerSpec = Omit<AttentionLayer, 'id' | 'index'>;

/**
 * Numbers layers in model order, checks them (integer sizes, site names, an even CFG batch, a window
 * that fits the layer) and freezes them. Ids must be unique.
 */
export function defineLayers(specs: readonly LayerSpec[]): readonly AttentionLayer[] {
  const seen = new Set<string>();
  const out = specs.map((s, index) => {
    expectInteger(`layers[${index}].block`, s.block, 0);
    if (typeof s.site !== 'string' || !SITE.test(s.site)) {
      throw new InvalidArgumentError(`Expected layers[${index}].site to be a lowercase name like "spatial" but received ${describeValue(s.site)}`);
    }
    for (const k of ['batch', 'tokens', 'heads', 'headDim'] as const) expectInteger(`layers[${index}].${k}`, s[k], 1);
    if (s.kvTokens !== undefined) expectInteger(`layers[${index}].kvTokens`, s.kvTokens, 1);
    if (s.cfg && s.batch % 2 !== 0) throw new InvalidArgumentError(`Expected an even batch for CFG layer ${layerId(s.block, s.site)} but received ${s.batch}`);
    const id = layerId(s.block, s.site);
    if (s.window !== null) {
      // A window must fit the layer as the kernels will check it: self-attention, a 2-D grid holding `tokens`.
      try {
        validateWindow(s.window, { B: s.batch, Lq: s.tokens, Lkv: s.kvTokens ?? s.tokens, H: s.heads, D: s.headDim, scale: 1 });
      } catch (cause) {
        throw new InvalidArgumentError(`Expected a window that fits layer ${id} (or null) but received ${JSON.stringify(s.window) ?? describeValue(s.window)}: ${(cause as Error).message}`, { cause });
      }
    }
    if (seen.has(id)) throw new InvalidArgumentError(`Expected unique layer ids but "${id}" appears twice`);
    seen.add(id);
    return Object.freeze({ ...s, id, index });
  });
  return Object.freeze(out);
}

/** Channels `H·D` of a layer. */
export function layerChannels(layer: Pick<AttentionLayer, 'heads' | 'headDim'>): number {
  return layer.heads * layer.headDim;
}
