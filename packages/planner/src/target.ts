import type { AttentionShape, CacheProvider, PlanFingerprint, PlanView, StrategyLookup, Tensor } from '@ditfa/core';

/**
 * What the planner needs from a model to run the paper's Algorithm 1: one calibration generation,
 * driven step by step, with block-level forwards so that blocks before the one under test can start
 * from their stored hidden state (prefix reuse).
 *
 * `H` is the adapter's hidden state between blocks (tokens plus whatever the blocks share, such as the
 * conditioning). The planner treats it as opaque and immutable: {@link CalibrationTarget.runBlocks}
 * must return a new state and never modify its input, so one state can start several trials.
 */
export interface CalibrationTarget<H = unknown> {
  readonly numBlocks: number;
  readonly numSteps: number;
  /** What the resulting plan is made for. */
  readonly fingerprint: PlanFingerprint;
  /** Strategies by method name, the candidates included. */
  readonly strategies: StrategyLookup;
  /** Attention shape of a block for one forward of the calibration batch (FLOP counting). */
  attentionShape(block: number): AttentionShape;
  /** Starts the calibration generation: initial noise, caches reset. Returns the cache to use. */
  begin(): Promise<CalibrationCaches>;
  /** Hidden state entering block 0 at `step` (from the current sample `x_t`). */
  embed(step: number): Promise<H>;
  /**
   * Runs blocks `from .. to-1` at `step` on `hidden` with the methods given, reading and writing caches
   * through `cache`, with `plan` as the strategies' lookahead view.
   */
  runBlocks(hidden: H, from: number, to: number, run: BlockRun): Promise<H>;
  /** The model output (before guidance, whole CFG batch) from the state after the last block. */
  output(hidden: H, step: number): Promise<Tensor>;
  /** Advances the sampler with the model output of the committed step. */
  advance(step: number, output: Tensor): Promise<void>;
  /** Releases what `begin` allocated. */
  end?(): Promise<void>;
}

export interface CalibrationCaches {
  /** The generation's caches; the planner layers overlays on it for trials. */
  readonly cache: import('@ditfa/core').CacheManager;
}

export interface BlockRun {
  readonly step: number;
  /** Method for each block in the range. */
  readonly methodFor: (block: number) => string;
  readonly plan: PlanView;
  readonly cache: CacheProvider;
}
