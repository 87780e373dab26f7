import { DitfaError, ErrorCode, InvalidArgumentError, describeValue, expectInteger } from './errors.js';
import type { Tensor } from './tensor.js';

/**
 * Caches of one pipeline instance for one generation, keyed by (block, kind), with exact byte
 * accounting. The budget policy is **refuse**: a `put` that would take the total above the budget
 * stores nothing, leaves the previous entry under that key untouched, returns `{ stored: false }` and
 * emits a `cache-refused` event, so the caller can fall back to full attention.
 *
 * Cached tensors are kept by reference: whoever puts a tensor must not write to it afterwards.
 */

/** Kinds of cache entries used by the built-in strategies; plugins use their own strings. */
export const CacheKind = {
  /** WA-RS residual `full − window`, whole batch. */
  Residual: 'residual',
  /** Block attention output after the out-projection (AST). */
  Projected: 'projected',
} as const;

export type CachePutResult =
  | { readonly stored: true; readonly bytes: number }
  | { readonly stored: false; readonly bytes: number; readonly reason: 'budget'; readonly budgetBytes: number; readonly wouldUseBytes: number };

export type CacheEvent =
  | { readonly type: 'cache-refused'; readonly block: number; readonly kind: string; readonly bytes: number; readonly budgetBytes: number; readonly wouldUseBytes: number }
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

/** Anything that hands out per-block cache scopes: a {@link CacheManager} or a {@link CacheOverlay}. */
export interface CacheProvider {
  scope(block: number): CacheScope;
}

/** The caches of one block, handed to strategies in their context. */
export interface CacheScope {
  readonly block: number;
  get(kind: string): Tensor | undefined;
  has(kind: string): boolean;
  put(kind: string, value: Tensor): CachePutResult;
  delete(kind: string): boolean;
}

const entryKey = (block: number, kind: string): string => `${block}\u0000${kind}`;

export class CacheManager implements CacheProvider {
  readonly #entries = new Map<string, { block: number; kind: string; value: Tensor }>();
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

  /** The scope of one block for the current generation. */
  scope(block: number): CacheScope {
    expectInteger('block', block, 0);
    const generation = this.#generation;
    const check = (): void => {
      if (generation !== this.#generation) {
        throw new CacheStaleError(`Expected a cache scope of generation ${this.#generation} but received one of generation ${generation}`);
      }
    };
    return {
      block,
      get: (kind) => (check(), this.#entries.get(entryKey(block, kind))?.value),
      has: (kind) => (check(), this.#entries.has(entryKey(block, kind))),
      put: (kind, value) => (check(), this.#put(block, kind, value)),
      delete: (kind) => (check(), this.#delete(block, kind)),
    };
  }

  /** Every entry (block, kind, bytes), for reports. */
  entries(): Array<{ block: number; kind: string; bytes: number }> {
    return [...this.#entries.values()].map((e) => ({ block: e.block, kind: e.kind, bytes: e.value.data.byteLength }));
  }

  #put(block: number, kind: string, value: Tensor): CachePutResult {
    if (typeof kind !== 'string' || kind === '') {
      throw new InvalidArgumentError(`Expected a non-empty cache kind but received ${describeValue(kind)}`);
    }
    if (!value || !(value.data instanceof Float32Array)) {
      throw new InvalidArgumentError(`Expected a Tensor to cache but received ${describeValue(value)}`);
    }
    const key = entryKey(block, kind);
    const bytes = value.data.byteLength;
    const previous = this.#entries.get(key)?.value.data.byteLength ?? 0;
    const wouldUse = this.#current - previous + bytes;
    if (this.#budget !== null && wouldUse > this.#budget) {
      this.#refusals += 1;
      this.#onEvent?.({ type: 'cache-refused', block, kind, bytes, budgetBytes: this.#budget, wouldUseBytes: wouldUse });
      return { stored: false, bytes, reason: 'budget', budgetBytes: this.#budget, wouldUseBytes: wouldUse };
    }
    this.#entries.set(key, { block, kind, value });
    this.#current = wouldUse;
    if (this.#current > this.#peak) this.#peak = this.#current;
    return { stored: true, bytes };
  }

  #delete(block: number, kind: string): boolean {
    const key = entryKey(block, kind);
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
  readonly #writes = new Map<string, { block: number; kind: string; value: Tensor | null }>();
  #projected: number;

  constructor(base: CacheManager) {
    this.#base = base;
    this.#projected = base.currentBytes;
  }

  /** Bytes the base would hold after a commit. */
  get projectedBytes(): number {
    return this.#projected;
  }

  scope(block: number): CacheScope {
    expectInteger('block', block, 0);
    const base = this.#base.scope(block);
    const read = (kind: string): Tensor | undefined => {
      const w = this.#writes.get(entryKey(block, kind));
      return w ? (w.value ?? undefined) : base.get(kind);
    };
    return {
      block,
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
        this.#writes.set(entryKey(block, kind), { block, kind, value });
        this.#projected = wouldUse;
        return { stored: true, bytes };
      },
      delete: (kind) => {
        const current = read(kind);
        if (current === undefined) return false;
        this.#writes.set(entryKey(block, kind), { block, kind, value: null });
        this.#projected -= current.data.byteLength;
        return true;
      },
    };
  }

  /** Applies the overlay's writes (of `blocks` only, when given) to the base and forgets them. */
  commit(blocks?: Iterable<number>): void {
    const only = blocks === undefined ? null : new Set(blocks);
    for (const [key, w] of this.#writes) {
      if (only && !only.has(w.block)) continue;
      const scope = this.#base.scope(w.block);
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
      delta += (w.value?.data.byteLength ?? 0) - (this.#base.scope(w.block).get(w.kind)?.data.byteLength ?? 0);
    }
    return delta;
  }
}
