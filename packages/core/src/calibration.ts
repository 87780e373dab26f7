import type { CacheManager, CacheProvider } from './cache.js';
import type { AttentionLayer } from './layers.js';
import type { PlanFingerprint } from './plan.js';
import type { PlanView, StrategyLookup } from './strategy.js';
import type { Tensor } from './tensor.js';

/**
 * What a plan search needs from a model: one calibration generation, driven step by step, with forwards
 * over ranges of attention layers so that a trial can start from the stored state before the layer
 * under test (prefix reuse). `@ditfa/pipeline` builds one for any model adapter; `@ditfa/planner`
 * searches on it.
 *
 * `H` is the adapter's state between attention layers (the hidden state plus whatever the step shares,
 * such as the conditioning). The search treats it as opaque and immutable: {@link CalibrationTarget.runLayers}
 * returns a new state and never modifies its input, so one state can start several trials.
 */
export interface CalibrationTarget<H = unknown> {
  readonly numSteps: number;
  /** The attention layers of the calibration batch, in model order. */
  readonly layers: readonly AttentionLayer[];
  /** What the resulting plan is made for. */
  readonly fingerprint: PlanFingerprint;
  /** Strategies by method name, the candidates included. */
  readonly strategies: StrategyLookup;
  /** Starts the calibration generation: initial noise, fresh caches. Returns the caches to use. */
  begin(): Promise<CalibrationCaches>;
  /** The state entering layer 0 at `step` (from the current sample `x_t`). */
  embed(step: number): Promise<H>;
  /**
   * Runs from the state entering layer `from` to the state entering layer `to` (`to = layers.length`:
   * through the last block) at `step`, with the methods given, reading and writing caches through
   * `cache`, with `plan` as the strategies' look-ahead view.
   */
  runLayers(state: H, from: number, to: number, run: LayerRun): Promise<H>;
  /** The model output (before guidance, whole CFG batch) from the state after the last layer. */
  output(state: H, step: number): Promise<Tensor>;
  /**
   * What the sampler consumes from a model output at `step`: guidance applied in the model's CFG order,
   * a learned variance the sampler ignores dropped. Optional; a search can measure its loss on it
   * (`lossOn: 'prediction'`) instead of on the raw output.
   */
  prediction?(output: Tensor, step: number): Promise<Tensor>;
  /** Advances the sampler with the model output of the committed step. */
  advance(step: number, output: Tensor): Promise<void>;
  /** Releases what `begin` allocated. */
  end?(): Promise<void>;
}

export interface CalibrationCaches {
  /** The generation's caches; the planner layers overlays on it for trials. */
  readonly cache: CacheManager;
}

export interface LayerRun {
  readonly step: number;
  /** Method of each layer in the range (by layer index). */
  readonly methodFor: (layer: number) => string;
  readonly plan: PlanView;
  readonly cache: CacheProvider;
}
