import { strategyRegistry, type AttentionStrategy, type StrategyRegistry } from '@ditfa/core';
import { wars, windowAttentionNoResidual } from './wars.js';

/**
 * @ditfa/strategy-wars — WA-RS (`wars`) and the window-without-residual ablation baseline
 * (`window-no-residual`). Importing registers nothing; call {@link register}, or pass the strategies
 * to a pipeline directly.
 */
export * from './base.js';

let defaults: readonly AttentionStrategy[] | undefined;

/** The package's strategies with default options (the same objects on every call). */
export function strategies(): readonly AttentionStrategy[] {
  defaults ??= Object.freeze([wars(), windowAttentionNoResidual()]);
  return defaults;
}

/** Registers `wars` and `window-no-residual` (idempotent) and returns them. */
export function register(registry: StrategyRegistry = strategyRegistry): readonly AttentionStrategy[] {
  for (const s of strategies()) registry.register(s);
  return strategies();
}
