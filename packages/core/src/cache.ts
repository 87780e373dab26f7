import { DitfaError, ErrorCode, InvalidArgumentError, describeValue, expectInteger } from './errors.js';
import type { Tensor } from './tensor.js';

/**
 * Caches of one generation (or one calibration run), keyed by (attention layer, kind), with exact byte
 * accounting. The budget policy is **refuse**: a `put` that would take the total above the budget
 * stores nothing, leaves the previous entry under that key untouched, returns `{ stored: false }` and
 * emits a `cache-refused` event, so the caller can fall back to full attention.
 *
 * Cached tensors are kept by reference: whoever puts a tensor must not write to it afterwards.
 * Kinds are the strategies' own strings (`residual` of `@ditfa/strategy-wars`, `projected` of
 * `@ditfa/strategy-ast`, a plugin's); core names none.
 */


export type CachePutResult =
  | { readonly stored: true; readonly bytes: number }
  | { readonly stored: false; readonly bytes: number; readonly reason: 'budget'; readonly budgetBytes: number; readonly wouldUseBytes: number };

export type CacheEvent =
  | { readonly type: 'cache-refused'; readonly layer: number; readonly kind: string; readonly bytes: number; readonly budgetBytes: number; readonly wouldUseBytes: number }
  | { readonly type: 'cache-reset'; readonly generation: number };

export interface CacheManagerOptions {
  /** Upper bound on the cached bytes; unlimited when absent. */
  readonly budgetBytes?: number;
  readonly onEvent?: (event: CacheEvent) => void;
}

export class CacheStaleError extends DitfaError {
  constructor(message: string) {
    super(ErrorCode.CacheStale, message);
  }
}

export interface CacheStats {
  readonly currentBytes: number;
  readonly peakBytes: number;
  readonly entries: number;
  readonly budgetBytes: number | null;
  readonly refusals: number;
  readonly generation: number;
}

/** Anything that hands out per-layer cache scopes: a {@link CacheManager} or a {@link CacheOverlay}. */
export interface CacheProvider {
  scope(layer: number): CacheScope;
}

/** The caches of one layer, handed to strategies in their context. */
export interface CacheScope {
  readonly layer: number;
  get(kind: string): Tensor | undefined;
  has(kind: string): boolean;
  put(kind: string, value: Tensor): CachePutResult;
  delete(kind: string): boolean;
}

const entryKey = (layer: number, kind: string): string => `${layer}\u0000${kind}`;

export class CacheManager implements CacheProvider {
  readonly #entries = new Map<string, { layer: number; kind: string; value: Tensor }>();
  readonly #budget: number | null;
  readonly #onEvent: ((event: CacheEvent) => void) | undefined;
  #current = 0;
  #peak = 0;
  #refusals = 0;
  #generation = 0;

  constructor(options: CacheManagerOptions = {}) {
    if (options.budgetBytes !== undefined) expectInteger('budgetBytes', options.budgetBytes, 0);
    this.#budget = options.budgetBytes ?? null;
    this.#onEvent = options.onEvent;
  }

  /** Bytes held now. */
  get currentBytes(): number {
    return this.#current;
  }

  /** Most bytes held at once since the last reset. */
  get peakBytes(): number {
    return this.#peak;
  }

  /** The byte budget, `null` when unlimited. */
  get budgetBytes(): number | null {
    return this.#budget;
  }

  get generation(): number {
    return this.#generation;
  }

  stats(): CacheStats {
    return {
      currentBytes: this.#current,
      peakBytes: this.#peak,
      entries: this.#entries.size,
      budgetBytes: this.#budget,
      refusals: this.#refusals,
      generation: this.#generation,
    };
  }

  /** Drops every entry and starts a new generation; scopes of the old generation become stale. */
  reset(): void {
    this.#entries.clear();
    this.#current = 0;
    this.#peak = 0;
    this.#refusals = 0;
    this.#generation += 1;
    this.#onEvent?.({ type: 'cache-reset', generation: this.#generation });
  }

  /** The scope of one layer for the current generation. */
  scope(layer: number): CacheScope {
    expectInteger('layer', layer, 0);
    const generation = this.#generation;
    const check = (): void => {
      if (generation !== this.#generation) {
        throw new CacheStaleError(`Expected a cache scope of generation ${this.#generation} but received one of generation ${generation}`);
      }
    };
    return {
      layer,
      get: (kind) => (check(), this.#entries.get(entryKey(layer, kind))?.value),
      has: (kind) => (check(), this.#entries.has(entryKey(layer, kind))),
      put: (kind, value) => (check(), this.#put(layer, kind, value)),
      delete: (kind) => (check(), this.#delete(layer, kind)),
    };
  }

  /** Every entry (layer, kind, bytes), for reports. */
  entries(): Array<{ layer: number; kind: string; bytes: number }> {
    return [...this.#entries.values()].map((e) => ({ layer: e.layer, kind: e.kind, bytes: e.value.data.byteLength }));
  }

  #put(layer: number, kind: string, value: Tensor): CachePutResult {
    if (typeof kind !== 'string' || kind === '') {
      throw new InvalidArgumentError(`Expected a non-empty cache kind but received ${describeValue(kind)}`);
    }
    if (!value || !(value.data instanceof Float32Array)) {
      throw new InvalidArgumentError(`Expected a Tensor to cache but received ${describeValue(value)}`);
    }
    const key = entryKey(layer, kind);
    const bytes = value.data.byteLength;
    const previous = this.#entries.get(key)?.value.data.byteLength ?? 0;
    const wouldUse = this.#current - previous + bytes;
    if (this.#budget !== null && wouldUse > this.#budget) {
      this.#refusals += 1;
      this.#onEvent?.({ type: 'cache-refused', layer, kind, bytes, budgetBytes: this.#budget, wouldUseBytes: wouldUse });
      return { stored: false, bytes, reason: 'budget', budgetBytes: this.#budget, wouldUseBytes: wouldUse };
    }
    this.#entries.set(key, { layer, kind, value });
    this.#current = wouldUse;
    if (this.#current > this.#peak) this.#peak = this.#current;
    return { stored: true, bytes };
  }

  #delete(layer: number, kind: string): boolean {
    const key = entryKey(layer, kind);
    const entry = this.#entries.get(key);
    if (!entry) return false;
    this.#current -= entry.value.data.byteLength;
    this.#entries.delete(key);
    return true;
  }
}

/**
 * A transaction over a {@link CacheManager}: scopes read the overlay first, then the base; puts and
 * deletes stay in the overlay until {@link CacheOverlay.commit}. The planner uses one per trial so a
 * rejected candidate leaves the caches as they were. Puts are checked against the base's budget as if
 * the overlay were already committed (the same refuse policy), so a commit never exceeds the budget
 * as long as the base did not change in between.
 */
export class CacheOverlay implements CacheProvider {
  readonly #base: CacheManager;
  /** `null` marks a deletion. */
  readonly #writes = new Map<string, { layer: number; kind: string; value: Tensor | null }>();
  #projected: number;

  constructor(base: CacheManager) {
    this.#base = base;
    this.#projected = base.currentBytes;
  }

  /** Bytes the base would hold after a commit. */
  get projectedBytes(): number {
    return this.#projected;
  }

  scope(layer: number): CacheScope {
    expectInteger('layer', layer, 0);
    const base = this.#base.scope(layer);
    const read = (kind: string): Tensor | undefined => {
      const w = this.#writes.get(entryKey(layer, kind));
      return w ? (w.value ?? undefined) : base.get(kind);
    };
    return {
      layer,
      get: read,
      has: (kind) => read(kind) !== undefined,
      put: (kind, value) => {
        if (typeof kind !== 'string' || kind === '') {
          throw new InvalidArgumentError(`Expected a non-empty cache kind but received ${describeValue(kind)}`);
        }
        if (!value || !(value.data instanceof Float32Array)) {
          throw new InvalidArgumentError(`Expected a Tensor to cache but received ${describeValue(value)}`);
        }
        const bytes = value.data.byteLength;
        const wouldUse = this.#projected - (read(kind)?.data.byteLength ?? 0) + bytes;
        const budget = this.#base.budgetBytes;
        if (budget !== null && wouldUse > budget) {
          return { stored: false, bytes, reason: 'budget', budgetBytes: budget, wouldUseBytes: wouldUse };
        }
        this.#writes.set(entryKey(layer, kind), { layer, kind, value });
        this.#projected = wouldUse;
        return { stored: true, bytes };
      },
      delete: (kind) => {
        const current = read(kind);
        if (current === undefined) return false;
        this.#writes.set(entryKey(layer, kind), { layer, kind, value: null });
        this.#projected -= current.data.byteLength;
        return true;
      },
    };
  }

  /** Applies the overlay's writes (of `layers` only, when given) to the base and forgets them. */
  commit(layers?: Iterable<number>): void {
    const only = layers === undefined ? null : new Set(layers);
    for (const [key, w] of this.#writes) {
      if (only && !only.has(w.layer)) continue;
      const scope = this.#base.scope(w.layer);
      if (w.value === null) scope.delete(w.kind);
      else if (!scope.put(w.kind, w.value).stored) scope.delete(w.kind);
      this.#writes.delete(key);
    }
    this.#projected = this.#base.currentBytes + this.#pendingDelta();
  }

  /** Forgets every write. */
  discard(): void {
    this.#writes.clear();
    this.#projected = this.#base.currentBytes;
  }

  #pendingDelta(): number {
    let delta = 0;
    for (const w of this.#writes.values()) {
      delta += (w.value?.data.byteLength ?? 0) - (this.#base.scope(w.layer).get(w.kind)?.data.byteLength ?? 0);
    }
    return delta;
  }
}
