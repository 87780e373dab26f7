import { strategyRegistry, type AttentionStrategy, type StrategyRegistry } from '@ditfa/core';
import { residualFull } from './full.js';
import { wars, windowAttentionNoResidual } from './wars.js';

/**
 * @ditfa/strategy-wars — WA-RS (`wars`), the residual-refreshing `full` it needs, and the
 * window-without-residual ablation baseline (`window-no-residual`). Importing registers nothing; call
 * {@link register}, or pass {@link strategies} to a pipeline directly.
 */
export * from './base.js';

let defaults: readonly AttentionStrategy[] | undefined;

/**
 * The package's strategies with default options, the same objects on every call: `full` (refreshes the
 * residual), `wars` and `window-no-residual`. `wars` reads the residual that `full` writes; it brings
 * that `full` as its companion, so `[wars()]` alone works too.
 */
export function strategies(): readonly AttentionStrategy[] {
  defaults ??= Object.freeze([residualFull(), wars(), windowAttentionNoResidual()]);
  return defaults;
}

/**
 * Priority of this package's `full` in a registry: above core's plain `fullStrategy()` (priority 0),
 * so registering both keeps the residual-refreshing one whichever comes first.
 */
export const FULL_PRIORITY = 1;

/** Registers `full` (at {@link FULL_PRIORITY}), `wars` and `window-no-residual` (idempotent) and returns them. */
export function register(registry: StrategyRegistry = strategyRegistry): readonly AttentionStrategy[] {
  for (const s of strategies()) registry.register(s, s.name === 'full' ? FULL_PRIORITY : 0);
  return strategies();
}
