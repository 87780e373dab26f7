import { InvalidArgumentError, describeValue } from './errors.js';
import { layerShape, rawAttentionFlops } from './flops.js';
import { fullStrategy } from './full-strategy.js';
import type { AttentionLayer } from './layers.js';
import { layerAttentionFlops } from './lookahead.js';
import { PLAN_FORMAT, PLAN_VERSION, type PlanDocument, type PlanEntry, type PlanFingerprint, validatePlan } from './plan.js';
import type { AttentionStrategy, PlanView, StrategyLookup } from './strategy.js';
import { StrategyNotFoundError, strategySet } from './strategy-registry.js';

export interface BuildPlanOptions {
  /** What the plan is for (a pipeline's `fingerprint(options)`). */
  readonly fingerprint: PlanFingerprint;
  /**
   * The attention layers of that generation (a pipeline's `layers(options)`), in the fingerprint's
   * order: their sizes give each entry's FLOP fraction, which the fingerprint (ids and windows) cannot.
   */
  readonly layers: readonly AttentionLayer[];
  /** The strategies the plan will run on (a pipeline's `strategies`, or a list); `full` is core's when absent. */
  readonly strategies: StrategyLookup | readonly AttentionStrategy[];
  /** The method of every (step, layer); step 0 must compute (no method that reads an earlier step's cache). */
  readonly method: (step: number, layer: AttentionLayer) => string;
  /** δ the plan stands for (default 0: made by hand), or `{ delta, name }`. */
  readonly threshold?: number | { readonly delta: number; readonly name?: string };
  /** Candidate methods to record (default: the methods used other than `full`, in order of first use). */
  readonly candidates?: readonly string[];
  /** Stored as `generator` (default `@ditfa/core buildPlan`). */
  readonly generator?: string;
  /** Stored as `createdAt` when given (an ISO date); absent by default, so the same inputs give the same document. */
  readonly createdAt?: string;
}

/** A lookup that always knows `full` (core's, unless the strategies bring their own). */
function lookupOf(strategies: StrategyLookup | readonly AttentionStrategy[]): StrategyLookup {
  const base: StrategyLookup = Array.isArray(strategies) ? strategySet(strategies as readonly AttentionStrategy[]) : (strategies as StrategyLookup);
  if (!base || typeof base.get !== 'function' || typeof base.names !== 'function') {
    throw new InvalidArgumentError(`Expected strategies as a list or a lookup { get, names } but received ${describeValue(strategies)}`);
  }
  if (base.get('full')) return base;
  const full = fullStrategy();
  return { get: (n) => base.get(n) ?? (n === 'full' ? full : undefined), names: () => [...base.names(), 'full'] };
}

/** Throws unless `layers` are the fingerprint's layers (same ids and windows, same order). */
function checkLayers(fingerprint: PlanFingerprint, layers: readonly AttentionLayer[]): void {
  const want = fingerprint?.layers;
  if (!Array.isArray(want)) throw new InvalidArgumentError(`Expected a version-2 plan fingerprint with layers but received ${describeValue(fingerprint)}`);
  if (!Array.isArray(layers) || layers.length !== want.length) {
    throw new InvalidArgumentError(`Expected the ${want.length} attention layers of the fingerprint but received ${Array.isArray(layers) ? `${layers.length} layers` : describeValue(layers)}; pass the layers of the same generation options (pipe.layers(options))`);
  }
  layers.forEach((l, j) => {
    const w = want[j]!;
    if (l?.id !== w.id || JSON.stringify(l.window) !== JSON.stringify(w.window)) {
      throw new InvalidArgumentError(
        `Expected layers[${j}] to be the fingerprint's ${w.id} with window ${JSON.stringify(w.window)} but received ${l?.id ?? describeValue(l)} with window ${JSON.stringify(l?.window)}`,
      );
    }
  });
}

/**
 * A plan made by hand: the method of every (step, layer) from `method`, each entry's FLOP fraction and
 * the total filled in exactly as the planner and the pipeline count them (core's `layerAttentionFlops`,
 * which knows which caches a call must write for later steps), validated like any loaded plan.
 *
 * ```ts
 * const options = { classLabels: [3], seed: 0, steps: 20, guidanceScale: 4 };
 * const plan = buildPlan({ fingerprint: pipe.fingerprint(options), layers: pipe.layers(options), strategies: pipe.strategies,
 *   method: (step, layer) => (step === 0 ? 'full' : step % 2 ? 'ast' : 'wars') });
 * ```
 *
 * Throws `InvalidArgumentError` when the layers are not the fingerprint's or a method does not apply to a
 * layer (`appliesTo`), `StrategyNotFoundError` for an unknown method, and `PlanValidationError` for what
 * validation refuses (e.g. a method at step 0 that reads an earlier step's cache).
 */
export function buildPlan(options: BuildPlanOptions): PlanDocument {
  const { fingerprint, layers } = options ?? ({} as BuildPlanOptions);
  checkLayers(fingerprint, layers);
  if (typeof options.method !== 'function') throw new InvalidArgumentError(`Expected method(step, layer) to be a function but received ${describeValue(options.method)}`);
  const strategies = lookupOf(options.strategies);
  const T = fingerprint.steps;
  const grid: string[][] = Array.from({ length: T }, (_, step) =>
    layers.map((layer) => {
      const m = options.method(step, layer);
      const s = typeof m === 'string' ? strategies.get(m) : undefined;
      if (!s) {
        throw new StrategyNotFoundError(`Expected method(${step}, ${layer.id}) to name one of the strategies (${strategies.names().join(', ')}) but it returned ${describeValue(m)}`);
      }
      if (s.appliesTo && !s.appliesTo(layer)) {
        throw new InvalidArgumentError(`Expected a method that applies to layer ${layer.id} at step ${step} but "${m}" does not (window ${JSON.stringify(layer.window)}, CFG ${layer.cfg})`);
      }
      return m;
    }),
  );
  const view: PlanView = { numSteps: T, numLayers: layers.length, methodAt: (s, j) => grid[s]?.[j] };
  let flops = 0;
  let raw = 0;
  const steps: PlanEntry[][] = grid.map((row, step) =>
    row.map((method, j) => {
      const shape = layerShape(layers[j]!);
      const f = layerAttentionFlops(strategies.get(method)!, shape, { step, numSteps: T, layer: j, plan: view, strategies });
      const r = rawAttentionFlops(shape);
      flops += f;
      raw += r;
      return { method, loss: null, flopsFraction: r === 0 ? 0 : f / r };
    }),
  );
  const threshold = options.threshold === undefined ? { delta: 0 } : typeof options.threshold === 'number' ? { delta: options.threshold } : { ...options.threshold };
  const candidates = options.candidates ?? [...new Set(grid.flat().filter((m) => m !== 'full'))];
  const doc: PlanDocument = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    fingerprint,
    threshold,
    candidates: [...candidates],
    steps,
    totals: { attentionFlopsFraction: raw === 0 ? 0 : flops / raw },
    ...(options.createdAt === undefined ? {} : { createdAt: options.createdAt }),
    generator: options.generator ?? '@ditfa/core buildPlan',
  };
  return validatePlan(doc, { methods: strategies });
}
