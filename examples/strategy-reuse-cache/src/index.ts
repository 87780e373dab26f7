import { strategyRegistry, type AttentionStrategy, type StrategyRegistry } from '@ditfa/core';
import { attentionKeep, attentionReuse } from './reuse.js';

/**
 * @ditfa-examples/strategy-reuse-cache — an example third-party strategy plugin that keeps a cache kind
 * of its own across steps. Importing registers nothing; call {@link register}, or pass
 * {@link strategies} to a pipeline directly.
 */
export * from './base.js';

let defaults: readonly AttentionStrategy[] | undefined;

/**
 * The plugin's strategies, the same objects on every call: `attention-keep` (writes the kept output)
 * and `attention-reuse` (reads it). Pass them together: `attention-reuse` alone has no writer, and
 * core's `checkStrategySet` refuses it.
 */
export function strategies(): readonly AttentionStrategy[] {
  defaults ??= Object.freeze([attentionKeep(), attentionReuse()]);
  return defaults;
}

/** Registers `attention-keep` and `attention-reuse` (idempotent) and returns them. */
export function register(registry: StrategyRegistry = strategyRegistry): readonly AttentionStrategy[] {
  for (const s of strategies()) registry.register(s);
  return strategies();
}
