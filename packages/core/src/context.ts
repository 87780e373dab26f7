import type { ComputeDtype } from './kernel-backend.js';
import type { StrategyContext, StrategyEvent } from './strategy.js';

/** What {@link strategyContext} needs: a context without `window` (the layer's), with optional `compute` and `report`. */
export type StrategyContextInit = Omit<StrategyContext, 'window' | 'compute' | 'report'> & {
  readonly compute?: ComputeDtype;
  readonly report?: (event: StrategyEvent) => void;
};

/**
 * The one constructor of a {@link StrategyContext} (the pipeline's dispatcher uses it for every call;
 * tests of strategies use it too), so every strategy sees contexts built the same way.
 */
export function strategyContext(init: StrategyContextInit): StrategyContext {
  const report = init.report ?? (() => {});
  return Object.freeze({
    step: init.step,
    numSteps: init.numSteps,
    layer: init.layer,
    method: init.method,
    cfg: init.cfg,
    backend: init.backend,
    plan: init.plan,
    cache: init.cache,
    window: init.layer.window,
    compute: init.compute ?? 'fp32',
    strategies: init.strategies,
    report,
  });
}
