import type { CacheScope } from './cache.js';
import type { AttentionShape } from './flops.js';
import type { ComputeDtype, KernelBackend, WindowSpec } from './kernel-backend.js';
import type { AttentionLayer } from './layers.js';
import type { CfgLayout, Tensor } from './tensor.js';

/**
 * The attention-strategy contract between the pipeline and compression methods.
 *
 * Per denoising step and attention layer (a block's `self`, `spatial`, `temporal` or `cross` site), the
 * pipeline's dispatcher:
 * 1. builds a {@link StrategyContext} and asks the strategy the plan names what it {@link AttentionStrategy.needs}:
 *    q/k/v for every row, for the conditional CFG half only, or nothing;
 * 2. has the model compute only that dense work (for `'none'` it skips the q/k/v projection; for
 *    `'conditional'` it projects only the conditional rows) and calls {@link AttentionStrategy.run};
 * 3. handles the {@link StrategyResult}: an `'attention'` result goes through the out-projection (once,
 *    on the conditional rows, when `rows` is `'conditional'`, then copied to both halves); a
 *    `'projected'` result is already the layer's attention branch output and skips the out-projection;
 * 4. calls {@link AttentionStrategy.observe} of every strategy in the pipeline with the projected
 *    output of a computed call, so output-reusing methods (AST) can keep it.
 *
 * Tensors are `[B, L, H, D]` for q/k/v and attention outputs, `[B, L, C]` for projected outputs.
 *
 * Every tensor crossing this contract is read-only for the receiver: q/k/v, results (a `'projected'`
 * result may be a cached tensor returned at several steps) and observed outputs. Whoever needs to
 * modify one copies it first.
 *
 * Core knows no compression method by name: a strategy declares what it costs ({@link AttentionStrategy.flops})
 * and which caches it keeps across steps ({@link StrategyCaches}); the look-ahead (`cacheNeededAhead`),
 * plan validation and FLOP accounting work from those declarations alone.
 */

/** Rows of the batch: all of them, or the conditional CFG half only. */
export type RowSelection = 'all' | 'conditional';

/** What a strategy needs from the model at one (step, layer). */
export type QkvNeed = RowSelection | 'none';

/**
 * The caches a method keeps across steps of one layer, by kind (any non-empty string; a plugin uses its
 * own kinds). The look-ahead reads these declarations to decide what to keep and what to compute.
 */
export interface StrategyCaches {
  /** Kinds a step under this method reads, written by an earlier step of the same layer. Such a method cannot run at step 0. */
  readonly reads: readonly string[];
  /** Kinds a step under this method (re)writes when a later step reads them before another writer runs. */
  readonly writes: readonly string[];
  /**
   * Kinds this strategy's {@link AttentionStrategy.observe} writes after every computed call, whatever
   * the method: a later step whose method does not read such a kind refreshes it (AST's projected output).
   */
  readonly observes: readonly string[];
}

/** What a strategy may see of the plan. `undefined` means "not decided yet" (during calibration). */
export interface PlanView {
  readonly numSteps: number;
  readonly numLayers: number;
  methodAt(step: number, layer: number): string | undefined;
}

/** Name → strategy, as the pipeline knows them (registry or a directly passed list). */
export interface StrategyLookup {
  get(name: string): AttentionStrategy | undefined;
  names(): string[];
}

/** Something a strategy reports to the pipeline (which forwards it to the user's event handler). */
export type StrategyEvent =
  | {
      readonly type: 'fallback';
      readonly step: number;
      /** Layer index in model order. */
      readonly layer: number;
      readonly method: string;
      readonly to: string;
      readonly reason: string;
    }
  | { readonly type: 'cache-refused'; readonly step: number; readonly layer: number; readonly method: string; readonly kind: string; readonly bytes: number };

/** Everything a strategy knows about the (step, layer) it runs for. */
export interface StrategyContext {
  readonly step: number;
  readonly numSteps: number;
  /** The layer: id, block, site, sizes and window. */
  readonly layer: AttentionLayer;
  /** The plan's method name for this (step, layer); the strategy's own name, or one it serves. */
  readonly method: string;
  /** CFG layout stated by the model adapter; `null` when the batch is not a CFG batch. */
  readonly cfg: CfgLayout | null;
  readonly backend: KernelBackend;
  readonly plan: PlanView;
  /** This layer's caches for the current generation. */
  readonly cache: CacheScope;
  /** The layer's window (`layer.window`); `null` where no window method applies. */
  readonly window: WindowSpec | null;
  readonly compute: ComputeDtype;
  readonly strategies: StrategyLookup;
  report(event: StrategyEvent): void;
}

/** q/k/v handed to a strategy: the rows it asked for (the conditional half alone for `'conditional'`). */
export interface QkvInputs {
  readonly rows: RowSelection;
  readonly q: Tensor;
  readonly k: Tensor;
  readonly v: Tensor;
}

export type StrategyResult =
  /** Attention output before the out-projection, `[rows, L, H, D]`. */
  | { readonly kind: 'attention'; readonly rows: RowSelection; readonly output: Tensor }
  /** The layer's attention branch output after the out-projection, `[B, L, C]`, every row. */
  | { readonly kind: 'projected'; readonly output: Tensor };

/** Observed after the out-projection of a computed (step, layer). */
export interface ProjectedEvent {
  readonly kind: 'projected';
  /** `[B, L, C]`, every row. Owned by the adapter until the next step: copy or keep, never write. */
  readonly output: Tensor;
}

/** Options of {@link AttentionStrategy.flops}. */
export interface StrategyFlopOptions {
  /** Cache kinds (among the method's `writes`) this call writes because a later step reads them. */
  readonly writes?: readonly string[];
}

export interface AttentionStrategy {
  /** The method name plans use (`full`, or a package's: `wars`, `ast`, `wars+asc`, a plugin's …). */
  readonly name: string;
  readonly caches: StrategyCaches;
  /** Short human description (shown by `plan show`). */
  readonly description?: string;
  /**
   * Strategies this method needs in the same pipeline (e.g. WA-RS needs a `full` that writes its
   * residual). `strategySet` and the registry add each companion whose name is not taken yet, so
   * passing `[wars()]` alone works; a strategy given explicitly under the same name wins.
   */
  readonly companions?: readonly AttentionStrategy[];
  /**
   * Whether the method can run on a layer (e.g. window methods need `layer.window`, ASC a CFG batch);
   * the planner offers a candidate only where it applies. Absent: applies everywhere.
   */
  appliesTo?(layer: AttentionLayer): boolean;
  needs(ctx: StrategyContext): QkvNeed;
  run(ctx: StrategyContext, inputs: QkvInputs | null): Promise<StrategyResult>;
  observe?(ctx: StrategyContext, event: ProjectedEvent): void;
  /** Attention FLOPs of one call on a layer of this shape. */
  flops(shape: AttentionShape, options?: StrategyFlopOptions): number;
}
