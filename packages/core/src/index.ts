/**
 * @ditfa/core — the contracts every ditfa package speaks: tensors, attention layers, attention strategies and their
 * registry, kernel backends and their registry and kernel table, the cache manager, plans, the FLOP
 * model, metrics and errors, plus the TypeScript reference kernels. No native code, no model code.
 */
export * from './errors.js';
export { CoreConflictError, REGISTRY_KEY, REGISTRY_LAYOUT, coreCopies } from './shared-registry.js';
export * from './tensor.js';
export * from './kernel-backend.js';
export * from './dense.js';
export * from './validate-attention.js';
export * from './backend-registry.js';
export * from './kernel-registry.js';
export * from './reference/attention.js';
export * from './reference/backend.js';
export * from './reference/dense.js';
export * from './layers.js';
export * from './flops.js';
export * from './metrics.js';
export * from './cache.js';
export * from './strategy.js';
export * from './context.js';
export * from './strategy-registry.js';
export * from './lookahead.js';
export * from './full-strategy.js';
export * from './key-lengths.js';
export * from './execute.js';
export * from './plan.js';
export * from './plan-schema.js';
export * from './plan-builder.js';
export * from './calibration.js';
