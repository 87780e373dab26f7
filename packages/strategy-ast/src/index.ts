import { strategyRegistry, type AttentionStrategy, type StrategyRegistry } from '@ditfa/core';
import { ast } from './ast.js';

/**
 * @ditfa/strategy-ast — AST (`ast`). Importing registers nothing; call {@link register}, or pass the
 * strategy to a pipeline directly.
 */
export * from './base.js';

let defaults: readonly AttentionStrategy[] | undefined;

/** The package's strategies (the same objects on every call). */
export function strategies(): readonly AttentionStrategy[] {
  defaults ??= Object.freeze([ast()]);
  return defaults;
}

/** Registers `ast` (idempotent) and returns the registered strategies. */
export function register(registry: StrategyRegistry = strategyRegistry): readonly AttentionStrategy[] {
  for (const s of strategies()) registry.register(s);
  return strategies();
}
