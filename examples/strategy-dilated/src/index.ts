import { registerKernel, strategyRegistry, type AttentionStrategy, type StrategyRegistry } from '@ditfa/core';
import { dilated } from './dilated.js';
import { dilatedKernelConfigs } from './kernel.js';

/**
 * @ditfa-examples/strategy-dilated — an example third-party strategy plugin. Importing registers
 * nothing; {@link register} adds its kernel to core's kernel table and its strategy to a registry.
 */
export * from './base.js';

let defaults: readonly AttentionStrategy[] | undefined;

/** The plugin's strategies with default options (the same objects on every call). */
export function strategies(): readonly AttentionStrategy[] {
  defaults ??= Object.freeze([dilated()]);
  return defaults;
}

/** Adds the plugin's kernels to core's kernel table (idempotent). Needed before a `dilated` step runs. */
export function registerKernels(): void {
  for (const config of dilatedKernelConfigs) registerKernel(config);
}

/** Registers the kernels and the `dilated` strategy (idempotent) and returns the strategies. */
export function register(registry: StrategyRegistry = strategyRegistry): readonly AttentionStrategy[] {
  registerKernels();
  for (const s of strategies()) registry.register(s);
  return strategies();
}
