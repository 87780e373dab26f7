import { strategyRegistry, type AttentionStrategy, type StrategyRegistry } from '@ditfa/core';
import { asc } from './asc.js';

/**
 * @ditfa/strategy-asc — ASC compositions `full+asc` and `wars+asc`. Importing registers nothing; call
 * {@link register}, or pass the strategies to a pipeline directly.
 */
export * from './base.js';

let defaults: readonly AttentionStrategy[] | undefined;

/** The package's strategies (the same objects on every call). */
export function strategies(): readonly AttentionStrategy[] {
  defaults ??= Object.freeze([...asc()]);
  return defaults;
}

/** Registers `full+asc` and `wars+asc` (idempotent) and returns them. */
export function register(registry: StrategyRegistry = strategyRegistry): readonly AttentionStrategy[] {
  for (const s of strategies()) registry.register(s);
  return strategies();
}
