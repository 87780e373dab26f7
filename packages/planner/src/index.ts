/**
 * @ditfa/planner — the paper's greedy plan search over a calibration generation, with prefix reuse,
 * fingerprinted plan documents, `explain(plan)` and resumable partial searches.
 */
/** The calibration target contract lives in core (the pipeline builds one for any model). */
export type { CalibrationTarget, CalibrationCaches, LayerRun } from '@ditfa/core';
export * from './thresholds.js';
export * from './search.js';
export * from './explain.js';
export * from './heatmap.js';
