import type { CacheScope } from './cache.js';
import type { AttentionShape } from './flops.js';
import type { ComputeDtype, KernelBackend, WindowSpec } from './kernel-backend.js';
import type { CfgLayout, Tensor } from './tensor.js';

/**
 * The attention-strategy contract between model adapters and compression methods.
 *
 * Per denoising step and transformer block, a model adapter:
 * 1. builds a {@link StrategyContext} and asks the strategy the plan names what it {@link AttentionStrategy.needs}:
 *    q/k/v for every row, for the conditional CFG half only, or nothing;
 * 2. computes only that dense work (for `'none'` it skips the q/k/v projection; for `'conditional'` it
 *    projects only the conditional rows) and calls {@link AttentionStrategy.run};
 * 3. handles the {@link StrategyResult}: an `'attention'` result goes through the out-projection (once,
 *    on the conditional rows, when `rows` is `'conditional'`, then copied to both halves); a
 *    `'projected'` result is already the block's attention branch output and skips the out-projection;
 * 4. calls {@link AttentionStrategy.observe} of every strategy in the pipeline with the projected
 *    output, so output-reusing methods (AST) can keep it.
 *
 * Tensors are `[B, L, H, D]` for q/k/v and attention outputs, `[B, L, C]` for projected outputs.
 *
 * Every tensor crossing this contract is read-only for the receiver: q/k/v, results (a `'projected'`
 * result may be a cached tensor returned at several steps) and observed outputs. Whoever needs to
 * modify one copies it first.
 */

/** Rows of the batch: all of them, or the conditional CFG half only. */
export type RowSelection = 'all' | 'conditional';

/** What a strategy needs from the model at one (step, block). */
export type QkvNeed = RowSelection | 'none';

/** Static facts about a method, used by lookahead and by the planner. */
export interface StrategyTraits {
  /** Reads the WA-RS residual left by the block's last refreshing step. */
  readonly consumesResidual: boolean;
  /** Computes full attention and refreshes the residual when a later step consumes it. */
  readonly refreshesResidual: boolean;
  /** Returns a cached output instead of computing (AST): the steps before it must keep their output. */
  readonly reusesOutput: boolean;
}

/** What a strategy may see of the plan. `undefined` means "not decided yet" (during calibration). */
export interface PlanView {
  readonly numSteps: number;
  readonly numBlocks: number;
  methodAt(step: number, block: number): string | undefined;
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
      readonly block: number;
      readonly method: string;
      readonly to: string;
      readonly reason: string;
    }
  | { readonly type: 'cache-refused'; readonly step: number; readonly block: number; readonly method: string; readonly kind: string; readonly bytes: number };

/** Everything a strategy knows about the (step, block) it runs for. */
export interface StrategyContext {
  readonly step: number;
  readonly block: number;
  readonly numSteps: number;
  readonly numBlocks: number;
  /** The plan's method name for this (step, block); the strategy's own name, or one it serves. */
  readonly method: string;
  /** CFG layout stated by the model adapter; `null` when the batch is not a CFG batch. */
  readonly cfg: CfgLayout | null;
  readonly backend: KernelBackend;
  readonly plan: PlanView;
  /** This block's caches for the current generation. */
  readonly cache: CacheScope;
  /** The window WA-RS and window methods use. */
  readonly window: WindowSpec;
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
  /** The block's attention branch output after the out-projection, `[B, L, C]`, every row. */
  | { readonly kind: 'projected'; readonly output: Tensor };

/** Observed after the out-projection of a computed (step, block). */
export interface ProjectedEvent {
  readonly kind: 'projected';
  /** `[B, L, C]`, every row. Owned by the adapter until the next step: copy or keep, never write. */
  readonly output: Tensor;
}

/** Options of {@link AttentionStrategy.flops}. */
export interface StrategyFlopOptions {
  /** The full step also computes the WA-RS residual. */
  readonly refreshResidual?: boolean;
}

export interface AttentionStrategy {
  /** The method name plans use (`full`, `wars`, `ast`, `wars+asc`, `full+asc`, or a plugin's). */
  readonly name: string;
  readonly traits: StrategyTraits;
  /** Short human description (shown by `plan show`). */
  readonly description?: string;
  needs(ctx: StrategyContext): QkvNeed;
  run(ctx: StrategyContext, inputs: QkvInputs | null): Promise<StrategyResult>;
  observe?(ctx: StrategyContext, event: ProjectedEvent): void;
  /** Attention FLOPs of one call on a block of this shape. */
  flops(shape: AttentionShape, options?: StrategyFlopOptions): number;
}
