/**
 * @ditfa/planner — the paper's greedy plan search over a calibration generation, with prefix reuse,
 * fingerprinted plan documents, `explain(plan)` and resumable partial searches.
 */
export * from './target.js';
export * from './thresholds.js';
export * from './search.js';
export * from './explain.js';
export * from './heatmap.js';
